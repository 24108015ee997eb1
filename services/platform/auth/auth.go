// Package auth verifies churnwatch bearer tokens: JWTs signed with an
// asymmetric key (EdDSA, ES256 or RS256) carrying sub, role and branch. It
// provides the gRPC interceptors and HTTP middleware that enforce a
// per-method role policy, and minting for dev tokens.
package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Role is what a principal may do (SPEC §6).
type Role string

// Roles.
const (
	RoleManager    Role = "manager"
	RoleBranchHead Role = "branch_head"
	RoleOps        Role = "ops"
	RoleAdmin      Role = "admin"
	RoleIngest     Role = "ingest"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleManager, RoleBranchHead, RoleOps, RoleAdmin, RoleIngest:
		return true
	}
	return false
}

// Errors.
var (
	ErrNoToken      = errors.New("missing bearer token")
	ErrInvalidToken = errors.New("invalid token")
	ErrDenied       = errors.New("permission denied")
)

// Principal is the verified caller.
type Principal struct {
	Subject string
	Role    Role
	Branch  string
	Expires time.Time
}

type ctxKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the caller verified by the interceptor.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Policy maps a gRPC full method name to the roles allowed to call it.
// Methods not listed are denied; health and reflection need no token.
type Policy map[string][]Role

func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func bearer(v string) (string, bool) {
	tok, ok := strings.CutPrefix(v, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(v, "bearer ")
	}
	return strings.TrimSpace(tok), ok && strings.TrimSpace(tok) != ""
}

// authorize verifies the call's token and checks the role against policy.
// A refusal is logged once, without the token.
func (v *Verifier) authorize(ctx context.Context, policy Policy, method string, log *slog.Logger) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	tok, ok := "", false
	if len(vals) > 0 {
		tok, ok = bearer(vals[0])
	}
	if !ok {
		log.InfoContext(ctx, "unauthenticated call", "method", method, "reason", ErrNoToken.Error())
		return nil, status.Error(codes.Unauthenticated, ErrNoToken.Error())
	}
	p, err := v.VerifyContext(ctx, tok)
	if err != nil {
		log.WarnContext(ctx, "unauthenticated call", "method", method, "reason", err.Error())
		return nil, status.Error(codes.Unauthenticated, "invalid or expired token")
	}
	if !slices.Contains(policy[method], p.Role) {
		LogDenied(ctx, log, "permission denied", p, method, "role not allowed", "")
		return nil, status.Errorf(codes.PermissionDenied, "role %s may not call %s", p.Role, method)
	}
	return WithPrincipal(ctx, p), nil
}

// UnaryInterceptor enforces policy on unary RPCs.
func UnaryInterceptor(v *Verifier, policy Policy, log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if exempt(info.FullMethod) {
			return h(ctx, req)
		}
		ctx, err := v.authorize(ctx, policy, info.FullMethod, log)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authedStream) Context() context.Context { return s.ctx }

// StreamInterceptor enforces policy on streaming RPCs.
func StreamInterceptor(v *Verifier, policy Policy, log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if exempt(info.FullMethod) {
			return h(srv, ss)
		}
		ctx, err := v.authorize(ss.Context(), policy, info.FullMethod, log)
		if err != nil {
			return err
		}
		return h(srv, authedStream{ServerStream: ss, ctx: ctx})
	}
}

// HTTPMiddleware verifies the bearer token and requires one of roles:
// 401 without a valid token, 403 for another role.
func HTTPMiddleware(v *Verifier, roles []Role, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="churnwatch"`)
			http.Error(w, ErrNoToken.Error(), http.StatusUnauthorized)
			return
		}
		p, err := v.VerifyContext(r.Context(), tok)
		if err != nil {
			log.WarnContext(r.Context(), "unauthenticated request", "path", r.URL.Path, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="churnwatch", error="invalid_token"`)
			http.Error(w, "invalid or expired token", http.StatusUnauthorized)
			return
		}
		if !slices.Contains(roles, p.Role) {
			LogDenied(r.Context(), log, "permission denied", p, r.Method+" "+r.URL.Path, "role not allowed", "")
			http.Error(w, fmt.Sprintf("role %s may not call %s", p.Role, r.URL.Path), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// GenerateKey makes a new Ed25519 signing key for dev tokens.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// PrivateKeyPEM encodes a signing key as PKCS#8 PEM.
func PrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicKeyPEM encodes the public half of k as PKIX PEM.
func PublicKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadSigner reads a PKCS#8 PEM private key file.
func LoadSigner(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not a signer", path)
	}
	return s, nil
}

// MintOptions are the optional claims of a minted token: the issuer
// (default "churnwatch"), an audience and a key id.
type MintOptions struct {
	Issuer   string
	Audience string
	KeyID    string
}

// Mint signs a token for p valid for ttl, issued by "churnwatch".
func Mint(k crypto.Signer, p Principal, ttl time.Duration) (string, error) {
	return MintWith(k, p, ttl, MintOptions{})
}

// MintWith signs a token for p valid for ttl with iat, iss and, when set,
// aud and kid, so that it passes a verifier configured with the same
// issuer and audience.
func MintWith(k crypto.Signer, p Principal, ttl time.Duration, o MintOptions) (string, error) {
	if !p.Role.Valid() {
		return "", fmt.Errorf("unknown role %q", p.Role)
	}
	if p.Subject == "" {
		return "", errors.New("subject is required")
	}
	if p.Role == RoleBranchHead && p.Branch == "" {
		return "", errors.New("branch_head tokens need a branch")
	}
	method := methodFor(k)
	if method == nil {
		return "", errors.New("unsupported signing key type")
	}
	now := time.Now()
	c := mintClaims{Role: string(p.Role), Branch: p.Branch, RegisteredClaims: jwt.RegisteredClaims{
		Subject: p.Subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		Issuer: cmpOr(o.Issuer, "churnwatch"),
	}}
	if o.Audience != "" {
		c.Audience = jwt.ClaimStrings{o.Audience}
	}
	t := jwt.NewWithClaims(method, c)
	if o.KeyID != "" {
		t.Header["kid"] = o.KeyID
	}
	return t.SignedString(k)
}

type mintClaims struct {
	Role   string `json:"role"`
	Branch string `json:"branch,omitempty"`
	jwt.RegisteredClaims
}
