package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
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

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/logging"
)

// Options configure a Verifier. At least one of PublicKeys and JWKSURL is
// needed; both may be set (a token is then accepted when either verifies
// it). Zero values: no issuer, audience or lifetime check, no leeway,
// claims "sub", "role" and "branch" holding churnwatch role names.
type Options struct {
	// PublicKeys are PEM texts or files of static signers (no kid needed).
	PublicKeys []string
	// JWKSURL is the IdP's key set, fetched at start, refreshed every
	// JWKSRefresh (default 15m) and refetched when a token names an unknown
	// kid, at most once per JWKSMinRefetch (default 30s).
	JWKSURL        string
	JWKSRefresh    time.Duration
	JWKSMinRefetch time.Duration
	Issuer         string
	Audience       string
	// MaxTTL bounds exp − iat; when set, iat is required.
	MaxTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway       time.Duration
	SubjectClaim string
	RoleClaim    string
	BranchClaim  string
	// RoleMap maps role-claim values to churnwatch roles; when set, values
	// not in it are ignored.
	RoleMap    map[string]string
	HTTPClient *http.Client
	Log        *slog.Logger
	// Now replaces the clock (tests).
	Now func() time.Time
}

// Verifier checks token signatures, issuer, audience and lifetime, and maps
// the claims to a Principal.
type Verifier struct {
	static  []crypto.PublicKey
	jwks    keyfunc.Keyfunc
	stop    context.CancelFunc
	opts    Options
	roleMap map[string]Role
	now     func() time.Time
}

// validAlgs are the only algorithms accepted: asymmetric, never none or
// HS*. Each key is further pinned to the algorithms of its type (keyAllows).
var validAlgs = []string{"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// LoadVerifier reads PEM public keys; each entry is a file path or PEM text.
// It checks signatures and expiry only (30 s leeway); FromConfig builds the
// verifier a service runs with.
func LoadVerifier(entries []string) (*Verifier, error) {
	return NewVerifier(context.Background(), Options{PublicKeys: entries, Leeway: 30 * time.Second})
}

// FromConfig builds the verifier of a service's settings. The JWKS refresh
// runs until ctx ends or Close.
func FromConfig(ctx context.Context, c config.Common, log *slog.Logger) (*Verifier, error) {
	a := c.Auth
	return NewVerifier(ctx, Options{
		PublicKeys: c.AuthPublicKeys, JWKSURL: a.JWKSURL, JWKSRefresh: a.JWKSRefresh, JWKSMinRefetch: a.JWKSMinRefetch,
		Issuer: a.Issuer, Audience: a.Audience, MaxTTL: a.MaxTTL, Leeway: a.Leeway,
		SubjectClaim: a.SubjectClaim, RoleClaim: a.RoleClaim, BranchClaim: a.BranchClaim, RoleMap: a.RoleMap, Log: log,
	})
}

// NewVerifier loads the static keys and, with a JWKS URL, fetches the key
// set once (a failure is logged, not fatal: the IdP may come up later;
// tokens are refused until a fetch succeeds).
func NewVerifier(ctx context.Context, o Options) (*Verifier, error) {
	if o.Log == nil {
		o.Log = logging.Discard()
	}
	o.SubjectClaim = cmpOr(o.SubjectClaim, "sub")
	o.RoleClaim = cmpOr(o.RoleClaim, "role")
	o.BranchClaim = cmpOr(o.BranchClaim, "branch")
	v := &Verifier{opts: o, now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	for from, to := range o.RoleMap {
		if !Role(to).Valid() {
			return nil, fmt.Errorf("role map: %q maps to %q, not a churnwatch role", from, to)
		}
		if v.roleMap == nil {
			v.roleMap = map[string]Role{}
		}
		v.roleMap[from] = Role(to)
	}
	for _, e := range o.PublicKeys {
		keys, err := parsePublicKeys(e)
		if err != nil {
			return nil, err
		}
		v.static = append(v.static, keys...)
	}
	if o.JWKSURL != "" {
		refresh := o.JWKSRefresh
		if refresh <= 0 {
			refresh = 15 * time.Minute
		}
		minRefetch := o.JWKSMinRefetch
		if minRefetch == 0 {
			minRefetch = 30 * time.Second
		}
		jctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		context.AfterFunc(ctx, stop)
		log, url := o.Log, o.JWKSURL
		kf, err := keyfunc.NewDefaultOverrideCtx(jctx, []string{url}, keyfunc.Override{
			Client:      o.HTTPClient,
			HTTPTimeout: 10 * time.Second,
			// A caller does not wait out the limiter: an unknown kid while a
			// refetch is not allowed for another minRefetch is refused at
			// once (rate.Limiter.Wait fails without sleeping when the
			// token is due after this budget). The budget is not 1 ms so
			// that a loaded machine's scheduling delay between setting it
			// and calling Wait does not refuse a refetch that is allowed.
			RateLimitWaitMax:  250 * time.Millisecond,
			RefreshInterval:   refresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(minRefetch), 1),
			RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					log.WarnContext(ctx, "jwks fetch failed", "url", config.MaskURL(url), "err", err)
				}
			},
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("jwks %s: %w", config.MaskURL(url), err)
		}
		v.jwks, v.stop = kf, stop
	}
	if len(v.static) == 0 && v.jwks == nil {
		return nil, errors.New("no public keys configured")
	}
	return v, nil
}

// Close stops the periodic JWKS refresh.
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func parsePublicKeys(e string) ([]crypto.PublicKey, error) {
	data := []byte(e)
	if !strings.Contains(e, "-----BEGIN") {
		b, err := os.ReadFile(e)
		if err != nil {
			return nil, fmt.Errorf("read public key: %w", err)
		}
		data = b
	}
	var out []crypto.PublicKey
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		out = append(out, k)
	}
	return out, nil
}

// keyAllows pins the algorithm to the key type: an Ed25519 key verifies
// only EdDSA, a P-256 key only ES256 (and so on), an RSA key of at least
// 2048 bits only RS*/PS*. Anything else (HMAC secrets, none) never matches.
func keyAllows(k any, alg string) bool {
	switch k := k.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048 && (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS"))
	}
	return false
}

// keys returns the candidate keys for t: the JWKS key its kid names
// (refetching the set, rate-limited, when the kid is unknown) or, without a
// kid, every JWKS key; then the static keys. Only keys of t's algorithm.
func (v *Verifier) keys(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		var cands []any
		var jwksErr error
		if v.jwks != nil {
			if kid, _ := t.Header["kid"].(string); kid != "" {
				k, err := v.jwks.KeyfuncCtx(ctx)(t)
				if err != nil {
					jwksErr = err
				} else {
					cands = append(cands, k)
				}
			} else if set, err := v.jwks.VerificationKeySet(ctx); err == nil {
				for _, k := range set.Keys {
					cands = append(cands, k)
				}
			}
		}
		for _, k := range v.static {
			cands = append(cands, k)
		}
		set := jwt.VerificationKeySet{}
		for _, k := range cands {
			if keyAllows(k, alg) {
				set.Keys = append(set.Keys, k)
			}
		}
		if len(set.Keys) == 0 {
			if jwksErr != nil {
				return nil, fmt.Errorf("no key for the token's kid: %w", jwksErr)
			}
			return nil, fmt.Errorf("no configured key verifies %s", alg)
		}
		return set, nil
	}
}

// Verify checks a token and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	return v.VerifyContext(context.Background(), token)
}

// VerifyContext checks a token (a JWKS refetch, if any, is bounded by ctx)
// and returns its principal. Errors wrap ErrInvalidToken and never contain
// the token.
func (v *Verifier) VerifyContext(ctx context.Context, token string) (Principal, error) {
	o := v.opts
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(validAlgs), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(v.now), jwt.WithLeeway(o.Leeway),
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	mc := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(token, mc, v.keys(ctx), popts...); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	exp, _ := mc.GetExpirationTime()
	if o.MaxTTL > 0 {
		iat, _ := mc.GetIssuedAt()
		if iat == nil {
			return Principal{}, fmt.Errorf("%w: iat is required (maximum lifetime %s)", ErrInvalidToken, o.MaxTTL)
		}
		if ttl := exp.Sub(iat.Time); ttl > o.MaxTTL {
			return Principal{}, fmt.Errorf("%w: lifetime %s exceeds the maximum %s", ErrInvalidToken, ttl, o.MaxTTL)
		}
	}
	p := Principal{Expires: exp.Time}
	p.Subject, _ = claimValue(mc, o.SubjectClaim).(string)
	role, err := v.role(claimStrings(mc, o.RoleClaim))
	if err != nil {
		return Principal{}, err
	}
	p.Role = role
	if b := claimStrings(mc, o.BranchClaim); len(b) == 1 {
		p.Branch = b[0]
	}
	if p.Subject == "" {
		return Principal{}, fmt.Errorf("%w: claim %s (the principal) is required", ErrInvalidToken, o.SubjectClaim)
	}
	if p.Role == RoleBranchHead && p.Branch == "" {
		return Principal{}, fmt.Errorf("%w: branch_head needs a branch claim (%s)", ErrInvalidToken, o.BranchClaim)
	}
	return p, nil
}

// role maps the role claim's values to exactly one churnwatch role.
func (v *Verifier) role(vals []string) (Role, error) {
	var roles []Role
	for _, s := range vals {
		r := Role(s)
		if v.roleMap != nil {
			r = v.roleMap[s]
		}
		if r.Valid() && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	switch len(roles) {
	case 1:
		return roles[0], nil
	case 0:
		return "", fmt.Errorf("%w: claim %s holds no churnwatch role", ErrInvalidToken, v.opts.RoleClaim)
	}
	// One principal, one role: a person holding two is given neither rather
	// than the wider one by accident of ordering.
	return "", fmt.Errorf("%w: claim %s maps to several roles %v", ErrInvalidToken, v.opts.RoleClaim, roles)
}

// claimValue finds name in the claims: the literal key first, else a
// dotted path through nested objects (realm_access.roles).
func claimValue(mc jwt.MapClaims, name string) any {
	if v, ok := mc[name]; ok {
		return v
	}
	var cur any = map[string]any(mc)
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// claimStrings reads a string or an array of strings.
func claimStrings(mc jwt.MapClaims, name string) []string {
	switch v := claimValue(mc, name).(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
