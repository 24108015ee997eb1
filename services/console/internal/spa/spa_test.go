package spa

import (
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestServesAppRoutesAssetsAndNotFound(t *testing.T) {
	h, err := New(fstest.MapFS{
		"index.html":         {Data: []byte("<!doctype html><title>app</title>")},
		"assets/app-1a2b.js": {Data: []byte("console.log(1)")},
		"favicon.svg":        {Data: []byte("<svg/>")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, body, cache string
		code              int
	}{
		{"/", "<!doctype html><title>app</title>", "no-cache", 200},
		{"/alerts/a-123", "<!doctype html><title>app</title>", "no-cache", 200},
		{"/kpis", "<!doctype html><title>app</title>", "no-cache", 200},
		{"/assets/app-1a2b.js", "console.log(1)", "public, max-age=31536000, immutable", 200},
		{"/favicon.svg", "<svg/>", "no-cache", 200},
		{"/assets/gone-9999.js", "", "", 404},
		{"/missing.png", "", "", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", c.path, nil))
		if w.Code != c.code {
			t.Errorf("%s: %d, want %d", c.path, w.Code, c.code)
			continue
		}
		if c.code == 200 && (w.Body.String() != c.body || w.Header().Get("Cache-Control") != c.cache) {
			t.Errorf("%s: body %q cache %q", c.path, w.Body.String(), w.Header().Get("Cache-Control"))
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", nil))
	if w.Code != 405 {
		t.Errorf("POST /: %d", w.Code)
	}
}

func TestSecurityHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	SecurityHeaders(w.Header(), true)
	for k, want := range map[string]string{
		"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
		"Strict-Transport-Security": "max-age=31536000",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, must := range []string{"frame-ancestors 'none'", "script-src 'self'", "object-src 'none'"} {
		if !contains(CSP, must) {
			t.Errorf("CSP lacks %s", must)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
