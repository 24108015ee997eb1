package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/console/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

// TestLifecycle starts the console in dev mode on 127.0.0.1:0, serves the
// app with its security headers, and stops when ctx ends.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	k, _ := auth.GenerateKey()
	priv, _ := auth.PrivateKeyPEM(k)
	pub, _ := auth.PublicKeyPEM(k)
	os.WriteFile(filepath.Join(dir, "dev.pem"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "dev.pub.pem"), pub, 0o644)
	var logs strings.Builder
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{
		"CHURNWATCH_CONSOLE_ADDR": "127.0.0.1:0", "CHURNWATCH_CONSOLE_DEV": "true",
		"CHURNWATCH_DEV_KEY": filepath.Join(dir, "dev.pem"), "CHURNWATCH_AUTH_PUBLIC_KEYS": filepath.Join(dir, "dev.pub.pem"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.WithLogOutput(&logs))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	resp, err := http.Get(a.URL() + "/alerts/a-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<html") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("GET /alerts/a-1: %d %q csp %q", resp.StatusCode, body, resp.Header.Get("Content-Security-Policy"))
	}
	resp, err = http.Get(a.URL() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "/dev/login?sub=rm-001&amp;role=manager") {
		t.Fatalf("dev-mode /login does not show the dev sign-in links: %s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hung")
	}
	if !strings.Contains(logs.String(), "DEV MODE") {
		t.Fatal("dev mode not warned about in the log")
	}
}
