package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuthSettings(t *testing.T) {
	e := FromMap(map[string]string{
		"CHURNWATCH_AUTH_JWKS_URL": "https://sso.bank.example/realms/bank/protocol/openid-connect/certs",
		"CHURNWATCH_AUTH_ISSUER":   "https://sso.bank.example/realms/bank", "CHURNWATCH_AUTH_AUDIENCE": "churnwatch",
		"CHURNWATCH_AUTH_MAX_TTL": "1h", "CHURNWATCH_AUTH_ROLE_CLAIM": "realm_access.roles",
		"CHURNWATCH_AUTH_ROLE_MAP": "cw-ops=ops, cw-admin=admin",
	})
	c := LoadCommon(e, "rules", "127.0.0.1:0", "127.0.0.1:0")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	a := c.Auth
	if a.MaxTTL != time.Hour || a.Leeway != 30*time.Second || a.JWKSRefresh != 15*time.Minute || a.SubjectClaim != "sub" ||
		a.RoleClaim != "realm_access.roles" || a.RoleMap["cw-admin"] != "admin" || len(a.RoleMap) != 2 {
		t.Fatalf("auth settings: %+v", a)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a JWKS without static keys is enough: %v", err)
	}
	for env, want := range map[string]string{
		"CHURNWATCH_AUTH_JWKS_URL=http://sso.bank.example/certs": "must be https",
		"CHURNWATCH_AUTH_LEEWAY=1h":                              "CHURNWATCH_AUTH_LEEWAY",
		"CHURNWATCH_AUTH_MAX_TTL=-1h":                            "CHURNWATCH_AUTH_MAX_TTL",
	} {
		k, v, _ := strings.Cut(env, "=")
		c := LoadCommon(FromMap(map[string]string{"CHURNWATCH_AUTH_PUBLIC_KEYS": "k.pem", k: v}), "rules", "", "")
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", env, err, want)
		}
	}
	local := LoadCommon(FromMap(map[string]string{"CHURNWATCH_AUTH_JWKS_URL": "http://127.0.0.1:8080/certs"}), "rules", "x", "")
	if err := local.Validate(); err != nil {
		t.Fatalf("http JWKS on loopback refused: %v", err)
	}
	bad := FromMap(map[string]string{"CHURNWATCH_AUTH_ROLE_MAP": "cw-ops"})
	LoadCommon(bad, "rules", "", "")
	if err := bad.Err(); err == nil || !strings.Contains(err.Error(), "CHURNWATCH_AUTH_ROLE_MAP") {
		t.Fatalf("bad role map: %v", err)
	}
}
