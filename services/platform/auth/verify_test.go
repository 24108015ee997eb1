package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// idp is an identity provider for tests: signing keys by kid and a real
// HTTP JWKS endpoint serving the public halves of the published ones.
type idp struct {
	t         *testing.T
	mu        sync.Mutex
	keys      map[string]crypto.Signer
	published []string
	hits      atomic.Int64
	srv       *httptest.Server
}

func newIDP(t *testing.T) *idp {
	d := &idp{t: t, keys: map[string]crypto.Signer{}}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		d.mu.Lock()
		defer d.mu.Unlock()
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for _, kid := range d.published {
			set.Keys = append(set.Keys, jwk(kid, d.keys[kid].Public()))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// key makes a key of the given kind ("rsa", "ec", "ed") under kid.
func (d *idp) key(kid, kind string) crypto.Signer {
	d.t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ec":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.keys[kid] = k
	d.mu.Unlock()
	return k
}

// publish sets the kids the JWKS serves (rotation).
func (d *idp) publish(kids ...string) {
	d.mu.Lock()
	d.published = kids
	d.mu.Unlock()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwk(kid string, pub crypto.PublicKey) map[string]string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		// Uncompressed point: 0x04 || X || Y (32 bytes each for P-256).
		raw, err := k.Bytes()
		if err != nil || len(raw) != 65 {
			panic("P-256 key")
		}
		x, y := raw[1:33], raw[33:]
		return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(x), "y": b64(y)}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64(k)}
	}
	panic("key type")
}

func methodOf(k crypto.Signer) jwt.SigningMethod {
	if _, ok := k.(*rsa.PrivateKey); ok {
		return jwt.SigningMethodRS256
	}
	return methodFor(k)
}

// sign makes a token with claims c signed by k, naming kid ("" for none).
func sign(t *testing.T, k crypto.Signer, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(methodOf(k), c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	testIssuer   = "https://idp.bank.example/realms/bank"
	testAudience = "churnwatch"
)

// claims are valid claims for the test verifier, changed by edit.
func claims(edit func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "rm-001", "role": "manager", "iss": testIssuer, "aud": testAudience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func (d *idp) verifier(t *testing.T, edit func(*Options)) *Verifier {
	t.Helper()
	o := Options{JWKSURL: d.srv.URL, JWKSMinRefetch: time.Nanosecond, Issuer: testIssuer, Audience: testAudience,
		MaxTTL: 12 * time.Hour, Leeway: 30 * time.Second}
	if edit != nil {
		edit(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestJWKSRotation(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "rsa")
	b := d.key("b", "ec")
	c := d.key("c", "ed")
	d.publish("a")
	v := d.verifier(t, nil)
	if p, err := v.Verify(sign(t, a, "a", claims(nil))); err != nil || p.Subject != "rm-001" || p.Role != RoleManager {
		t.Fatalf("key a: %+v %v", p, err)
	}
	before := d.hits.Load()
	// The IdP adds b: a token naming it makes the verifier refetch the set.
	d.publish("a", "b")
	if _, err := v.Verify(sign(t, b, "b", claims(nil))); err != nil {
		t.Fatalf("new key b after rotation: %v", err)
	}
	if d.hits.Load() != before+1 {
		t.Fatalf("JWKS fetched %d times for one unknown kid", d.hits.Load()-before)
	}
	// The IdP rotates a out and c in: the refetch for c drops a.
	d.publish("b", "c")
	if _, err := v.Verify(sign(t, c, "c", claims(nil))); err != nil {
		t.Fatalf("new key c: %v", err)
	}
	if _, err := v.Verify(sign(t, a, "a", claims(nil))); err == nil {
		t.Fatal("token of the removed key a accepted")
	}
	if _, err := v.Verify(sign(t, b, "b", claims(nil))); err != nil {
		t.Fatalf("key b still published: %v", err)
	}
}

func TestJWKSRefetchRateLimited(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "ed")
	d.publish("a")
	v := d.verifier(t, func(o *Options) { o.JWKSMinRefetch = time.Hour })
	start := d.hits.Load()
	// A flood of unknown kids costs the IdP at most one fetch.
	for i := range 20 {
		if _, err := v.Verify(sign(t, a, "unknown-"+string(rune('a'+i)), claims(nil))); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := d.hits.Load() - start; n > 1 {
		t.Fatalf("%d JWKS fetches for unknown kids within the rate limit", n)
	}
	if _, err := v.Verify(sign(t, a, "a", claims(nil))); err != nil {
		t.Fatalf("known key refused after the flood: %v", err)
	}
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "ed")
	b := d.key("b", "ed")
	d.publish("a")
	v := d.verifier(t, func(o *Options) { o.JWKSRefresh = 50 * time.Millisecond; o.JWKSMinRefetch = time.Hour })
	if _, err := v.Verify(sign(t, a, "a", claims(nil))); err != nil {
		t.Fatal(err)
	}
	d.publish("b")
	start := d.hits.Load()
	deadline := time.Now().Add(5 * time.Second)
	for d.hits.Load() < start+2 {
		if time.Now().After(deadline) {
			t.Fatal("JWKS not refreshed periodically")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a was never unknown, so only the periodic refresh can have dropped it.
	if _, err := v.Verify(sign(t, a, "a", claims(nil))); err == nil {
		t.Fatal("removed key still accepted after the periodic refresh")
	}
	if _, err := v.Verify(sign(t, b, "b", claims(nil))); err != nil {
		t.Fatalf("key b: %v", err)
	}
}

func TestStaticKeysAndJWKS(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "rsa")
	d.publish("a")
	dev, _ := GenerateKey()
	pub, _ := PublicKeyPEM(dev)
	v := d.verifier(t, func(o *Options) { o.PublicKeys = []string{string(pub)} })
	if _, err := v.Verify(sign(t, a, "a", claims(nil))); err != nil {
		t.Fatalf("JWKS key: %v", err)
	}
	tok, err := MintWith(dev, Principal{Subject: "ops-1", Role: RoleOps}, time.Hour, MintOptions{Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(tok); err != nil || p.Role != RoleOps {
		t.Fatalf("static key token: %+v %v", p, err)
	}
	// Minted without the configured issuer and audience: refused.
	tok, _ = Mint(dev, Principal{Subject: "ops-1", Role: RoleOps}, time.Hour)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("token without the configured iss/aud accepted")
	}
}

// TestRefused runs every bad token through the interceptor: each is
// UNAUTHENTICATED, logged once, and the log never holds the token.
func TestRefused(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "rsa")
	e := d.key("e", "ec")
	foreign := d.key("x", "rsa") // never published
	d.publish("a", "e")
	v := d.verifier(t, nil)
	pubA, _ := PublicKeyPEM(a)
	now := time.Now()
	hs := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
		tok.Header["kid"] = "a"
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil))
		tok.Header["kid"] = "a"
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}
	// ES256 header on an RSA kid: algorithm confusion across key types.
	confused := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims(nil))
		tok.Header["kid"] = "a"
		s, _ := tok.SignedString(e)
		return s
	}
	cases := map[string]string{
		"wrong issuer":                        sign(t, a, "a", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })),
		"no issuer":                           sign(t, a, "a", claims(func(c jwt.MapClaims) { delete(c, "iss") })),
		"wrong audience":                      sign(t, a, "a", claims(func(c jwt.MapClaims) { c["aud"] = "other-app" })),
		"audience array":                      sign(t, a, "a", claims(func(c jwt.MapClaims) { c["aud"] = []string{"account", "other"} })),
		"expired":                             sign(t, a, "a", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"no exp":                              sign(t, a, "a", claims(func(c jwt.MapClaims) { delete(c, "exp") })),
		"too long-lived":                      sign(t, a, "a", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(13 * time.Hour).Unix() })),
		"no iat with max ttl":                 sign(t, a, "a", claims(func(c jwt.MapClaims) { delete(c, "iat") })),
		"future iat":                          sign(t, a, "a", claims(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() })),
		"future nbf":                          sign(t, a, "a", claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() })),
		"alg none":                            none(),
		"HS256 with the public key as secret": hs(pubA),
		"ES256 on an RSA kid":                 confused(),
		"foreign key, known kid":              sign(t, foreign, "a", claims(nil)),
		"foreign key, own kid":                sign(t, foreign, "x", claims(nil)),
		"foreign key, no kid":                 sign(t, foreign, "", claims(nil)),
		"unknown role":                        sign(t, a, "a", claims(func(c jwt.MapClaims) { c["role"] = "root" })),
		"no subject":                          sign(t, a, "a", claims(func(c jwt.MapClaims) { delete(c, "sub") })),
		"branch head without branch":          sign(t, a, "a", claims(func(c jwt.MapClaims) { c["role"] = "branch_head" })),
		"garbage":                             "not.a.jwt",
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ic := UnaryInterceptor(v, Policy{"/svc/Read": Roles}, log)
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			logs.Reset()
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
			_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/svc/Read"}, func(context.Context, any) (any, error) { return "ok", nil })
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("got %v, want Unauthenticated", err)
			}
			out := logs.String()
			if strings.Count(out, "unauthenticated call") != 1 {
				t.Fatalf("want one log line, got %q", out)
			}
			for _, part := range strings.Split(tok, ".") {
				if len(part) > 8 && strings.Contains(out, part) {
					t.Fatalf("the log holds part of the token: %q", out)
				}
			}
		})
	}
	// The same verifier accepts the good token and an aud array with ours.
	for _, c := range []jwt.MapClaims{claims(nil), claims(func(c jwt.MapClaims) { c["aud"] = []string{"account", testAudience} })} {
		if _, err := v.Verify(sign(t, a, "a", c)); err != nil {
			t.Fatalf("good token refused: %v", err)
		}
	}
	// iat and nbf within the leeway are fine (clock skew).
	if _, err := v.Verify(sign(t, a, "a", claims(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() }))); err != nil {
		t.Fatalf("iat within leeway refused: %v", err)
	}
}

func TestClaimMapping(t *testing.T) {
	d := newIDP(t)
	a := d.key("a", "rsa")
	d.publish("a")
	keycloak := d.verifier(t, func(o *Options) {
		o.SubjectClaim, o.RoleClaim = "preferred_username", "realm_access.roles"
		o.RoleMap = map[string]string{"churnwatch-rm": "manager", "churnwatch-bh": "branch_head", "churnwatch-ops": "ops"}
	})
	kc := func(roles ...any) jwt.MapClaims {
		return claims(func(c jwt.MapClaims) {
			delete(c, "role")
			c["sub"] = "f3b1c9a2-uuid"
			c["preferred_username"] = "bh-01"
			c["branch"] = "br-01"
			c["aud"] = []string{testAudience, "account"}
			c["realm_access"] = map[string]any{"roles": roles}
		})
	}
	p, err := keycloak.Verify(sign(t, a, "a", kc("offline_access", "churnwatch-bh", "uma_authorization")))
	if err != nil || p.Subject != "bh-01" || p.Role != RoleBranchHead || p.Branch != "br-01" {
		t.Fatalf("keycloak realm roles: %+v %v", p, err)
	}
	if _, err := keycloak.Verify(sign(t, a, "a", kc("admin"))); err == nil {
		t.Fatal("unmapped role value accepted while a role map is set")
	}
	if _, err := keycloak.Verify(sign(t, a, "a", kc("churnwatch-rm", "churnwatch-ops"))); err == nil {
		t.Fatal("a token mapping to two roles accepted")
	}
	entra := d.verifier(t, func(o *Options) {
		o.RoleClaim, o.SubjectClaim = "roles", "oid"
		o.RoleMap = map[string]string{"ChurnWatch.Ops": "ops", "ChurnWatch.Admin": "admin"}
	})
	p, err = entra.Verify(sign(t, a, "a", claims(func(c jwt.MapClaims) {
		delete(c, "role")
		c["oid"] = "00000000-0000-0000-0000-00000000a11c"
		c["roles"] = []string{"ChurnWatch.Admin"}
	})))
	if err != nil || p.Role != RoleAdmin || p.Subject != "00000000-0000-0000-0000-00000000a11c" {
		t.Fatalf("entra roles: %+v %v", p, err)
	}
	if _, err := NewVerifier(context.Background(), Options{PublicKeys: []string{}, JWKSURL: d.srv.URL, RoleMap: map[string]string{"x": "root"}}); err == nil {
		t.Fatal("role map to an unknown role accepted")
	}
}
