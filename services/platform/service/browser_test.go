package service_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// TestBrowserAPIOnHTTPPort: the HTTP port answers gRPC services in the
// Connect protocol over HTTP/1.1 (here the standard health service, which
// needs no token), unary and server streaming (Watch). The Connect unary
// and Subscribe calls of a real alerts service with auth, and a stream
// whose head must arrive before any message, are in
// services/churnctl/devstack (browser_test.go).
func TestBrowserAPIOnHTTPPort(t *testing.T) {
	keys := testkit.NewKeys(t)
	cfg := testkit.Common("test", keys, []string{"127.0.0.1:1"}, "127.0.0.1:1")
	b := start(t, cfg, nil, nil)
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.HTTPAddr()+"/grpc.health.v1.Health/Check", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 || !strings.Contains(string(body), `"SERVING"`) {
		t.Fatalf("Connect Health/Check: %s %d %s", resp.Proto, resp.StatusCode, body)
	}

	// Watch streams SERVING, then waits for a change.
	env := []byte{0, 0, 0, 0, 2, '{', '}'}
	req, _ = http.NewRequest(http.MethodPost, "http://"+b.HTTPAddr()+"/grpc.health.v1.Health/Watch", strings.NewReader(string(env)))
	req.Header.Set("Content-Type", "application/connect+json")
	start := time.Now()
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("Connect Health/Watch: no head within 5 s: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("Watch head: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	head := make([]byte, 5)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatalf("Watch: no first message: %v", err)
	}
	msg := make([]byte, int(head[1])<<24|int(head[2])<<16|int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(r, msg); err != nil || head[0] != 0 || !strings.Contains(string(msg), "SERVING") {
		t.Fatalf("Watch first message: flags %d %q %v", head[0], msg, err)
	}
	t.Logf("stream head and first message after %s", time.Since(start))
}
