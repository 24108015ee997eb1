package app

import (
	"os"
	"strings"
	"testing"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{"CHURNWATCH_OIDC_ISSUER", "CHURNWATCH_CONSOLE_SESSION_KEY_FILE", "openssl rand"}},
		{map[string]string{"CHURNWATCH_CONSOLE_DEV": "true", "CHURNWATCH_AUTH_PUBLIC_KEYS": "/k.pem"}, []string{"CHURNWATCH_DEV_KEY"}},
		{map[string]string{"CHURNWATCH_OIDC_ISSUER": "https://idp.example", "CHURNWATCH_OIDC_REDIRECT_URL": "https://c.example/cb", "CHURNWATCH_CONSOLE_SESSION_KEY_FILE": "/k"},
			[]string{"CHURNWATCH_OIDC_CLIENT_ID", "the path must be /auth/callback"}},
		{map[string]string{"CHURNWATCH_CONSOLE_DEV": "true", "CHURNWATCH_DEV_KEY": "/d", "CHURNWATCH_AUTH_PUBLIC_KEYS": "/k", "CHURNWATCH_CONSOLE_ALERTS_URL": "alerts:8003", "CHURNWATCH_CONSOLE_ADDR": "8080"},
			[]string{"CHURNWATCH_CONSOLE_ALERTS_URL", "CHURNWATCH_CONSOLE_ADDR"}},
	} {
		_, err := LoadConfig(config.FromMap(c.env))
		if err == nil {
			t.Errorf("%v: no error", c.env)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %s", c.env, err, w)
			}
		}
	}
	cfg, err := LoadConfig(config.FromMap(map[string]string{"CHURNWATCH_CONSOLE_DEV": "true", "CHURNWATCH_DEV_KEY": "/d", "CHURNWATCH_AUTH_PUBLIC_KEYS": "/k"}))
	if err != nil {
		t.Fatalf("dev config: %v", err)
	}
	if cfg.Addr != "127.0.0.1:8080" || cfg.AlertsURL != "http://127.0.0.1:8003" || cfg.RulesURL != "http://127.0.0.1:8002" {
		t.Fatalf("defaults: %+v", cfg)
	}
	routes, err := Routes(cfg)
	if err != nil || len(routes) != 4 || routes[0].Service != "churnwatch.v1.AlertService" || routes[1].Service != "churnwatch.v1.RulesAdminService" ||
		routes[2].Service != "churnwatch.v1.KpiService" || routes[2].Upstream.String() != cfg.RulesURL ||
		routes[3].Service != "churnwatch.v1.ShadowService" || routes[3].Upstream.String() != cfg.RulesURL {
		t.Fatalf("routes %v %v", routes, err)
	}
}

func TestStartLogHasNoSecret(t *testing.T) {
	c := Config{oidcSecret: "s3cr3t-value", OIDCSecretFile: "/run/secrets/oidc"}
	for k, v := range c.Fields() {
		if s, ok := v.(string); ok && strings.Contains(s, "s3cr3t") {
			t.Fatalf("field %s shows the client secret", k)
		}
	}
}

// TestSettingsDocumented: every setting of --help is in the table of
// docs/console-deploy.md.
func TestSettingsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../../docs/console-deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings {
		name := strings.Split(s.Name, ",")[0]
		if !strings.Contains(string(b), "| `"+name+"`") {
			t.Errorf("docs/console-deploy.md has no row for %s", name)
		}
	}
}
