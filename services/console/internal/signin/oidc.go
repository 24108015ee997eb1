package signin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig names the bank's IdP and the console's client registration.
type OIDCConfig struct {
	Issuer   string
	ClientID string
	// ClientSecret is empty for a public client (PKCE alone protects the
	// code exchange).
	ClientSecret string
	RedirectURL  string
	Scopes       []string
	// HTTPClient reaches the IdP (its CA, a proxy); default http.DefaultClient.
	HTTPClient *http.Client
}

// OIDC is a discovered IdP: endpoints, the ID-token verifier and the
// client's oauth2 configuration.
type OIDC struct {
	provider *oidc.Provider
	idTokens *oidc.IDTokenVerifier
	oauth    oauth2.Config
	client   *http.Client
}

// DiscoverOIDC reads the IdP's /.well-known/openid-configuration.
func DiscoverOIDC(ctx context.Context, c OIDCConfig) (*OIDC, error) {
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery at %s: %w (check CHURNWATCH_OIDC_ISSUER and that the IdP is reachable from the console)", c.Issuer, err)
	}
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile"}
	}
	return &OIDC{
		provider: p,
		idTokens: p.Verifier(&oidc.Config{ClientID: c.ClientID}),
		oauth:    oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, RedirectURL: c.RedirectURL, Endpoint: p.Endpoint(), Scopes: scopes},
		client:   hc,
	}, nil
}

// JWKSURL is the IdP's key set (the services verify its tokens with it).
func (o *OIDC) JWKSURL() string {
	var claims struct {
		JWKSURI string `json:"jwks_uri"`
	}
	_ = o.provider.Claims(&claims)
	return claims.JWKSURI
}

// pending is what the login cookie holds between /login and the callback.
type pending struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Handlers) serveLogin(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	o := h.o.OIDC
	if o == nil {
		// Dev mode without an IdP: show how to sign in.
		q := "&next=" + next
		pageLinks(w, http.StatusOK, "Sign in (dev mode)",
			"No identity provider is configured; in dev mode pick a principal (or edit the link: /dev/login?sub=ID&role=manager|branch_head|ops|admin[&branch=B]).",
			[]link{
				{"/dev/login?sub=rm-001&role=manager" + q, "Manager rm-001"},
				{"/dev/login?sub=bh-01&role=branch_head&branch=br-01" + q, "Branch head of br-01"},
				{"/dev/login?sub=ops-1&role=ops" + q, "Ops"},
				{"/dev/login?sub=admin-1&role=admin" + q, "Admin"},
			})
		return
	}
	p := pending{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(), Next: next}
	if err := h.o.Jar.Set(w, loginCookie, p, time.Now().Add(loginTTL)); err != nil {
		h.o.Log.ErrorContext(r.Context(), "login: set cookie", "err", err)
		page(w, http.StatusInternalServerError, "Sign-in failed", err.Error(), "", "")
		return
	}
	u := o.oauth.AuthCodeURL(p.State, oauth2.S256ChallengeOption(p.Verifier), oidc.Nonce(p.Nonce))
	http.Redirect(w, r, u, http.StatusFound)
}

func (h *Handlers) serveCallback(w http.ResponseWriter, r *http.Request) {
	o := h.o.OIDC
	if o == nil {
		page(w, http.StatusNotFound, "No identity provider", "This console has no OpenID Connect provider configured (CHURNWATCH_OIDC_ISSUER).", "/login", "Sign in")
		return
	}
	q := r.URL.Query()
	var p pending
	err := h.o.Jar.Get(r, loginCookie, &p)
	h.o.Jar.Clear(w, loginCookie)
	if err != nil {
		msg := "The sign-in took too long or started in another browser (" + err.Error() + ")."
		page(w, http.StatusBadRequest, "Sign-in expired", msg+" Start again.", "/login", "Sign in again")
		return
	}
	if e := q.Get("error"); e != "" {
		h.o.Log.WarnContext(r.Context(), "login refused by the IdP", "error", e)
		page(w, http.StatusUnauthorized, "Sign-in refused", "Your identity provider answered: "+e+" "+q.Get("error_description")+". Ask your administrator for access to churnwatch, then sign in again.", "/login?next="+p.Next, "Sign in again")
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.State)) != 1 {
		h.o.Log.WarnContext(r.Context(), "login callback with a wrong state (possible forged sign-in)")
		page(w, http.StatusBadRequest, "Sign-in refused", "The sign-in answer does not belong to this browser's sign-in. Start again.", "/login", "Sign in again")
		return
	}
	ctx := oidc.ClientContext(r.Context(), o.client)
	tok, err := o.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.Verifier))
	if err != nil {
		h.o.Log.WarnContext(r.Context(), "login: code exchange failed", "err", err)
		page(w, http.StatusBadGateway, "Sign-in failed", "The identity provider did not accept the sign-in code. Start again; if it keeps failing, operators should check CHURNWATCH_OIDC_CLIENT_ID, the client secret and the redirect URL registered at the IdP.", "/login", "Sign in again")
		return
	}
	if err := o.checkIDToken(ctx, tok, p.Nonce); err != nil {
		h.o.Log.WarnContext(r.Context(), "login: ID token refused", "err", err)
		page(w, http.StatusBadGateway, "Sign-in failed", "The identity provider's ID token was refused: "+err.Error()+".", "/login", "Sign in again")
		return
	}
	pr, err := h.start(w, r, tok.AccessToken, tok.RefreshToken)
	if err != nil {
		h.o.Log.WarnContext(r.Context(), "login: access token not accepted by the services' verifier", "err", err)
		page(w, http.StatusForbidden, "Signed in, but not for churnwatch",
			"Your identity provider signed you in, but its access token is not accepted by churnwatch ("+err.Error()+"). Operators: the access token must be a JWT with the role claim (CHURNWATCH_AUTH_ROLE_CLAIM, _ROLE_MAP) and the audience CHURNWATCH_AUTH_AUDIENCE.", "/login", "Sign in again")
		return
	}
	h.o.Log.InfoContext(r.Context(), "signed in", "principal", pr.Subject, "role", string(pr.Role))
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

// refresh trades a refresh token for new tokens at the IdP.
func (o *OIDC) refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	ctx = oidc.ClientContext(ctx, o.client)
	// An expired token makes the source refresh at once.
	return o.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
}

func (o *OIDC) checkIDToken(ctx context.Context, tok *oauth2.Token, nonce string) error {
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return errors.New("no id_token in the token response (is the openid scope requested?)")
	}
	id, err := o.idTokens.Verify(ctx, raw)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(id.Nonce), []byte(nonce)) != 1 {
		return errors.New("nonce does not match this sign-in")
	}
	return nil
}
