package devstack_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// http1 is a client that speaks HTTP/1.1 only, as a browser's fetch may.
func http1(jar http.CookieJar) *http.Client {
	tr := &http.Transport{ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	return &http.Client{Transport: tr, Jar: jar}
}

// bearer adds a token to every request of a Connect client.
func bearer(tok string) connect.ClientOption { return connect.WithInterceptors(streamBearer(tok)) }

type streamBearer string

func (s streamBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(s))
		return next(ctx, req)
	}
}

func (s streamBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c := next(ctx, spec)
		c.RequestHeader().Set("Authorization", "Bearer "+string(s))
		return c
	}
}
func (s streamBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

type alertClients struct {
	list      *connect.Client[cwv1.ListAlertsRequest, cwv1.ListAlertsResponse]
	get       *connect.Client[cwv1.GetAlertRequest, cwv1.Alert]
	subscribe *connect.Client[cwv1.SubscribeRequest, cwv1.SubscribeResponse]
}

// connectAlerts builds Connect (JSON, as the console's TypeScript client
// sends) clients of AlertService at base (a service's HTTP port or the
// console's /rpc).
func connectAlerts(hc *http.Client, base string, opts ...connect.ClientOption) alertClients {
	opts = append(opts, connect.WithProtoJSON())
	p := base + "/churnwatch.v1.AlertService/"
	return alertClients{
		list:      connect.NewClient[cwv1.ListAlertsRequest, cwv1.ListAlertsResponse](hc, p+"ListAlerts", opts...),
		get:       connect.NewClient[cwv1.GetAlertRequest, cwv1.Alert](hc, p+"GetAlert", opts...),
		subscribe: connect.NewClient[cwv1.SubscribeRequest, cwv1.SubscribeResponse](hc, p+"Subscribe", opts...),
	}
}

func startStack(t *testing.T, env map[string]string) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), AnyPort: true, Env: env})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	return st
}

// seed gives rm-001 customer C1001 and rm-002 customer C2001, both in
// br-01, and a large external outflow each: one alert per manager.
func seed(t *testing.T, st *devstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tok, _ := st.Token("core", auth.RoleIngest, "", time.Hour)
	conn, err := client.Dial(st.Ingester.GRPCAddr(), tok, st.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ing := cwv1.NewIngestServiceClient(conn)
	err = cli.Retrying(ctx, 45*time.Second, func(ctx context.Context) error {
		_, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
			{CustomerId: "C1001", Tier: "MASS", ManagerId: "rm-001", BranchId: "br-01", DisplayName: "Wang L."},
			{CustomerId: "C2001", Tier: "MASS", ManagerId: "rm-002", BranchId: "br-01", DisplayName: "Novak J."},
		}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	err = cli.Retrying(ctx, 45*time.Second, func(ctx context.Context) error {
		resp, err := ing.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: []*cwv1.IncomingEvent{
			{EventId: "t-1", CustomerId: "C1001", AccountId: "A1001-01", OccurredAt: now, Type: "TRANSFER_OUT", Amount: "12500.00", Currency: "EUR", CounterpartyBank: "OTHERBANK", BalanceAfter: "50000.00"},
			{EventId: "t-2", CustomerId: "C2001", AccountId: "A2001-01", OccurredAt: now, Type: "TRANSFER_OUT", Amount: "15000.00", Currency: "EUR", CounterpartyBank: "OTHERBANK", BalanceAfter: "50000.00"},
		}})
		if err == nil && resp.Accepted+resp.Duplicates != 2 {
			t.Fatalf("publish: %v", resp)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recv reads stream messages into a channel until the stream ends.
func recv(t *testing.T, stream *connect.ServerStreamForClient[cwv1.SubscribeResponse]) <-chan *cwv1.AlertUpdate {
	ch := make(chan *cwv1.AlertUpdate, 64)
	go func() {
		defer close(ch)
		for stream.Receive() {
			if u := stream.Msg().GetUpdate(); u != nil {
				ch <- u
			}
		}
		if err := stream.Err(); err != nil && connect.CodeOf(err) != connect.CodeCanceled {
			t.Logf("stream ended: %v", err)
		}
	}()
	return ch
}

func waitFor(t *testing.T, ch <-chan *cwv1.AlertUpdate, within time.Duration, ok func(*cwv1.AlertUpdate) bool) *cwv1.AlertUpdate {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case u, open := <-ch:
			if !open {
				t.Fatal("stream ended")
			}
			if ok(u) {
				return u
			}
		case <-deadline:
			t.Fatalf("no matching update within %s", within)
		}
	}
}

// TestBrowserAPIOnServiceHTTPPort: the alerts service's HTTP port serves
// AlertService in the Connect protocol over HTTP/1.1, unary and the
// Subscribe server stream, through the same auth and access table as gRPC:
// no token → unauthenticated; a manager sees only its own customers'
// alerts. The HTTP read/write timeouts are 2 s here, and the stream stays
// open past them.
func TestBrowserAPIOnServiceHTTPPort(t *testing.T) {
	st := startStack(t, map[string]string{"CHURNWATCH_HTTP_READ_TIMEOUT": "2s", "CHURNWATCH_HTTP_WRITE_TIMEOUT": "2s"})
	base := "http://" + st.Alerts.HTTPAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	anon := connectAlerts(http1(nil), base)
	_, err := anon.list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("ListAlerts without a token: %v, want unauthenticated", err)
	}
	stream, err := anon.subscribe.CallServerStream(ctx, connect.NewRequest(&cwv1.SubscribeRequest{}))
	if err == nil {
		for stream.Receive() {
			t.Fatal("Subscribe without a token delivered a message")
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("Subscribe without a token: %v, want unauthenticated", err)
	}

	tok, _ := st.Token("rm-001", auth.RoleManager, "", time.Hour)
	rm := connectAlerts(http1(nil), base, bearer(tok))
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err = rm.subscribe.CallServerStream(sctx, connect.NewRequest(&cwv1.SubscribeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	updates := recv(t, stream)
	// Outlive the server's 2 s read and write timeouts before anything
	// arrives on the stream.
	time.Sleep(3 * time.Second)
	seed(t, st)
	u := waitFor(t, updates, 10*time.Second, func(u *cwv1.AlertUpdate) bool { return u.Change == cwv1.AlertChange_ALERT_CHANGE_CREATED })
	if u.Alert.CustomerId != "C1001" || u.Cursor == "" {
		t.Fatalf("rm-001's stream delivered %v (cursor %q), want C1001's alert", u.Alert.CustomerId, u.Cursor)
	}
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	list, err := rm.list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.Alerts); n != 1 || list.Msg.Alerts[0].CustomerId != "C1001" {
		t.Fatalf("rm-001 lists %d alerts %v, want only C1001's", n, list.Msg.Alerts)
	}
	select {
	case u := <-updates:
		if u.Alert.GetManagerId() != "rm-001" {
			t.Fatalf("rm-001's stream delivered another manager's alert: %v", u.Alert.CustomerId)
		}
	default:
	}

	// Another manager's alert, by id: refused.
	opsTok, _ := st.Token("ops-1", auth.RoleOps, "", time.Hour)
	all, err := connectAlerts(http1(nil), base, bearer(opsTok)).list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{CustomerId: "C2001"}))
	if err != nil || len(all.Msg.Alerts) != 1 {
		t.Fatalf("ops lists C2001: %v %v", all, err)
	}
	_, err = rm.get.CallUnary(ctx, connect.NewRequest(&cwv1.GetAlertRequest{AlertId: all.Msg.Alerts[0].AlertId}))
	if c := connect.CodeOf(err); c != connect.CodePermissionDenied && c != connect.CodeNotFound {
		t.Fatalf("rm-001 GetAlert of rm-002's alert: %v, want permission denied", err)
	}
}

// TestConsoleProxiesAsSignedInUser: through the console, a browser signed
// in with /dev/login calls AlertService with its session cookie only; the
// console adds the token. Signed out → 401; a request without the Connect
// header or from another origin → 403; the Subscribe stream works through
// the console.
func TestConsoleProxiesAsSignedInUser(t *testing.T) {
	st := startStack(t, nil)
	seed(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	console := st.ConsoleURL()
	if env := st.Env(); env["CHURNWATCH_CONSOLE_URL"] != console {
		t.Fatalf("Env CHURNWATCH_CONSOLE_URL = %q, want %q", env["CHURNWATCH_CONSOLE_URL"], console)
	}
	p, err := st.WriteEnvFile()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), `export CHURNWATCH_CONSOLE_URL="`+console+`"`) {
		t.Fatalf("%s lacks CHURNWATCH_CONSOLE_URL:\n%s", filepath.Base(p), b)
	}

	jar, _ := cookiejar.New(nil)
	hc := http1(jar)
	signedOut := connectAlerts(hc, console+"/rpc")
	if _, err := signedOut.list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("signed out: %v, want unauthenticated", err)
	}
	resp, err := hc.Get(console + "/dev/login?sub=rm-001&role=manager")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		t.Fatalf("dev login ended at %s with %d, want the inbox /", resp.Request.URL, resp.StatusCode)
	}
	rm := connectAlerts(hc, console+"/rpc")
	list, err := rm.list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.Alerts); n != 1 || list.Msg.Alerts[0].CustomerId != "C1001" {
		t.Fatalf("rm-001 through the console lists %v, want only C1001's alert", list.Msg.Alerts)
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := rm.subscribe.CallServerStream(sctx, connect.NewRequest(&cwv1.SubscribeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	u := waitFor(t, recv(t, stream), 10*time.Second, func(*cwv1.AlertUpdate) bool { return true })
	if u.Alert.CustomerId != "C1001" {
		t.Fatalf("stream through the console opened with %v, want C1001's open alert", u.Alert.CustomerId)
	}

	post := func(hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, console+"/rpc/churnwatch.v1.AlertService/ListAlerts", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(nil); c != http.StatusForbidden {
		t.Fatalf("a form-like POST without Connect-Protocol-Version: %d, want 403", c)
	}
	if c := post(map[string]string{"Connect-Protocol-Version": "1", "Origin": "https://evil.example"}); c != http.StatusForbidden {
		t.Fatalf("a POST from another origin: %d, want 403", c)
	}
	if c := post(map[string]string{"Connect-Protocol-Version": "1", "Origin": console}); c != http.StatusOK {
		t.Fatalf("a same-origin POST: %d, want 200", c)
	}
	// /dev/login is on in dev mode only; the session endpoint names the principal.
	resp, err = hc.Get(console + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/api/session signed in: %d", resp.StatusCode)
	}
}

// TestConsoleOverTLS: with TLS on every service port and mTLS required on
// them (the production shape), the console serves HTTPS itself, calls the
// services' HTTPS ports with the CA and a client certificate, and sets a
// Secure __Host- cookie; a browser-like client on HTTP/2 signs in, lists
// and subscribes through /rpc.
func TestConsoleOverTLS(t *testing.T) {
	pki := testkit.NewPKI(t)
	st := startStack(t, map[string]string{
		"CHURNWATCH_TLS_CERT": pki.ServerCert, "CHURNWATCH_TLS_KEY": pki.ServerKey, "CHURNWATCH_TLS_CLIENT_CA": pki.CAFile,
		"CHURNWATCH_TLS_CA": pki.CAFile, "CHURNWATCH_TLS_CLIENT_CERT": pki.ClientCert, "CHURNWATCH_TLS_CLIENT_KEY": pki.ClientKey,
	})
	seed(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	console := st.ConsoleURL()
	if !strings.HasPrefix(console, "https://") {
		t.Fatalf("console URL %s, want https", console)
	}
	roots, err := client.TLS{CAFile: pki.CAFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: roots, ForceAttemptHTTP2: true}}
	resp, err := hc.Get(console + "/dev/login?sub=rm-001&role=manager")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("console over TLS: %s, HSTS %q", resp.Proto, resp.Header.Get("Strict-Transport-Security"))
	}
	u, _ := url.Parse(console)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != "__Host-churnwatch_session" {
		t.Fatalf("cookies %v, want one __Host-churnwatch_session", cookies)
	}
	rm := connectAlerts(hc, console+"/rpc")
	list, err := rm.list.CallUnary(ctx, connect.NewRequest(&cwv1.ListAlertsRequest{}))
	if err != nil || len(list.Msg.Alerts) != 1 || list.Msg.Alerts[0].CustomerId != "C1001" {
		t.Fatalf("ListAlerts through the console to the mTLS alerts port: %v %v", list, err)
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := rm.subscribe.CallServerStream(sctx, connect.NewRequest(&cwv1.SubscribeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if u := waitFor(t, recv(t, stream), 10*time.Second, func(*cwv1.AlertUpdate) bool { return true }); u.Alert.CustomerId != "C1001" {
		t.Fatalf("stream opened with %v", u.Alert.CustomerId)
	}
}
