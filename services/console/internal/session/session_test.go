package session

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSealOpen(t *testing.T) {
	j, err := NewJar(RandomKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	type v struct{ T string }
	s, err := j.Seal("a", v{"secret-token"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "secret-token") || strings.Contains(string(mustB64(t, s)), "secret-token") {
		t.Fatal("sealed value shows the token")
	}
	var got v
	if err := j.Open("a", s, &got); err != nil || got.T != "secret-token" {
		t.Fatalf("open: %v %v", got, err)
	}
	// Sealed for cookie a, presented as cookie b: refused.
	if err := j.Open("b", s, &got); !errors.Is(err, ErrInvalid) {
		t.Fatalf("open as another cookie: %v", err)
	}
	// One flipped bit: refused.
	b := mustB64(t, s)
	b[len(b)-1] ^= 1
	if err := j.Open("a", base64.RawURLEncoding.EncodeToString(b), &got); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tampered: %v", err)
	}
	// Another key (a restarted dev console): refused.
	other, _ := NewJar(RandomKey(), false)
	if err := other.Open("a", s, &got); !errors.Is(err, ErrInvalid) {
		t.Fatalf("other key: %v", err)
	}
	// Expired.
	old, _ := j.Seal("a", v{"x"}, time.Now().Add(-time.Second))
	if err := j.Open("a", old, &got); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
}

func mustB64(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		j, _ := NewJar(RandomKey(), secure)
		w := httptest.NewRecorder()
		if err := j.Set(w, "churnwatch_session", map[string]string{"t": "x"}, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		c := w.Result().Cookies()[0]
		wantName := "churnwatch_session"
		if secure {
			wantName = "__Host-churnwatch_session"
		}
		if c.Name != wantName || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.Path != "/" {
			t.Fatalf("secure=%v: cookie %+v", secure, c)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(c)
		var got map[string]string
		if err := j.Get(r, "churnwatch_session", &got); err != nil || got["t"] != "x" {
			t.Fatalf("get: %v %v", got, err)
		}
	}
	j, _ := NewJar(RandomKey(), false)
	if err := j.Set(httptest.NewRecorder(), "s", strings.Repeat("x", 5000), time.Now().Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "does not fit in a cookie") {
		t.Fatalf("oversized session: %v", err)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	raw := RandomKey()
	for name, content := range map[string][]byte{
		"raw": raw, "b64": []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), "hex": []byte(strings.Repeat("ab", 32)),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		if k, err := LoadKey(p); err != nil || len(k) != KeySize {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := filepath.Join(dir, "short")
	os.WriteFile(p, []byte("too short"), 0o600)
	if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), "openssl rand -base64 32") {
		t.Fatalf("short key: %v", err)
	}
}
