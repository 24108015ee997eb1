package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Auth is how bearer tokens are verified beyond the static keys of
// CHURNWATCH_AUTH_PUBLIC_KEYS: the IdP's JWKS, the required issuer and
// audience, lifetime limits and where the role and branch are found in the
// token. package auth builds the verifier from it (auth.FromConfig).
type Auth struct {
	JWKSURL        string
	JWKSRefresh    time.Duration
	JWKSMinRefetch time.Duration
	Issuer         string
	Audience       string
	MaxTTL         time.Duration
	Leeway         time.Duration
	SubjectClaim   string
	RoleClaim      string
	BranchClaim    string
	// RoleMap maps a value of the role claim (an IdP role or group name) to
	// a churnwatch role name; empty: the claim holds churnwatch role names.
	RoleMap map[string]string
}

// AuthSetting documents one token-verification variable (for -h and docs).
type AuthSetting struct{ Name, Default, Help string }

// AuthSettings lists every token-verification variable, its default and
// its meaning; docs/security-identity.md carries the same table (checked by
// a test in package auth).
var AuthSettings = []AuthSetting{
	{"CHURNWATCH_AUTH_PUBLIC_KEYS", "", "PEM files or PEM text (comma-separated) of static token signers; with or instead of a JWKS"},
	{"CHURNWATCH_AUTH_JWKS_URL", "", "the IdP's JWKS (https; http only on loopback): cached, refetched on an unknown kid, refreshed periodically"},
	{"CHURNWATCH_AUTH_JWKS_REFRESH", "15m", "how often the JWKS is refetched (keys added or removed by rotation take effect)"},
	{"CHURNWATCH_AUTH_JWKS_MIN_REFETCH", "30s", "least time between refetches caused by tokens with an unknown kid (rate limit)"},
	{"CHURNWATCH_AUTH_ISSUER", "", "required iss (exact match); empty: not checked"},
	{"CHURNWATCH_AUTH_AUDIENCE", "", "required aud (string or one entry of an array); empty: not checked"},
	{"CHURNWATCH_AUTH_MAX_TTL", "", "longest accepted lifetime exp − iat (iat then required), e.g. 12h; empty: not checked"},
	{"CHURNWATCH_AUTH_LEEWAY", "30s", "clock skew allowed for exp, nbf and iat (iat and nbf may not lie further in the future)"},
	{"CHURNWATCH_AUTH_SUBJECT_CLAIM", "sub", "claim naming the principal (matches managerId of customer profiles), e.g. preferred_username"},
	{"CHURNWATCH_AUTH_ROLE_CLAIM", "role", "claim holding the role: a string or an array, dotted path allowed (realm_access.roles, roles)"},
	{"CHURNWATCH_AUTH_BRANCH_CLAIM", "branch", "claim holding a branch head's branch id (string, or an array of one)"},
	{"CHURNWATCH_AUTH_ROLE_MAP", "", "IdP value=churnwatch role, comma-separated (cw-ops=ops,ChurnWatch.Admin=admin); when set only mapped values count"},
}

func loadAuth(e *Env) Auth {
	a := Auth{
		JWKSURL:        e.String("CHURNWATCH_AUTH_JWKS_URL", ""),
		JWKSRefresh:    e.Duration("CHURNWATCH_AUTH_JWKS_REFRESH", 15*time.Minute),
		JWKSMinRefetch: e.Duration("CHURNWATCH_AUTH_JWKS_MIN_REFETCH", 30*time.Second),
		Issuer:         e.String("CHURNWATCH_AUTH_ISSUER", ""),
		Audience:       e.String("CHURNWATCH_AUTH_AUDIENCE", ""),
		MaxTTL:         e.Duration("CHURNWATCH_AUTH_MAX_TTL", 0),
		Leeway:         e.Duration("CHURNWATCH_AUTH_LEEWAY", 30*time.Second),
		SubjectClaim:   e.String("CHURNWATCH_AUTH_SUBJECT_CLAIM", "sub"),
		RoleClaim:      e.String("CHURNWATCH_AUTH_ROLE_CLAIM", "role"),
		BranchClaim:    e.String("CHURNWATCH_AUTH_BRANCH_CLAIM", "branch"),
	}
	for _, pair := range e.List("CHURNWATCH_AUTH_ROLE_MAP", nil) {
		from, to, ok := strings.Cut(pair, "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if !ok || from == "" || to == "" {
			e.errs = append(e.errs, fmt.Errorf("CHURNWATCH_AUTH_ROLE_MAP: %q is not idp-value=role", pair))
			continue
		}
		if a.RoleMap == nil {
			a.RoleMap = map[string]string{}
		}
		a.RoleMap[from] = to
	}
	return a
}

// validate reports every problem of the token settings; keys tells whether
// static public keys are configured.
func (a Auth) validate(keys bool) []error {
	var errs []error
	if !keys && a.JWKSURL == "" {
		errs = append(errs, errors.New("CHURNWATCH_AUTH_PUBLIC_KEYS and CHURNWATCH_AUTH_JWKS_URL are empty: every RPC needs a verified token"))
	}
	if a.JWKSURL != "" {
		u, err := url.Parse(a.JWKSURL)
		switch {
		case err != nil || u.Host == "":
			errs = append(errs, errors.New("CHURNWATCH_AUTH_JWKS_URL is not a URL"))
		case u.Scheme == "https":
		case u.Scheme == "http" && loopback(u.Hostname()):
		default:
			errs = append(errs, errors.New("CHURNWATCH_AUTH_JWKS_URL must be https:// (http only on a loopback address)"))
		}
		if a.JWKSRefresh < time.Minute && a.JWKSRefresh != 0 {
			errs = append(errs, errors.New("CHURNWATCH_AUTH_JWKS_REFRESH must be at least 1m"))
		}
		if a.JWKSMinRefetch < 0 {
			errs = append(errs, errors.New("CHURNWATCH_AUTH_JWKS_MIN_REFETCH must not be negative"))
		}
	}
	if a.MaxTTL < 0 {
		errs = append(errs, errors.New("CHURNWATCH_AUTH_MAX_TTL must not be negative"))
	}
	if a.Leeway < 0 || a.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("CHURNWATCH_AUTH_LEEWAY must be between 0 and 5m"))
	}
	if a.SubjectClaim == "" || a.RoleClaim == "" || a.BranchClaim == "" {
		errs = append(errs, errors.New("CHURNWATCH_AUTH_SUBJECT_CLAIM, _ROLE_CLAIM and _BRANCH_CLAIM must not be empty"))
	}
	return errs
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fields renders the token settings for the start-up log (no secrets here:
// URLs, names and durations).
func (a Auth) fields() string {
	return fmt.Sprintf("jwks_url=%s jwks_refresh=%s issuer=%q audience=%q max_ttl=%s leeway=%s claims=%s/%s/%s role_map=%d",
		MaskURL(a.JWKSURL), a.JWKSRefresh, a.Issuer, a.Audience, a.MaxTTL, a.Leeway, a.SubjectClaim, a.RoleClaim, a.BranchClaim, len(a.RoleMap))
}
