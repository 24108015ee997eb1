package service_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func TestLifecycle(t *testing.T) {
	r := testkit.Redis(t)
	keys := testkit.NewKeys(t)
	cfg := testkit.Common("test", keys, []string{"127.0.0.1:1"}, r.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := service.New(ctx, cfg, service.Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	b.AddWorker("loop", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	for {
		if err := client.CheckHealth(hctx, b.GRPCAddr(), client.TLS{}); err == nil {
			break
		} else if hctx.Err() != nil {
			t.Fatalf("health never SERVING: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + b.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	r.Stop()
	resp, err := http.Get("http://" + b.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "dependency") {
		t.Fatalf("readyz with Redis down: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hung")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("worker not stopped")
	}
}
