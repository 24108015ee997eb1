package devstack

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDevStackRestart restarts each service in place: a new app (not the
// old one) answers /readyz on the same gRPC and HTTP addresses, and an
// unknown name is refused naming the services that can be restarted.
func TestDevStackRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{Dir: t.TempDir(), AnyPort: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	type app interface {
		GRPCAddr() string
		HTTPAddr() string
	}
	apps := map[string]func() app{
		"ingester": func() app { return st.Ingester },
		"rules":    func() app { return st.Rules },
		"alerts":   func() app { return st.Alerts },
	}
	for _, name := range []string{"ingester", "rules", "alerts"} {
		old := apps[name]()
		if err := st.Restart(ctx, name); err != nil {
			t.Fatalf("restart %s: %v", name, err)
		}
		now := apps[name]()
		if now == old {
			t.Errorf("%s: the same app after Restart", name)
		}
		if now.GRPCAddr() != old.GRPCAddr() || now.HTTPAddr() != old.HTTPAddr() {
			t.Errorf("%s: addresses %s %s after restart, were %s %s", name, now.GRPCAddr(), now.HTTPAddr(), old.GRPCAddr(), old.HTTPAddr())
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + now.HTTPAddr() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready on %s 30s after restart: %v %v", name, now.HTTPAddr(), resp, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := st.Restart(ctx, "console"); err == nil || !strings.Contains(err.Error(), "ingester, rules or alerts") {
		t.Errorf("restart console: %v, want a refusal naming the services", err)
	}
}
