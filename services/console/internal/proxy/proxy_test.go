package proxy

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/churnwatch/churnwatch/services/platform/logging"
)

// The upstream here records what the console forwards (headers a real
// service would not echo back); the real services behind the proxy are
// exercised in services/churnctl/devstack's browser and sign-in tests.
func TestForwardsWithTokenNotCookies(t *testing.T) {
	var got *http.Request
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		http.SetCookie(w, &http.Cookie{Name: "upstream", Value: "x"})
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"alerts":[]}`)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	token := func(_ http.ResponseWriter, r *http.Request) (string, error) {
		if c, err := r.Cookie("churnwatch_session"); err == nil && c.Value == "ok" {
			return "tok-123", nil
		}
		return "", errors.New("no session")
	}
	h, err := New([]Route{{Service: "churnwatch.v1.AlertService", Upstream: u}}, http.DefaultTransport, token, []string{"https://churnwatch.bank.example"}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string, hdr map[string]string, signedIn bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://console.test"+path, strings.NewReader("{}"))
		r.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		if signedIn {
			r.AddCookie(&http.Cookie{Name: "churnwatch_session", Value: "ok"})
		}
		r.Header.Set("Authorization", "Bearer forged-by-the-page")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	connect := map[string]string{"Connect-Protocol-Version": "1"}

	w := call("POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", connect, true)
	if w.Code != 200 || got == nil {
		t.Fatalf("signed-in call: %d %s", w.Code, w.Body)
	}
	if got.URL.Path != "/churnwatch.v1.AlertService/ListAlerts" || got.Header.Get("Authorization") != "Bearer tok-123" || got.Header.Get("Cookie") != "" {
		t.Fatalf("upstream saw path %s, authorization %q, cookie %q", got.URL.Path, got.Header.Get("Authorization"), got.Header.Get("Cookie"))
	}
	if w.Header().Get("Set-Cookie") != "" {
		t.Fatal("an upstream cookie reached the browser")
	}

	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
		signedIn           bool
		code               int
		connectCode        string
	}{
		{"signed out", "POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", connect, false, 401, "unauthenticated"},
		{"no Connect header (a cross-site form)", "POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", nil, true, 403, "permission_denied"},
		{"another origin", "POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", map[string]string{"Connect-Protocol-Version": "1", "Origin": "https://evil.example"}, true, 403, "permission_denied"},
		{"unknown service", "POST", "/rpc/churnwatch.v1.IngestService/PublishEvents", connect, true, 404, "unimplemented"},
		{"GET", "GET", "/rpc/churnwatch.v1.AlertService/ListAlerts", connect, true, 405, "unimplemented"},
	} {
		got = nil
		w := call(c.method, c.path, c.hdr, c.signedIn)
		var body struct{ Code string }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != c.code || body.Code != c.connectCode || got != nil {
			t.Errorf("%s: %d %s (forwarded: %v), want %d %s", c.name, w.Code, w.Body, got != nil, c.code, c.connectCode)
		}
	}
	// The public origin (behind a TLS-terminating load balancer) and gRPC-Web pass.
	for _, hdr := range []map[string]string{
		{"Connect-Protocol-Version": "1", "Origin": "https://churnwatch.bank.example"},
		{"Content-Type": "application/grpc-web+proto"},
		{"Connect-Protocol-Version": "1", "Origin": "http://console.test"},
	} {
		if w := call("POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", hdr, true); w.Code != 200 {
			t.Errorf("%v: %d %s", hdr, w.Code, w.Body)
		}
	}

	up.Close()
	w = call("POST", "/rpc/churnwatch.v1.AlertService/ListAlerts", connect, true)
	if w.Code != 503 || !strings.Contains(w.Body.String(), "AlertService service cannot be reached") {
		t.Fatalf("upstream down: %d %s", w.Code, w.Body)
	}
}
