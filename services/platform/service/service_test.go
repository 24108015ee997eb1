package service_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func TestLifecycle(t *testing.T) {
	r := testkit.Redis(t)
	keys := testkit.NewKeys(t)
	cfg := testkit.Common("test", keys, []string{"127.0.0.1:1"}, r.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := service.New(ctx, cfg, service.Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	b.AddWorker("loop", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	for {
		if err := client.CheckHealth(hctx, b.GRPCAddr(), client.TLS{}); err == nil {
			break
		} else if hctx.Err() != nil {
			t.Fatalf("health never SERVING: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + b.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	r.Stop()
	resp, err := http.Get("http://" + b.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "dependency") {
		t.Fatalf("readyz with Redis down: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hung")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("worker not stopped")
	}
}

// start runs a Base on cfg until the test ends and waits until its gRPC
// health answers (over TLS with the client certificate when pki is set).
func start(t *testing.T, cfg config.Common, pki *testkit.PKI, setup func(*service.Base)) *service.Base {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := service.New(ctx, cfg, service.Options{LogOutput: io.Discard, NoRedis: true})
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(b)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("shutdown hung")
		}
	})
	ct := client.TLS{}
	if pki != nil {
		ct = client.TLS{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	for {
		err := client.CheckHealth(hctx, b.GRPCAddr(), ct)
		if err == nil {
			return b
		}
		if hctx.Err() != nil {
			t.Fatalf("health never SERVING: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpsClient(tc *tls.Config) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// With TLS and a client CA configured, both the gRPC and the HTTP port
// demand a client certificate; plain HTTP gets nothing from the TLS port;
// the plaintext probe port serves the probes and nothing else.
func TestMutualTLSOnBothPorts(t *testing.T) {
	pki := testkit.NewPKI(t)
	cfg := testkit.Common("test", testkit.NewKeys(t), []string{"127.0.0.1:1"}, "127.0.0.1:1")
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
	cfg.HTTPPlainAddr = "127.0.0.1:0"
	b := start(t, cfg, pki, func(b *service.Base) {
		b.Mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "accepted\n") })
	})

	// gRPC: no client certificate → the handshake fails.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.CheckHealth(ctx, b.GRPCAddr(), client.TLS{CAFile: pki.CAFile}); err == nil {
		t.Fatal("gRPC without a client certificate: served")
	}
	// HTTP: no client certificate → the handshake fails, for the intake too.
	for _, path := range []string{"/healthz", "/v1/events"} {
		req, _ := http.NewRequest(http.MethodPost, "https://"+b.HTTPAddr()+path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer secret-token")
		if resp, err := httpsClient(pki.ClientTLS(t, false)).Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("HTTPS %s without a client certificate: %d", path, resp.StatusCode)
		}
	}
	// Plain HTTP to the TLS port: refused (Go answers 400 "HTTP request to an HTTPS server").
	if resp, err := http.Get("http://" + b.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP to the TLS port: 200")
		}
	}
	// Raw TCP: a plaintext POST gets no intake answer.
	if c, err := net.DialTimeout("tcp", b.HTTPAddr(), time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.WriteString(c, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
		got, _ := io.ReadAll(c)
		c.Close()
		if strings.Contains(string(got), "accepted") {
			t.Fatalf("plaintext POST to the TLS port was served: %q", got)
		}
	}
	// With the client certificate: both ports work.
	if err := client.CheckHealth(ctx, b.GRPCAddr(), client.TLS{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	hc := httpsClient(pki.ClientTLS(t, true))
	for _, c := range []struct{ method, path, want string }{{"GET", "/healthz", "ok"}, {"POST", "/v1/events", "accepted"}, {"GET", "/metrics", ""}} {
		req, _ := http.NewRequest(c.method, "https://"+b.HTTPAddr()+c.path, strings.NewReader(`{}`))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("HTTPS %s with a client certificate: %v", c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), c.want) {
			t.Fatalf("HTTPS %s: %d %q", c.path, resp.StatusCode, body)
		}
	}
	// The plaintext probe port: probes only.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + b.HTTPPlainAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("plain %s: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.Post("http://"+b.HTTPPlainAddr()+"/v1/events", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("the plaintext probe port serves the intake")
	}
}

// A request message over CHURNWATCH_GRPC_MAX_MESSAGE (4 MiB by default) is
// refused with RESOURCE_EXHAUSTED before any handler sees it.
func TestGRPCMessageLimit(t *testing.T) {
	cfg := testkit.Common("test", testkit.NewKeys(t), []string{"127.0.0.1:1"}, "127.0.0.1:1")
	if cfg.Limits.GRPCMaxMessage != 4<<20 {
		t.Fatalf("default max message %d, want 4 MiB", cfg.Limits.GRPCMaxMessage)
	}
	b := start(t, cfg, nil, nil)
	conn, err := client.Dial(b.GRPCAddr(), "", client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request: %v, want ResourceExhausted", err)
	}
	// A normal request on the same connection still works.
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("small request after a refused one: %v", err)
	}
}

// A body sent a byte at a time is cut off at CHURNWATCH_HTTP_READ_TIMEOUT,
// and the handler reading it gets an error instead of waiting forever.
func TestSlowBodyCutOff(t *testing.T) {
	cfg := testkit.Common("test", testkit.NewKeys(t), []string{"127.0.0.1:1"}, "127.0.0.1:1")
	cfg.Limits.HTTPReadTimeout = time.Second
	readErr := make(chan error, 1)
	b := start(t, cfg, nil, func(b *service.Base) {
		b.Mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			readErr <- err
		})
	})
	c, err := net.Dial("tcp", b.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	deadline := begin.Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("x")); err != nil {
			break
		}
		select {
		case err := <-readErr:
			if err == nil {
				t.Fatal("slow body read to the end")
			}
			if took := time.Since(begin); took > 3*time.Second {
				t.Fatalf("slow body cut off after %v, want about 1s", took)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("a body trickling one byte per 100 ms was still being read after 5s")
}

// With CHURNWATCH_HTTP_MAX_BODIES=1, a second large body while one is in
// flight is told to retry; small requests pass.
func TestConcurrentLargeBodiesCapped(t *testing.T) {
	cfg := testkit.Common("test", testkit.NewKeys(t), []string{"127.0.0.1:1"}, "127.0.0.1:1")
	cfg.Limits.HTTPMaxBodies = 1
	inside, release := make(chan struct{}, 2), make(chan struct{})
	b := start(t, cfg, nil, func(b *service.Base) {
		b.Mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if r.ContentLength > 1000 {
				inside <- struct{}{}
				<-release
			}
		})
	})
	url := "http://" + b.HTTPAddr() + "/v1/events"
	big := strings.Repeat("x", 200<<10)
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(url, "application/json", strings.NewReader(big))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-inside
	resp, err := http.Post(url, "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second large body: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if resp, err = http.Post(url, "application/json", strings.NewReader(`{}`)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("small body while the cap is full: %d", resp.StatusCode)
	}
	close(release)
	if code := <-first; code != 200 {
		t.Fatalf("first large body: %d", code)
	}
}

// A service on a TLS + ACL Redis becomes ready; neither the Redis nor the
// Kafka SASL password appears in its logs (start, serving, shutdown).
func TestSecureRedisReadyAndSecretsNotLogged(t *testing.T) {
	r := testkit.StartSecureRedis(t)
	kpw := filepath.Join(t.TempDir(), "kafka.password")
	const kafkaPassword = "kafka-sasl-password-0815"
	if err := os.WriteFile(kpw, []byte(kafkaPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := r.Env()
	env["CHURNWATCH_KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-512"
	env["CHURNWATCH_KAFKA_SASL_USERNAME"] = "churnwatch"
	env["CHURNWATCH_KAFKA_SASL_PASSWORD_FILE"] = kpw
	env["CHURNWATCH_LOG_LEVEL"] = "debug"
	e := config.FromMap(env)
	cfg := config.LoadCommon(e, "test", "127.0.0.1:0", "127.0.0.1:0")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	cfg.AuthPublicKeys = []string{testkit.NewKeys(t).PublicPEM}
	cfg.ShutdownGrace = 5 * time.Second
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	b, err := service.New(ctx, cfg, service.Options{LogOutput: &logs})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + b.HTTPAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready on the TLS + ACL Redis; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, `"redis_password":"***"`) || !strings.Contains(out, `"kafka_sasl_password":"***"`) {
		t.Fatalf("start log does not show the passwords masked:\n%s", out)
	}
	for _, secret := range []string{r.Password, kafkaPassword} {
		if strings.Contains(out, secret) {
			t.Fatalf("a password is in the logs:\n%s", out)
		}
	}
}

// syncBuffer collects the services' logs from several goroutines.
type syncBuffer = testkit.SyncBuffer
