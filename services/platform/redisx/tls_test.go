package redisx_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// A TLS-only Redis with an ACL user: the configured client reaches it; a
// wrong password fails with Redis's WRONGPASS (password not quoted); no TLS
// or no CA fails.
func TestTLSAndACLUser(t *testing.T) {
	r := testkit.StartSecureRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg, err := load(t, r.Env())
	if err != nil {
		t.Fatal(err)
	}
	c, err := redisx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "tls-probe", "1", time.Minute).Err(); err != nil {
		t.Fatalf("set over TLS as %s: %v", r.User, err)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	const wrongPassword = "wrong-password-4711"
	if err := os.WriteFile(wrong, []byte(wrongPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	env := r.Env()
	env["CHURNWATCH_REDIS_PASSWORD_FILE"] = wrong
	cfg, err = load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := redisx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Ping(ctx).Err()
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v, want WRONGPASS", err)
	}
	if strings.Contains(err.Error(), wrongPassword) || strings.Contains(err.Error(), r.Password) {
		t.Fatalf("the error quotes a password: %v", err)
	}

	for name, over := range map[string]map[string]string{
		"plaintext": {"CHURNWATCH_REDIS_ADDR": r.Addr, "CHURNWATCH_REDIS_TLS_CA": ""},
		"no CA":     {"CHURNWATCH_REDIS_TLS_CA": ""}, // rediss:// with the system roots: the test CA is unknown
	} {
		env := r.Env()
		for k, v := range over {
			env[k] = v
		}
		cfg, err := load(t, env)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := redisx.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		err = cl.Ping(pctx).Err()
		pcancel()
		cl.Close()
		if err == nil {
			t.Fatalf("%s: ping answered", name)
		}
	}
}
