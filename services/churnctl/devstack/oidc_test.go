package devstack_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
)

// The bank's IdP in these tests is zitadel/oidc's OpenID Provider
// (github.com/zitadel/oidc/v3/pkg/op, an OpenID-certified implementation)
// with its example storage, run in-process on a loopback port. Two
// adjustments make it issue what a bank's IdP is configured to issue for
// churnwatch: JWT access tokens (the example clients issue opaque ones)
// carrying the user's churnwatch role.

type bankUsers struct{ users []*storage.User }

func (u bankUsers) GetUserByID(id string) *storage.User {
	for _, x := range u.users {
		if x.ID == id {
			return x
		}
	}
	return nil
}

func (u bankUsers) GetUserByUsername(name string) *storage.User {
	for _, x := range u.users {
		if x.Username == name {
			return x
		}
	}
	return nil
}

func (u bankUsers) ExampleClientID() string { return "service" }

type bankIdP struct {
	*storage.Storage
	roles map[string]string // user id → role claim
	// accessTTL is the access tokens' lifetime (short: the test waits for
	// the console to renew one).
	accessTTL time.Duration
}

func (s bankIdP) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	id, refresh, _, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
	return id, refresh, time.Now().Add(s.accessTTL), err
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

func (s bankIdP) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

func (s bankIdP) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	return map[string]any{"role": s.roles[userID]}, nil
}

// startIdP serves the provider on a free loopback port; the console is a
// public client (PKCE, no secret) with a loopback redirect URI (any port,
// RFC 8252).
func startIdP(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + lis.Addr().String()
	users := bankUsers{users: []*storage.User{{ID: "rm-001", Username: "rm-001@bank.example", Password: "correct horse", FirstName: "Ruth", LastName: "Manager", EmailVerified: true}}}
	st := bankIdP{
		Storage:   storage.NewStorageWithClients(users, map[string]*storage.Client{"churnwatch-console": storage.NativeClient("churnwatch-console", "http://127.0.0.1/auth/callback")}),
		roles:     map[string]string{"rm-001": "manager"},
		accessTTL: 3 * time.Second,
	}
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	return issuer
}

// TestConsoleSignInWithOpenIDConnect drives the whole authorization-code
// flow with PKCE as a browser would (following redirects, a cookie jar):
// the console sends the user to the IdP with an S256 code challenge and a
// nonce, the user signs in on the IdP's page, the IdP redirects back, the
// console exchanges the code, verifies the ID token and keeps the access
// token in a sealed cookie. The services verify that same access token
// through the IdP's JWKS with its issuer and audience required: a call
// through /rpc answers with the manager's own alerts only. Outside dev mode /dev/login is refused.
func TestConsoleSignInWithOpenIDConnect(t *testing.T) {
	issuer := startIdP(t)
	keyFile := filepath.Join(t.TempDir(), "session.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := startStack(t, map[string]string{
		"CHURNWATCH_CONSOLE_DEV":              "false",
		"CHURNWATCH_CONSOLE_SESSION_KEY_FILE": keyFile,
		"CHURNWATCH_OIDC_ISSUER":              issuer,
		"CHURNWATCH_OIDC_CLIENT_ID":           "churnwatch-console",
		"CHURNWATCH_AUTH_JWKS_URL":            issuer + "/keys",
		"CHURNWATCH_AUTH_ISSUER":              issuer,
		"CHURNWATCH_AUTH_AUDIENCE":            "churnwatch-console",
		"CHURNWATCH_AUTH_LEEWAY":              "0s",
		"CHURNWATCH_OIDC_SCOPES":              "openid,profile,offline_access",
	})
	seed(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	console := st.ConsoleURL()

	jar, _ := cookiejar.New(nil)
	var visited []*url.URL
	hc := http1(jar)
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		visited = append(visited, req.URL)
		return nil
	}

	resp, err := hc.Get(console + "/dev/login?sub=rm-001&role=admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/dev/login outside dev mode: %d, want 404", resp.StatusCode)
	}

	resp, err = hc.Get(console + "/login?next=/alerts/a-1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), issuer+"/login/username") {
		t.Fatalf("/login ended at %s (%d), want the IdP's sign-in page", resp.Request.URL, resp.StatusCode)
	}
	var authorize *url.URL
	for _, u := range visited {
		if strings.HasPrefix(u.String(), issuer+"/auth") {
			authorize = u
		}
	}
	if authorize == nil {
		t.Fatalf("never sent to the IdP's authorization endpoint: %v", visited)
	}
	q := authorize.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) < 43 || q.Get("nonce") == "" || q.Get("state") == "" || q.Get("response_type") != "code" {
		t.Fatalf("authorization request lacks PKCE S256, nonce or state: %s", authorize.RawQuery)
	}
	if q.Get("redirect_uri") != console+"/auth/callback" {
		t.Fatalf("redirect_uri %q, want %s/auth/callback (the dev stack's default)", q.Get("redirect_uri"), console)
	}

	// The user signs in on the IdP's page.
	id := resp.Request.URL.Query().Get("authRequestID")
	resp, err = hc.PostForm(issuer+"/login/username", url.Values{"username": {"rm-001@bank.example"}, "password": {"correct horse"}, "id": {id}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.String() != console+"/alerts/a-1" {
		t.Fatalf("after the IdP's sign-in: %s (%d) %s, want the console's /alerts/a-1", resp.Request.URL, resp.StatusCode, body)
	}
	for _, c := range jar.Cookies(resp.Request.URL) {
		if strings.Count(c.Value, ".") == 2 || strings.HasPrefix(c.Value, "eyJ") {
			t.Fatalf("cookie %s holds a readable token", c.Name)
		}
	}

	resp, err = hc.Get(console + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	var sess struct {
		Sub, Role, Branch string
		DevMode           bool
		ExpiresAt         time.Time
	}
	if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/session: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if sess.Sub != "rm-001" || sess.Role != "manager" || sess.DevMode || !sess.ExpiresAt.After(time.Now()) {
		t.Fatalf("session %+v, want rm-001 as manager, not dev mode", sess)
	}

	list, err := connectAlerts(hc, console+"/rpc").list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if err != nil {
		t.Fatalf("ListAlerts with the IdP's token: %v", err)
	}
	if n := len(list.Msg.Alerts); n != 1 || list.Msg.Alerts[0].CustomerId != "C1001" {
		t.Fatalf("rm-001 (signed in at the IdP) lists %v, want only C1001's alert", list.Msg.Alerts)
	}

	// The access token lives 3 s: after it expired, the console renews it
	// with the refresh token (rotated by the IdP) and the call still works;
	// the session's expiry moves on.
	for time.Now().Before(sess.ExpiresAt.Add(time.Second)) {
		time.Sleep(200 * time.Millisecond)
	}
	list, err = connectAlerts(hc, console+"/rpc").list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if err != nil || len(list.Msg.Alerts) != 1 {
		t.Fatalf("ListAlerts after the access token expired (the console should renew it): %v", err)
	}
	first := sess.ExpiresAt
	resp, err = hc.Get(console + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil || resp.StatusCode != 200 || !sess.ExpiresAt.After(first) {
		t.Fatalf("/api/session after renewal: %d %v, expires %s (first token %s)", resp.StatusCode, err, sess.ExpiresAt, first)
	}
	resp.Body.Close()

	// A forged callback (no sign-in started in this browser) is refused.
	resp, err = http1(nil).Get(console + "/auth/callback?code=stolen&state=guess")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without a sign-in in progress: %d, want 400", resp.StatusCode)
	}

	// Sign-out ends the session.
	req, _ := http.NewRequest(http.MethodPost, console+"/logout", nil)
	req.Header.Set("Origin", console)
	if resp, err = hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, err = hc.Get(console + "/api/session"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/api/session after sign-out: %d, want 401", resp.StatusCode)
	}
}
