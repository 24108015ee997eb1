package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/encoding/protojson"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// The signing secret as a bank's operator would write it.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookServer is a CRM endpoint: it verifies every request's Standard
// Webhooks signature with the documented secret, answers 503 to the first
// failFirst requests and records what it accepted.
type hookServer struct {
	t         *testing.T
	srv       *httptest.Server
	mu        sync.Mutex
	failFirst int
	status    int // answer once past failFirst (default 200)
	calls     int
	got       []delivered
	bad       []string
	// failFor answers 503 to every request until failFor after the first.
	failFor time.Duration
	firstAt time.Time
	refused []string // webhook-id of each request answered 503
}

type delivered struct {
	webhookID string
	event     map[string]json.RawMessage
	update    *cwv1.AlertUpdate
}

func newHookServer(t *testing.T, failFirst, status int) *hookServer {
	h := &hookServer{t: t, failFirst: failFirst, status: status}
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		if err := wh.Verify(body, r.Header); err != nil {
			h.bad = append(h.bad, "library verify: "+err.Error())
		}
		// The same check by hand, as docs/alerts.md shows it.
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
		if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); r.Header.Get("webhook-signature") != want {
			h.bad = append(h.bad, "hand verify: signature mismatch")
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
			h.bad = append(h.bad, "content type "+ct)
		}
		if h.firstAt.IsZero() {
			h.firstAt = time.Now()
		}
		if h.calls <= h.failFirst || time.Since(h.firstAt) < h.failFor {
			h.refused = append(h.refused, r.Header.Get("webhook-id"))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if h.status != 0 && h.status != http.StatusOK {
			w.WriteHeader(h.status)
			return
		}
		var ev map[string]json.RawMessage
		if err := json.Unmarshal(body, &ev); err != nil {
			h.bad = append(h.bad, "not JSON: "+err.Error())
		}
		u := &cwv1.AlertUpdate{}
		if err := protojson.Unmarshal(ev["data"], u); err != nil {
			h.bad = append(h.bad, "data is not an AlertUpdate: "+err.Error())
		}
		h.got = append(h.got, delivered{r.Header.Get("webhook-id"), ev, u})
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) snapshot() ([]delivered, int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivered(nil), h.got...), h.calls, append([]string(nil), h.bad...)
}

func str(m map[string]json.RawMessage, k string) string {
	var s string
	_ = json.Unmarshal(m[k], &s)
	return s
}

// caughtUpReceiver waits until receiver name has handled the whole outbox.
func (e *env) caughtUpReceiver(name string) {
	e.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Node.Addr})
	defer rdb.Close()
	ctx := context.Background()
	waitFor(e.t, 30*time.Second, "receiver "+name+" caught up with the outbox", func() bool {
		last, err := rdb.XRevRangeN(ctx, "cw:{alerts}:s:all", "+", "-", 1).Result()
		pos, _ := rdb.Get(ctx, "cw:{alerts}:rcv:"+name+":pos").Result()
		return err == nil && len(last) == 1 && pos == last[0].ID
	})
}

func (e *env) deadLetters(name string) []redis.XMessage {
	e.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Node.Addr})
	defer rdb.Close()
	xs, err := rdb.XRange(context.Background(), "cw:{alerts}:rcv:"+name+":dead", "-", "+").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return xs
}

// Two instances, a CRM webhook that answers 503 to its first requests,
// one receiver that is down for good and one that answers 400: the CRM
// gets every change of every alert exactly once, in version order per
// alert, signed; the 400s are dead-lettered at once; the dead receiver
// delays nobody.
func TestWebhookReceiverDeliversEachChangeOnceInOrder(t *testing.T) {
	crm := newHookServer(t, 4, 200)
	refusing := newHookServer(t, 0, http.StatusBadRequest)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on

	dir := t.TempDir()
	secret := writeFile(t, dir, "crm-secret", testSecret+"\n")
	file := writeFile(t, dir, "receivers.yaml", fmt.Sprintf(`receivers:
  - name: crm
    match: {min_severity: LOW}
    retry: {initial: 20ms, max: 100ms}
    webhook: {url: %q, secret_file: %q}
  - name: down
    retry: {initial: 20ms, max: 100ms}
    timeout: 1s
    webhook: {url: %q, secret_file: %q}
  - name: refusing
    webhook: {url: %q, secret_file: %q}
`, crm.srv.URL+"/hooks/churnwatch", secret, downURL, secret, refusing.srv.URL, secret))
	tune := func(c *app.Config) {
		fastLease(c)
		c.Receivers = file
	}
	e := start(t, tune)
	peer := e.peer(tune)
	_ = peer

	customers := []string{"C1", "C2", "C3"}
	for _, c := range customers {
		e.profile(c, "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	}
	e.profilesCaughtUp()
	for i, c := range customers {
		e.signal(fmt.Sprintf("s-%s-1", c), c, "balance_drop", 45)
		e.signal(fmt.Sprintf("s-%s-2", c), c, "salary_stopped", int32(65+i))
	}
	e.signalsCaughtUp()
	rm := e.client("rm-1", auth.RoleManager, "")
	a1 := e.alertOf("C1", func(a *cwv1.Alert) bool { return a.Version == 2 })
	if _, err := rm.AcknowledgeAlert(context.Background(), &cwv1.AcknowledgeAlertRequest{AlertId: a1.AlertId, Note: "calling"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.ResolveAlert(context.Background(), &cwv1.ResolveAlertRequest{AlertId: a1.AlertId, Outcome: cwv1.Outcome_OUTCOME_RETAINED}); err != nil {
		t.Fatal(err)
	}
	want := e.versions(customers)
	e.caughtUpReceiver("crm")
	e.caughtUpReceiver("refusing")

	got, calls, bad := crm.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad requests: %v", bad)
	}
	if calls < 5 {
		t.Errorf("only %d calls: the 503s were not retried", calls)
	}
	last := map[string]int64{}
	seen := map[string]bool{}
	for _, d := range got {
		a := d.update.GetAlert()
		id := fmt.Sprintf("%s.v%d", a.GetAlertId(), a.GetVersion())
		if seen[id] {
			t.Errorf("%s delivered twice", id)
		}
		seen[id] = true
		if a.GetVersion() != last[a.GetAlertId()]+1 {
			t.Errorf("%s after v%d: out of order or gap", id, last[a.GetAlertId()])
		}
		last[a.GetAlertId()] = a.GetVersion()
		ev := d.event
		if _, ok := ev["data_base64"]; ok {
			t.Errorf("%s: data sent base64-encoded", id)
		}
		if str(ev, "specversion") != "1.0" || str(ev, "id") != id || d.webhookID != id || str(ev, "subject") != a.GetAlertId() ||
			str(ev, "source") != "churnwatch" || str(ev, "type") != "com.churnwatch.alert."+strings.ToLower(strings.TrimPrefix(d.update.GetChange().String(), "ALERT_CHANGE_")) ||
			str(ev, "datacontenttype") != "application/json" {
			t.Errorf("%s: event attributes %s %s %s %s %s", id, ev["specversion"], ev["id"], ev["type"], ev["subject"], ev["source"])
		}
	}
	for id, v := range want {
		if last[id] != v {
			t.Errorf("%s: delivered up to v%d, want v%d", id, last[id], v)
		}
	}
	types := map[string]bool{}
	for _, d := range got {
		types[str(d.event, "type")] = true
	}
	for _, ty := range []string{"com.churnwatch.alert.created", "com.churnwatch.alert.acknowledged", "com.churnwatch.alert.resolved"} {
		if !types[ty] {
			t.Errorf("no %s event; got %v", ty, types)
		}
	}

	total := 0
	for _, v := range want {
		total += int(v)
	}
	if dl := e.deadLetters("refusing"); len(dl) != total {
		t.Errorf("refusing: %d dead letters, want %d (one per change, no retry)", len(dl), total)
	} else if dl[0].Values["reason"] != "rejected" {
		t.Errorf("dead letter %v", dl[0].Values)
	}
	if _, calls, _ := refusing.snapshot(); calls != total {
		t.Errorf("refusing got %d calls for %d changes: a 400 must not be retried", calls, total)
	}
	if n := len(e.deadLetters("down")); n != 0 {
		t.Errorf("down: %d dead letters within its retry period", n)
	}
}

// selfSigned is a certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}

// mailbox is a real SMTP server (go-smtp) on loopback that offers
// STARTTLS and refuses mail sent before it.
type mailbox struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	from string
	to   []string
	data []byte
	tls  bool
}

type session struct {
	box  *mailbox
	conn *smtp.Conn
	cur  received
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	_, isTLS := s.conn.TLSConnectionState()
	if !isTLS {
		return &smtp.SMTPError{Code: 530, Message: "STARTTLS first"}
	}
	s.cur = received{from: from, tls: true}
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.box.mu.Lock()
	s.box.msgs = append(s.box.msgs, s.cur)
	s.box.mu.Unlock()
	return nil
}
func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

func startSMTP(t *testing.T) (*mailbox, string, []byte) {
	t.Helper()
	cert, certPEM := selfSigned(t)
	box := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{box: box, conn: c}, nil }))
	srv.Domain = "smtp.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return box, l.Addr().String(), certPEM
}

// An email receiver sends the routed manager a well-formed MIME message
// over STARTTLS that names the customer and says why.
func TestEmailReceiverSendsTheManagerAMessage(t *testing.T) {
	box, addr, certPEM := startSMTP(t)
	dir := t.TempDir()
	ca := writeFile(t, dir, "smtp-ca.pem", string(certPEM))
	file := writeFile(t, dir, "receivers.yaml", fmt.Sprintf(`receivers:
  - name: rm-mail
    match: {min_severity: MEDIUM, changes: [created]}
    email: {smtp: %q, from: churnwatch@bank.example, starttls: true, tls_ca_file: %q}
`, addr, ca))
	e := start(t, func(c *app.Config) {
		fastLease(c)
		c.Receivers = file
		c.ConsoleURL = "https://console.bank.example/"
	})
	e.produce(e.custs, "C1001", &cwv1.CustomerProfile{CustomerId: "C1001", ManagerId: "rm-001", BranchId: "br-01",
		Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, DisplayName: "Wang L.", ManagerEmail: "rm-001@bank.example"})
	e.profilesCaughtUp()
	e.signal("s-1", "C1001", "balance_drop", 30) // LOW: not for this receiver
	e.signalsCaughtUp()
	e.alertOf("C1001", nil)
	e.caughtUpReceiver("rm-mail")
	e.signal("s-2", "C1001", "large_outflow", 85) // severity raised, not created: not matched either
	e.signalsCaughtUp()
	e.caughtUpReceiver("rm-mail")
	box.mu.Lock()
	n := len(box.msgs)
	box.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d messages for changes the receiver does not match", n)
	}

	e.produce(e.custs, "C2002", &cwv1.CustomerProfile{CustomerId: "C2002", ManagerId: "rm-001", BranchId: "br-01",
		Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, DisplayName: "Chen <b>X.</b>", ManagerEmail: "rm-001@bank.example"})
	e.profilesCaughtUp()
	e.signal("s-3", "C2002", "large_outflow", 85)
	e.signalsCaughtUp()
	a := e.alertOf("C2002", nil)
	e.caughtUpReceiver("rm-mail")
	box.mu.Lock()
	msgs := append([]received(nil), box.msgs...)
	box.mu.Unlock()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !m.tls || m.from != "churnwatch@bank.example" || len(m.to) != 1 || m.to[0] != "rm-001@bank.example" {
		t.Fatalf("envelope %+v", m)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(m.data)))
	if err != nil {
		t.Fatal(err)
	}
	if subj := msg.Header.Get("Subject"); !strings.Contains(subj, "C2002") || !strings.Contains(subj, "CRITICAL") {
		t.Errorf("subject %q", subj)
	}
	if id := msg.Header.Get("Message-Id"); !strings.Contains(id, a.AlertId+".v1@churnwatch") {
		t.Errorf("message id %q", id)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(p) // quoted-printable is decoded by NextPart
		parts[pt] = string(b)
	}
	text, html := parts["text/plain"], parts["text/html"]
	for _, want := range []string{"Chen <b>X.</b> (C2002)", "HIGH_NET_WORTH", "large_outflow: observed 2 count vs threshold 1", "Acknowledge by:",
		"https://console.bank.example/alerts/" + a.AlertId} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(html, "Chen &lt;b&gt;X.&lt;/b&gt; (C2002)") || !strings.Contains(html, `href="https://console.bank.example/alerts/`+a.AlertId+`"`) {
		t.Errorf("html part (escaped name, link):\n%s", html)
	}
}

// A receivers file with mistakes stops the service at start, naming each
// line.
func TestBadReceiversFileFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "receivers.yaml", `receivers:
  - name: crm
    match: {min_severity: SEVERE}
    webhook: {url: http://crm.bank.example/hook, secret_file: /nonexistent}
`)
	keys := testkit.NewKeys(t)
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{"CHURNWATCH_AUTH_PUBLIC_KEYS": keys.PublicPEM}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Common = testkit.Common("alerts", keys, []string{"127.0.0.1:1"}, "")
	cfg.Common.RedisAddr = "127.0.0.1:1"
	cfg.Receivers = file
	_, err = app.New(context.Background(), cfg)
	if err == nil {
		t.Fatal("started with a bad receivers file")
	}
	for _, want := range []string{file + `:3: receiver "crm": match.min_severity: unknown severity "SEVERE"`, file + `:4: receiver "crm": webhook.url:`, `webhook.secret_file:`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
