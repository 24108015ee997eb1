package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Settings are the console's own variables (besides the shared TLS,
// timeout and token-verification ones): console --help, the masked start
// log and docs/console-deploy.md list them from here.
var Settings = []config.Setting{
	{Name: "CHURNWATCH_CONSOLE_ADDR", Default: "127.0.0.1:8080", Help: "listen address of the console (browser HTTP; HTTPS with CHURNWATCH_TLS_CERT/_KEY)"},
	{Name: "CHURNWATCH_CONSOLE_PUBLIC_URL", Default: "", Help: "the URL users open (https://churnwatch.bank.example) when a load balancer terminates TLS; default: the origin of CHURNWATCH_OIDC_REDIRECT_URL"},
	{Name: "CHURNWATCH_CONSOLE_ALERTS_URL", Default: "http://127.0.0.1:8003", Help: "HTTP base URL of the alerts service (AlertService calls go there)"},
	{Name: "CHURNWATCH_CONSOLE_RULES_URL", Default: "http://127.0.0.1:8002", Help: "HTTP base URL of the rules service (RulesAdminService and KpiService calls go there)"},
	{Name: "CHURNWATCH_CONSOLE_UPSTREAM_CA", Default: "", Help: "PEM CA of the services' certificates (https upstream URLs); default CHURNWATCH_TLS_CA, then the system roots"},
	{Name: "CHURNWATCH_TLS_CLIENT_CERT, _TLS_CLIENT_KEY", Default: "", Help: "client certificate for services that require mTLS"},
	{Name: "CHURNWATCH_CONSOLE_SESSION_KEY_FILE", Default: "", Help: "file with 32 random bytes (raw, base64 or hex) sealing session cookies; required unless dev mode (then random per process). Same file on every replica"},
	{Name: "CHURNWATCH_OIDC_ISSUER", Default: "", Help: "the bank IdP's issuer URL (OpenID Connect discovery); required unless dev mode"},
	{Name: "CHURNWATCH_OIDC_CLIENT_ID", Default: "", Help: "the console's client id at the IdP"},
	{Name: "CHURNWATCH_OIDC_CLIENT_SECRET_FILE", Default: "", Help: "file holding the client secret; unset: a public client (PKCE only)"},
	{Name: "CHURNWATCH_OIDC_REDIRECT_URL", Default: "", Help: "the callback registered at the IdP: https://<console>/auth/callback"},
	{Name: "CHURNWATCH_OIDC_SCOPES", Default: "openid,profile", Help: "scopes asked for (comma-separated); add what puts the role claim in the access token, and offline_access for sessions that outlive the access token"},
	{Name: "CHURNWATCH_CONSOLE_SESSION_MAX", Default: "12h", Help: "longest session the IdP's refresh token keeps alive; then the user signs in again"},
	{Name: "CHURNWATCH_CONSOLE_DEV", Default: "false", Help: "true: dev mode: /dev/login?sub=ID&role=ROLE[&branch=B] signs anyone in with the dev key (NEVER in production)"},
	{Name: "CHURNWATCH_DEV_KEY", Default: "", Help: "dev mode: PEM private key that mints dev tokens (churnwatch dev writes it; its public key must be in CHURNWATCH_AUTH_PUBLIC_KEYS)"},
	{Name: "CHURNWATCH_CONSOLE_DEV_TTL", Default: "12h", Help: "dev mode: lifetime of a /dev/login session"},
}

// Config is the console's configuration.
type Config struct {
	// Common carries the shared settings the console uses: TLS, HTTP
	// timeouts, token verification (the services' own rules, so the console
	// shows the principal the services see), log level.
	Common config.Common

	Addr           string
	PublicURL      string
	AlertsURL      string
	RulesURL       string
	UpstreamCA     string
	ClientCert     string
	ClientKey      string
	SessionKeyFile string
	OIDCIssuer     string
	OIDCClientID   string
	OIDCSecretFile string
	oidcSecret     string
	OIDCRedirect   string
	OIDCScopes     []string
	SessionMax     time.Duration
	Dev            bool
	DevKey         string
	DevTTL         time.Duration
}

// LoadConfig reads the console's configuration from the environment.
func LoadConfig(e *config.Env) (Config, error) {
	c := Config{
		Common:         config.LoadCommon(e, "console", "", ""),
		Addr:           e.String("CHURNWATCH_CONSOLE_ADDR", "127.0.0.1:8080"),
		PublicURL:      e.String("CHURNWATCH_CONSOLE_PUBLIC_URL", ""),
		AlertsURL:      e.String("CHURNWATCH_CONSOLE_ALERTS_URL", "http://127.0.0.1:8003"),
		RulesURL:       e.String("CHURNWATCH_CONSOLE_RULES_URL", "http://127.0.0.1:8002"),
		UpstreamCA:     e.String("CHURNWATCH_CONSOLE_UPSTREAM_CA", e.String("CHURNWATCH_TLS_CA", "")),
		ClientCert:     e.String("CHURNWATCH_TLS_CLIENT_CERT", ""),
		ClientKey:      e.String("CHURNWATCH_TLS_CLIENT_KEY", ""),
		SessionKeyFile: e.String("CHURNWATCH_CONSOLE_SESSION_KEY_FILE", ""),
		OIDCIssuer:     e.String("CHURNWATCH_OIDC_ISSUER", ""),
		OIDCClientID:   e.String("CHURNWATCH_OIDC_CLIENT_ID", ""),
		OIDCSecretFile: e.String("CHURNWATCH_OIDC_CLIENT_SECRET_FILE", ""),
		OIDCRedirect:   e.String("CHURNWATCH_OIDC_REDIRECT_URL", ""),
		OIDCScopes:     e.List("CHURNWATCH_OIDC_SCOPES", []string{"openid", "profile"}),
		SessionMax:     e.Duration("CHURNWATCH_CONSOLE_SESSION_MAX", 12*time.Hour),
		Dev:            e.Bool("CHURNWATCH_CONSOLE_DEV", false),
		DevKey:         e.String("CHURNWATCH_DEV_KEY", ""),
		DevTTL:         e.Duration("CHURNWATCH_CONSOLE_DEV_TTL", 12*time.Hour),
	}
	if err := e.Err(); err != nil {
		return c, err
	}
	if c.OIDCSecretFile != "" {
		b, err := os.ReadFile(c.OIDCSecretFile)
		if err != nil {
			return c, fmt.Errorf("CHURNWATCH_OIDC_CLIENT_SECRET_FILE: %w", err)
		}
		c.oidcSecret = strings.TrimRight(string(b), "\r\n")
	}
	return c, c.Validate()
}

// OIDC reports whether an IdP is configured.
func (c Config) OIDC() bool { return c.OIDCIssuer != "" }

// Validate reports every problem, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("CHURNWATCH_CONSOLE_ADDR is empty"))
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("CHURNWATCH_CONSOLE_ADDR %q: want host:port (e.g. 127.0.0.1:8080)", c.Addr))
	}
	for _, u := range []struct{ name, v string }{{"CHURNWATCH_CONSOLE_ALERTS_URL", c.AlertsURL}, {"CHURNWATCH_CONSOLE_RULES_URL", c.RulesURL}} {
		if err := httpURL(u.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", u.name, err))
		}
	}
	if c.PublicURL != "" {
		if err := httpURL(c.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("CHURNWATCH_CONSOLE_PUBLIC_URL: %v", err))
		}
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		errs = append(errs, errors.New("CHURNWATCH_TLS_CLIENT_CERT and CHURNWATCH_TLS_CLIENT_KEY go together"))
	}
	if (c.Common.TLSCert == "") != (c.Common.TLSKey == "") {
		errs = append(errs, errors.New("CHURNWATCH_TLS_CERT and CHURNWATCH_TLS_KEY go together"))
	}
	if c.OIDC() {
		if err := httpURL(c.OIDCIssuer); err != nil {
			errs = append(errs, fmt.Errorf("CHURNWATCH_OIDC_ISSUER: %v", err))
		}
		if c.OIDCClientID == "" {
			errs = append(errs, errors.New("CHURNWATCH_OIDC_CLIENT_ID is required with CHURNWATCH_OIDC_ISSUER"))
		}
		if err := httpURL(c.OIDCRedirect); err != nil {
			errs = append(errs, fmt.Errorf("CHURNWATCH_OIDC_REDIRECT_URL (https://<console>/auth/callback): %v", err))
		} else if u, _ := url.Parse(c.OIDCRedirect); u.Path != "/auth/callback" {
			errs = append(errs, fmt.Errorf("CHURNWATCH_OIDC_REDIRECT_URL %q: the path must be /auth/callback", c.OIDCRedirect))
		}
	} else if !c.Dev {
		errs = append(errs, errors.New("no sign-in configured: set CHURNWATCH_OIDC_ISSUER, _CLIENT_ID and _REDIRECT_URL (the bank's IdP), or CHURNWATCH_CONSOLE_DEV=true on a development machine"))
	}
	if !c.Dev && c.SessionKeyFile == "" {
		errs = append(errs, errors.New("CHURNWATCH_CONSOLE_SESSION_KEY_FILE is required outside dev mode: create one with `openssl rand -base64 32 > session.key` and give every replica the same file"))
	}
	if c.Dev && c.DevKey == "" {
		errs = append(errs, errors.New("CHURNWATCH_CONSOLE_DEV=true needs CHURNWATCH_DEV_KEY (the dev signing key churnwatch dev writes to .dev/dev-key.pem)"))
	}
	if c.SessionMax <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_CONSOLE_SESSION_MAX must be positive"))
	}
	if c.Dev && c.DevTTL <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_CONSOLE_DEV_TTL must be positive"))
	}
	if len(c.Common.AuthPublicKeys) == 0 && c.Common.Auth.JWKSURL == "" && !c.OIDC() {
		errs = append(errs, errors.New("no token verification: set CHURNWATCH_AUTH_PUBLIC_KEYS or CHURNWATCH_AUTH_JWKS_URL (the same as the services')"))
	}
	return errors.Join(errs...)
}

func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Fields is the configuration for the start log: no secret (the client
// secret and the keys are files; only their names are shown).
func (c Config) Fields() map[string]any {
	return map[string]any{
		"addr": c.Addr, "public_url": c.PublicURL, "alerts_url": config.MaskURL(c.AlertsURL), "rules_url": config.MaskURL(c.RulesURL),
		"upstream_ca": c.UpstreamCA, "client_cert": c.ClientCert, "session_key_file": c.SessionKeyFile,
		"oidc_issuer": c.OIDCIssuer, "oidc_client_id": c.OIDCClientID, "oidc_client_secret_file": c.OIDCSecretFile,
		"oidc_client_secret_set": c.oidcSecret != "", "oidc_redirect_url": c.OIDCRedirect, "oidc_scopes": strings.Join(c.OIDCScopes, ","), "session_max": c.SessionMax.String(),
		"dev": c.Dev, "dev_key": c.DevKey, "dev_ttl": c.DevTTL.String(), "tls": c.Common.TLSCert != "",
		"auth_jwks_url": c.Common.Auth.JWKSURL, "auth_issuer": c.Common.Auth.Issuer, "auth_audience": c.Common.Auth.Audience,
		"auth_role_claim": c.Common.Auth.RoleClaim, "auth_branch_claim": c.Common.Auth.BranchClaim, "auth_subject_claim": c.Common.Auth.SubjectClaim,
	}
}
