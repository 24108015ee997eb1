// Package signin owns who is signed in to the console: the OpenID Connect
// authorization-code flow with PKCE against the bank's IdP (/login,
// /auth/callback), sign-out, the dev-mode sign-in (/dev/login) and the
// session the app asks about (/api/session). The session cookie holds the
// user's access token sealed (package session); the token is verified on
// every use with the services' own verifier (issuer, audience, claim names,
// role map), so the console shows exactly the principal the services see.
package signin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/churnwatch/churnwatch/services/console/internal/session"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

const (
	sessionCookie = "churnwatch_session"
	loginCookie   = "churnwatch_login"
	// loginTTL bounds the time between /login and the IdP's redirect back.
	loginTTL = 10 * time.Minute
)

// Verifier checks a bearer token the way the services do.
type Verifier interface {
	VerifyContext(ctx context.Context, token string) (auth.Principal, error)
}

// Minter signs a dev-mode token for a principal.
type Minter func(p auth.Principal, ttl time.Duration) (string, error)

// Options configure the sign-in handlers.
type Options struct {
	Jar      *session.Jar
	Verifier Verifier
	// OIDC, when set, signs users in at the bank's IdP.
	OIDC *OIDC
	// Dev enables /dev/login with DevMint (never in production).
	Dev     bool
	DevMint Minter
	// DevTTL is the lifetime of a dev-mode token (default 12h).
	DevTTL time.Duration
	// SessionMax bounds a session the IdP keeps alive with a refresh token
	// (default 12h): then the user signs in again.
	SessionMax time.Duration
	Log        *slog.Logger
}

// Handlers serve the sign-in routes.
type Handlers struct {
	o Options

	// refreshMu serialises refreshes; refreshed remembers each used
	// refresh token's result for a minute, so that requests the browser
	// sent with the old cookie while one refresh ran get the same new
	// tokens instead of spending a rotated refresh token twice.
	refreshMu sync.Mutex
	refreshed map[string]refreshed
}

type refreshed struct {
	s  stored
	at time.Time
}

// New checks the options.
func New(o Options) (*Handlers, error) {
	if o.Jar == nil || o.Verifier == nil || o.Log == nil {
		return nil, errors.New("signin: jar, verifier and log are required")
	}
	if o.Dev && o.DevMint == nil {
		return nil, errors.New("signin: dev mode needs a dev key to mint tokens")
	}
	if !o.Dev && o.OIDC == nil {
		return nil, errors.New("signin: neither OpenID Connect nor dev mode is configured: set CHURNWATCH_OIDC_ISSUER (production) or CHURNWATCH_CONSOLE_DEV=true")
	}
	if o.DevTTL == 0 {
		o.DevTTL = 12 * time.Hour
	}
	if o.SessionMax == 0 {
		o.SessionMax = 12 * time.Hour
	}
	return &Handlers{o: o, refreshed: map[string]refreshed{}}, nil
}

// Register mounts the routes on mux.
func (h *Handlers) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/session", h.serveSession)
	mux.HandleFunc("GET /login", h.serveLogin)
	mux.HandleFunc("GET /auth/callback", h.serveCallback)
	mux.HandleFunc("POST /logout", h.serveLogout)
	mux.HandleFunc("GET /dev/login", h.serveDevLogin)
}

// stored is the session cookie's content: the access token and, when the
// IdP gave one, the refresh token that renews it.
type stored struct {
	Token   string `json:"t"`
	Refresh string `json:"r,omitempty"`
	// Until bounds a refreshed session (unix seconds; SessionMax from sign-in).
	Until int64 `json:"u,omitempty"`
}

// Principal returns the signed-in principal and token of a request. An
// expired access token is renewed with the session's refresh token, and
// the new session cookie set on w.
func (h *Handlers) Principal(w http.ResponseWriter, r *http.Request) (auth.Principal, string, error) {
	var s stored
	if err := h.o.Jar.Get(r, sessionCookie, &s); err != nil {
		return auth.Principal{}, "", err
	}
	p, err := h.o.Verifier.VerifyContext(r.Context(), s.Token)
	if err == nil {
		return p, s.Token, nil
	}
	if s.Refresh == "" || h.o.OIDC == nil || time.Now().Unix() >= s.Until {
		return auth.Principal{}, "", fmt.Errorf("%w: %v", session.ErrExpired, err)
	}
	ns, err := h.refresh(r.Context(), s)
	if err != nil {
		h.o.Log.InfoContext(r.Context(), "session not renewed: sign in again", "err", err)
		return auth.Principal{}, "", fmt.Errorf("%w: %v", session.ErrExpired, err)
	}
	if p, err = h.store(w, r, ns); err != nil {
		return auth.Principal{}, "", fmt.Errorf("%w: renewed token: %v", session.ErrExpired, err)
	}
	return p, ns.Token, nil
}

// refresh trades the session's refresh token for new tokens (once per
// refresh token, see Handlers.refreshed).
func (h *Handlers) refresh(ctx context.Context, s stored) (stored, error) {
	h.refreshMu.Lock()
	defer h.refreshMu.Unlock()
	now := time.Now()
	for k, v := range h.refreshed {
		if now.Sub(v.at) > time.Minute {
			delete(h.refreshed, k)
		}
	}
	if v, ok := h.refreshed[s.Refresh]; ok {
		return v.s, nil
	}
	tok, err := h.o.OIDC.refresh(ctx, s.Refresh)
	if err != nil {
		return stored{}, err
	}
	ns := stored{Token: tok.AccessToken, Refresh: cmp.Or(tok.RefreshToken, s.Refresh), Until: s.Until}
	h.refreshed[s.Refresh] = refreshed{s: ns, at: now}
	return ns, nil
}

// Token is the bearer token of the request's session (for the /rpc proxy).
func (h *Handlers) Token(w http.ResponseWriter, r *http.Request) (string, error) {
	_, tok, err := h.Principal(w, r)
	return tok, err
}

// start stores a verified token (and its refresh token, if any) as a new
// session and returns its principal.
func (h *Handlers) start(w http.ResponseWriter, r *http.Request, token, refresh string) (auth.Principal, error) {
	s := stored{Token: token}
	if refresh != "" {
		s.Refresh, s.Until = refresh, time.Now().Add(h.o.SessionMax).Unix()
	}
	return h.store(w, r, s)
}

// store verifies the session's token and sets the cookie: kept until the
// token expires, or with a refresh token until the session's end.
func (h *Handlers) store(w http.ResponseWriter, r *http.Request, s stored) (auth.Principal, error) {
	p, err := h.o.Verifier.VerifyContext(r.Context(), s.Token)
	if err != nil {
		return auth.Principal{}, err
	}
	exp := p.Expires
	if s.Refresh != "" {
		exp = time.Unix(s.Until, 0)
	}
	if err := h.o.Jar.Set(w, sessionCookie, s, exp); err != nil {
		return auth.Principal{}, err
	}
	return p, nil
}

// SessionInfo is the JSON of GET /api/session.
type SessionInfo struct {
	Sub       string    `json:"sub"`
	Role      string    `json:"role"`
	Branch    string    `json:"branch"`
	ExpiresAt time.Time `json:"expiresAt"`
	DevMode   bool      `json:"devMode"`
}

func (h *Handlers) serveSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p, _, err := h.Principal(w, r)
	if err != nil {
		if !errors.Is(err, session.ErrMissing) {
			h.o.Jar.Clear(w, sessionCookie)
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "signed out", "login": "/login"})
		return
	}
	writeJSON(w, http.StatusOK, SessionInfo{Sub: p.Subject, Role: string(p.Role), Branch: p.Branch, ExpiresAt: p.Expires.UTC(), DevMode: h.o.Dev})
}

func (h *Handlers) serveLogout(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(r, o) {
		http.Error(w, "sign-out refused: the request came from another site", http.StatusForbidden)
		return
	}
	h.o.Jar.Clear(w, sessionCookie)
	h.o.Log.InfoContext(r.Context(), "signed out")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// safeNext keeps a post-sign-in target on this site: a path, not //host or
// /\host (which browsers read as another host).
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

var principalID = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,64}$`)

func (h *Handlers) serveDevLogin(w http.ResponseWriter, r *http.Request) {
	if !h.o.Dev {
		page(w, http.StatusNotFound, "Dev sign-in is off",
			"/dev/login works only in dev mode (churnwatch dev, or CHURNWATCH_CONSOLE_DEV=true). Sign in through your bank's identity provider instead.", "/login", "Sign in")
		return
	}
	q := r.URL.Query()
	p := auth.Principal{Subject: q.Get("sub"), Role: auth.Role(q.Get("role")), Branch: q.Get("branch")}
	var problems []string
	if !principalID.MatchString(p.Subject) {
		problems = append(problems, "sub must be a principal id of 1–64 letters, digits or ._:@- (e.g. sub=rm-001)")
	}
	if !p.Role.Valid() || p.Role == auth.RoleIngest {
		problems = append(problems, "role must be manager, branch_head, ops or admin")
	}
	if p.Role == auth.RoleBranchHead && p.Branch == "" {
		problems = append(problems, "a branch_head needs branch=… (e.g. branch=br-01)")
	}
	if p.Branch != "" && !principalID.MatchString(p.Branch) {
		problems = append(problems, "branch must be 1–64 letters, digits or ._:@-")
	}
	if len(problems) > 0 {
		page(w, http.StatusBadRequest, "Dev sign-in: bad request", strings.Join(problems, "; ")+". Example: /dev/login?sub=rm-001&role=manager", "", "")
		return
	}
	tok, err := h.o.DevMint(p, h.o.DevTTL)
	if err != nil {
		h.o.Log.ErrorContext(r.Context(), "dev sign-in: mint", "err", err)
		page(w, http.StatusInternalServerError, "Dev sign-in failed", "The dev key could not sign a token: "+err.Error(), "", "")
		return
	}
	if _, err := h.start(w, r, tok, ""); err != nil {
		h.o.Log.ErrorContext(r.Context(), "dev sign-in: token not accepted", "err", err)
		page(w, http.StatusInternalServerError, "Dev sign-in failed", "The services' verifier refused the dev token ("+err.Error()+"): is CHURNWATCH_AUTH_PUBLIC_KEYS the dev key's public key?", "", "")
		return
	}
	h.o.Log.InfoContext(r.Context(), "dev sign-in", "principal", p.Subject, "role", string(p.Role))
	http.Redirect(w, r, safeNext(q.Get("next")), http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · churnwatch</title></head>
<body><main><h1>{{.Title}}</h1><p>{{.Text}}</p>{{range .Links}}<p><a href="{{.Href}}">{{.Label}}</a></p>{{end}}</main></body></html>
`))

type link struct{ Href, Label string }

// page answers with a small server-rendered HTML page (errors of the
// sign-in flow happen before the app can run).
func page(w http.ResponseWriter, status int, title, text, href, label string) {
	var links []link
	if href != "" {
		links = append(links, link{href, label})
	}
	pageLinks(w, status, title, text, links)
}

func pageLinks(w http.ResponseWriter, status int, title, text string, links []link) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct {
		Title, Text string
		Links       []link
	}{title, text, links})
}
