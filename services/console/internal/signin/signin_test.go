package signin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/console/internal/session"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/logging"
)

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/alerts/a-1": "/alerts/a-1", "//evil.example/x": "/", "/\\evil.example": "/",
		"https://evil.example": "/", "alerts": "/", "/kpis?month=2025-01": "/kpis?month=2025-01", "/x\r\nSet-Cookie: a=b": "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func devHandlers(t *testing.T, dev bool) (*Handlers, *http.ServeMux) {
	t.Helper()
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := auth.PublicKeyPEM(k)
	v, err := auth.LoadVerifier([]string{string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := session.NewJar(session.RandomKey(), false)
	mint := func(p auth.Principal, ttl time.Duration) (string, error) { return auth.Mint(k, p, ttl) }
	o := Options{Jar: jar, Verifier: v, Dev: dev, DevMint: mint, Log: logging.Discard()}
	if !dev {
		o.OIDC = &OIDC{} // configured; never reached by these requests
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return h, mux
}

func TestDevLogin(t *testing.T) {
	_, mux := devHandlers(t, true)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/dev/login?sub=bh-1&role=branch_head&branch=br-01&next=/alerts/a-9", nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/alerts/a-9" {
		t.Fatalf("dev login: %d %s", w.Code, w.Header().Get("Location"))
	}
	r := httptest.NewRequest("GET", "/api/session", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	var s SessionInfo
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || w.Code != 200 {
		t.Fatalf("/api/session: %d %s", w.Code, w.Body)
	}
	if s.Sub != "bh-1" || s.Role != "branch_head" || s.Branch != "br-01" || !s.DevMode || s.ExpiresAt.Before(time.Now().Add(11*time.Hour)) {
		t.Fatalf("session %+v", s)
	}

	for q, why := range map[string]string{
		"sub=rm-001&role=root":          "role must be",
		"role=manager":                  "sub must be",
		"sub=bh&role=branch_head":       "needs branch",
		"sub=rm-001&role=ingest":        "role must be",
		"sub=%3Cscript%3E&role=manager": "sub must be",
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "/dev/login?"+q, nil))
		if w.Code != 400 || !strings.Contains(w.Body.String(), why) || strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("%s: %d %s", q, w.Code, w.Body)
		}
	}
}

func TestSignedOutAndDevLoginOff(t *testing.T) {
	_, mux := devHandlers(t, false)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/dev/login?sub=rm-001&role=admin", nil))
	if w.Code != 404 || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "only in dev mode") {
		t.Fatalf("/dev/login outside dev mode: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/api/session", nil))
	if w.Code != 401 || strings.TrimSpace(w.Body.String()) != `{"error":"signed out","login":"/login"}` {
		t.Fatalf("/api/session signed out: %d %s", w.Code, w.Body)
	}
	// A cookie that does not open (another key, tampered): signed out, cleared.
	r := httptest.NewRequest("GET", "/api/session", nil)
	r.AddCookie(&http.Cookie{Name: "churnwatch_session", Value: "AAAA"})
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != 401 || len(w.Result().Cookies()) != 1 || w.Result().Cookies()[0].MaxAge >= 0 {
		t.Fatalf("bad cookie: %d, cookies %v", w.Code, w.Result().Cookies())
	}
}
