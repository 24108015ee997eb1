package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/churnwatch/churnwatch/services/platform/logging"
)

func newKeyPair(t *testing.T) (*Verifier, func(Principal, time.Duration) string) {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := PublicKeyPEM(k)
	v, err := LoadVerifier([]string{string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	return v, func(p Principal, ttl time.Duration) string {
		tok, err := Mint(k, p, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

func TestVerify(t *testing.T) {
	v, mint := newKeyPair(t)
	p, err := v.Verify(mint(Principal{Subject: "bh-1", Role: RoleBranchHead, Branch: "br-01"}, time.Hour))
	if err != nil || p.Subject != "bh-1" || p.Role != RoleBranchHead || p.Branch != "br-01" {
		t.Fatalf("verify: %+v %v", p, err)
	}
	if _, err := v.Verify(mint(Principal{Subject: "x", Role: RoleAdmin}, -time.Hour)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token accepted: %v", err)
	}
	other, mintOther := newKeyPair(t)
	_ = other
	if _, err := v.Verify(mintOther(Principal{Subject: "x", Role: RoleAdmin}, time.Hour)); err == nil {
		t.Fatal("token from an unknown key accepted")
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := PublicKeyPEM(ec)
	ev, _ := LoadVerifier([]string{string(ecPub)})
	tok, err := Mint(ec, Principal{Subject: "ops-1", Role: RoleOps}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ev.Verify(tok); err != nil || p.Role != RoleOps {
		t.Fatalf("ES256: %+v %v", p, err)
	}
	// An HMAC token must never be accepted, even "signed" with the public key.
	parts := strings.Split(tok, ".")
	if _, err := ev.Verify("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + parts[1] + "." + parts[2]); err == nil {
		t.Fatal("HS256 token accepted")
	}
	if _, err := Mint(ec, Principal{Subject: "b", Role: RoleBranchHead}, time.Hour); err == nil {
		t.Fatal("branch_head without branch minted")
	}
}

func TestUnaryInterceptor(t *testing.T) {
	v, mint := newKeyPair(t)
	ic := UnaryInterceptor(v, Policy{"/svc/Read": {RoleOps, RoleAdmin}}, logging.Discard())
	call := func(method, tok string) (Principal, error) {
		ctx := context.Background()
		if tok != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
		}
		var got Principal
		_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
			got, _ = FromContext(ctx)
			return nil, nil
		})
		return got, err
	}
	if _, err := call("/svc/Read", ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := call("/svc/Read", "garbage"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := call("/svc/Read", mint(Principal{Subject: "rm-1", Role: RoleManager}, time.Hour)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("manager: %v", err)
	}
	if p, err := call("/svc/Read", mint(Principal{Subject: "ops-1", Role: RoleOps}, time.Hour)); err != nil || p.Subject != "ops-1" {
		t.Fatalf("ops: %+v %v", p, err)
	}
	if _, err := call("/svc/Unlisted", mint(Principal{Subject: "a", Role: RoleAdmin}, time.Hour)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unlisted method must be denied: %v", err)
	}
	if _, err := call("/grpc.health.v1.Health/Check", ""); err != nil {
		t.Fatalf("health needs no token: %v", err)
	}
}

func TestHTTPMiddleware(t *testing.T) {
	v, mint := newKeyPair(t)
	h := HTTPMiddleware(v, []Role{RoleIngest, RoleAdmin}, logging.Discard(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, c := range []struct {
		tok  string
		want int
	}{
		{"", 401}, {"nope", 401},
		{mint(Principal{Subject: "rm", Role: RoleManager}, time.Hour), 403},
		{mint(Principal{Subject: "core", Role: RoleIngest}, time.Hour), 204},
	} {
		req := httptest.NewRequest("POST", "/v1/events", nil)
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Fatalf("token %.10q: status %d want %d", c.tok, rec.Code, c.want)
		}
	}
}
