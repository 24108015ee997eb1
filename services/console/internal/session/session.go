// Package session owns the console's cookies: values sealed with AES-256-GCM
// (confidential and tamper-proof, so the browser holds the session but can
// neither read the bearer token inside nor forge one), HttpOnly,
// SameSite=Lax, Secure when the console is reached over TLS or from a
// non-loopback address.
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// KeySize is the length of a session key (AES-256).
const KeySize = 32

// maxCookie is the largest cookie value browsers keep (4096 bytes with the
// name and attributes); a bigger session is refused rather than silently
// dropped by the browser.
const maxCookie = 3800

var (
	// ErrMissing: the request carries no such cookie.
	ErrMissing = errors.New("no session cookie")
	// ErrInvalid: the cookie does not open with this key (tampered, or
	// sealed by another key: the console restarted with a new dev key).
	ErrInvalid = errors.New("session cookie invalid")
	// ErrExpired: the sealed value's lifetime ended.
	ErrExpired = errors.New("session expired")
)

// LoadKey reads a key file: 32 raw bytes, or their base64 or hex text
// (`openssl rand -base64 32`).
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == KeySize {
		return b, nil
	}
	s := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("%s: want %d random bytes (raw, base64 or hex), e.g. openssl rand -base64 32 > %s", path, KeySize, path)
}

// RandomKey is a fresh key (dev mode: sessions end with the process).
func RandomKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	return k
}

// Jar seals values into cookies and opens them again.
type Jar struct {
	aead   cipher.AEAD
	secure bool
	now    func() time.Time
}

// NewJar makes a jar with a 32-byte key. secure sets the Secure attribute
// (and the __Host- name prefix, which browsers bind to the exact origin).
func NewJar(key []byte, secure bool) (*Jar, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("session key: %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Jar{aead: aead, secure: secure, now: time.Now}, nil
}

// Secure reports whether cookies carry the Secure attribute.
func (j *Jar) Secure() bool { return j.secure }

// Name is the cookie name for a base name (with __Host- when Secure).
func (j *Jar) Name(base string) string {
	if j.secure {
		return "__Host-" + base
	}
	return base
}

type envelope struct {
	Exp int64           `json:"exp"`
	V   json.RawMessage `json:"v"`
}

// Seal encrypts v (JSON) with an expiry; the cookie name is the
// additional data, so a value sealed for one cookie does not open as
// another.
func (j *Jar) Seal(name string, v any, exp time.Time) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(envelope{Exp: exp.Unix(), V: raw})
	if err != nil {
		return "", err
	}
	nonce := make([]byte, j.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := j.aead.Seal(nonce, nonce, plain, []byte(name))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a sealed value into v, refusing it after its expiry.
func (j *Jar) Open(name, s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < j.aead.NonceSize() {
		return ErrInvalid
	}
	n := j.aead.NonceSize()
	plain, err := j.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return ErrInvalid
	}
	var env envelope
	if err := json.Unmarshal(plain, &env); err != nil {
		return ErrInvalid
	}
	if !j.now().Before(time.Unix(env.Exp, 0)) {
		return ErrExpired
	}
	if err := json.Unmarshal(env.V, v); err != nil {
		return ErrInvalid
	}
	return nil
}

// Set seals v into the cookie base (Path /, HttpOnly, SameSite=Lax), kept
// by the browser until exp.
func (j *Jar) Set(w http.ResponseWriter, base string, v any, exp time.Time) error {
	name := j.Name(base)
	val, err := j.Seal(name, v, exp)
	if err != nil {
		return err
	}
	if len(val) > maxCookie {
		return fmt.Errorf("session of %d bytes does not fit in a cookie (max %d): the IdP's token is too large; ask for fewer claims in the access token", len(val), maxCookie)
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: "/", Expires: exp, HttpOnly: true, Secure: j.secure, SameSite: http.SameSiteLaxMode})
	return nil
}

// Get opens the cookie base of the request into v.
func (j *Jar) Get(r *http.Request, base string, v any) error {
	name := j.Name(base)
	c, err := r.Cookie(name)
	if err != nil {
		return ErrMissing
	}
	return j.Open(name, c.Value, v)
}

// Clear tells the browser to drop the cookie base.
func (j *Jar) Clear(w http.ResponseWriter, base string) {
	http.SetCookie(w, &http.Cookie{Name: j.Name(base), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: j.secure, SameSite: http.SameSiteLaxMode})
}
