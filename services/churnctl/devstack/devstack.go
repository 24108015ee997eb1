// Package devstack composes churnwatch in one process: the three services
// and the console (in dev mode: /dev/login) plus, unless real ones are configured, an embedded Kafka-protocol broker
// (kfake) and a Redis (a child redis-server). `churnwatch dev`, `churnwatch
// demo`, the benchmarks and the end-to-end tests all start it.
package devstack

import (
	"cmp"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	alertsapp "github.com/churnwatch/churnwatch/services/alerts/app"
	consoleapp "github.com/churnwatch/churnwatch/services/console/app"
	ingesterapp "github.com/churnwatch/churnwatch/services/ingester/app"
	rulesapp "github.com/churnwatch/churnwatch/services/rules/app"

	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// Options configure a stack.
type Options struct {
	// Dir keeps the dev key, dev.env and Redis files; a temp dir when empty.
	Dir string
	// Env overrides and extends the process environment (CHURNWATCH_*).
	Env map[string]string
	// AnyPort binds every service and the console to 127.0.0.1:0 instead
	// of the SPEC defaults (7001–7003 / 8001–8003, console
	// CHURNWATCH_CONSOLE_ADDR or 127.0.0.1:8080).
	AnyPort bool
	// Partitions of each topic on the embedded broker (at least 3).
	Partitions int
	// Logs receives the services' JSON logs (discarded when nil).
	Logs io.Writer
	// AlertsOptions are passed to the alerts app (e.g. a test clock).
	AlertsOptions []alertsapp.Option
	// HoldConsumers builds rules and alerts but runs them only when
	// Release is called, so that a backlog can be measured (make bench).
	HoldConsumers bool
}

// Stack is a running churnwatch.
type Stack struct {
	Dir     string
	Brokers []string
	// Kafka is the broker list with the TLS and SASL of the environment
	// (CHURNWATCH_KAFKA_TLS_*, _SASL_*), for clients of the stack's Kafka.
	Kafka     kafkax.Cluster
	RedisAddr string
	Ingester  *ingesterapp.App
	Rules     *rulesapp.App
	Alerts    *alertsapp.App
	Console   *consoleapp.App
	KeyPath   string
	PubPath   string

	signer    crypto.Signer
	clientEnv map[string]string
	mint      auth.MintOptions // the stack's CHURNWATCH_AUTH_ISSUER / _AUDIENCE
	kafka     *embedded.Kafka
	redis     *embedded.Redis
	opts      Options
	rctx      context.Context // the services' context; Close cancels it
	cancel    context.CancelFunc
	held      chan struct{} // closed by Release
	release   func()
	services  map[string]*service
	wg        sync.WaitGroup
	mu        sync.Mutex
	errs      []error
}

// Start brings the stack up and returns once every service is serving.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Partitions < 3 {
		o.Partitions = 3
	}
	if o.Logs == nil {
		o.Logs = io.Discard
	}
	s := &Stack{Dir: o.Dir, opts: o, services: map[string]*service{}}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "churnwatch-dev-")
		if err != nil {
			return nil, err
		}
		s.Dir = d
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "CHURNWATCH_") || strings.HasPrefix(k, "OTEL_")) {
			env[k] = v
		}
	}
	for k, v := range o.Env {
		env[k] = v
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := s.devKey(); err != nil {
		return nil, err
	}
	env["CHURNWATCH_AUTH_PUBLIC_KEYS"] = s.PubPath
	s.mint = auth.MintOptions{Issuer: env["CHURNWATCH_AUTH_ISSUER"], Audience: env["CHURNWATCH_AUTH_AUDIENCE"]}

	s.clientEnv = map[string]string{}
	for _, k := range clientSettings {
		if v := env[k]; v != "" {
			s.clientEnv[k] = v
		}
	}
	cenv := config.FromMap(env)
	common := config.LoadCommon(cenv, "", "", "")
	if err := cenv.Err(); err != nil {
		return nil, err
	}
	topics := common.Topics
	if b := env["CHURNWATCH_KAFKA_BROKERS"]; b != "" {
		s.Brokers = strings.Split(b, ",")
		var err error
		if s.Kafka, err = kafkax.ClusterFrom(common); err != nil {
			return nil, err
		}
		// Replication min(3, brokers) and min.insync.replicas to match, the
		// same policy as churnctl topics create; existing topics are kept.
		if _, err := kafkax.EnsureTopics(ctx, s.Kafka, kafkax.TopicPolicy{}, kafkax.Specs(topics, o.Partitions)...); err != nil {
			return nil, fmt.Errorf("topics on %s: %w", b, err)
		}
	} else {
		k, err := embedded.StartKafka(0, o.Partitions, topics.All()...)
		if err != nil {
			return nil, err
		}
		s.kafka, s.Brokers, s.Kafka = k, k.Brokers, kafkax.Plain(k.Brokers)
		env["CHURNWATCH_KAFKA_BROKERS"] = strings.Join(k.Brokers, ",")
	}
	if a := env["CHURNWATCH_REDIS_ADDR"]; a != "" || env["CHURNWATCH_REDIS_ADDRS"] != "" {
		s.RedisAddr = a // a Cluster or the sentinels (ADDRS) reach the services through env
	} else {
		r, err := embedded.StartRedis(filepath.Join(s.Dir, "redis"), 0)
		if err != nil {
			if mkErr := os.MkdirAll(filepath.Join(s.Dir, "redis"), 0o755); mkErr == nil {
				r, err = embedded.StartRedis(filepath.Join(s.Dir, "redis"), 0)
			}
			if err != nil {
				return nil, err
			}
		}
		s.redis, s.RedisAddr = r, r.Addr
		env["CHURNWATCH_REDIS_ADDR"] = r.Addr
	}

	addrs := func(grpcPort, httpPort string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		if o.AnyPort {
			m["CHURNWATCH_GRPC_ADDR"], m["CHURNWATCH_HTTP_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
		} else {
			m["CHURNWATCH_GRPC_ADDR"], m["CHURNWATCH_HTTP_ADDR"] = "127.0.0.1:"+grpcPort, "127.0.0.1:"+httpPort
		}
		return m
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.rctx, s.cancel = rctx, cancel
	held := make(chan struct{})
	var once sync.Once
	s.held, s.release = held, func() { once.Do(func() { close(held) }) }
	if !o.HoldConsumers {
		s.release()
	}

	if err := s.startService(ctx, "ingester", addrs("7001", "8001")); err != nil {
		return nil, err
	}
	if err := s.startService(ctx, "rules", addrs("7002", "8002")); err != nil {
		return nil, err
	}

	// The console's address is bound before the alerts service starts, so
	// that alert emails link to <console>/alerts/{id}.
	consoleAddr := cmp.Or(env["CHURNWATCH_CONSOLE_ADDR"], "127.0.0.1:8080")
	if o.AnyPort {
		consoleAddr = "127.0.0.1:0"
	}
	consoleLis, err := net.Listen("tcp", consoleAddr)
	if err != nil {
		return nil, fmt.Errorf("console: listen %s (CHURNWATCH_CONSOLE_ADDR; --any-port picks a free port): %w", consoleAddr, err)
	}
	scheme := "http://"
	if env["CHURNWATCH_TLS_CERT"] != "" {
		scheme = "https://"
	}
	consoleURL := scheme + consoleLis.Addr().String()
	alertsEnv := addrs("7003", "8003")
	if alertsEnv["CHURNWATCH_CONSOLE_URL"] == "" {
		alertsEnv["CHURNWATCH_CONSOLE_URL"] = consoleURL
	}
	if err := s.startService(ctx, "alerts", alertsEnv); err != nil {
		return nil, err
	}

	cenvm := map[string]string{}
	for k, v := range env {
		cenvm[k] = v
	}
	cenvm["CHURNWATCH_CONSOLE_ALERTS_URL"] = scheme + s.Alerts.HTTPAddr()
	cenvm["CHURNWATCH_CONSOLE_RULES_URL"] = scheme + s.Rules.HTTPAddr()
	cenvm["CHURNWATCH_DEV_KEY"] = s.KeyPath
	if cenvm["CHURNWATCH_CONSOLE_DEV"] == "" {
		cenvm["CHURNWATCH_CONSOLE_DEV"] = "true"
	}
	if cenvm["CHURNWATCH_OIDC_ISSUER"] != "" && cenvm["CHURNWATCH_OIDC_REDIRECT_URL"] == "" {
		cenvm["CHURNWATCH_OIDC_REDIRECT_URL"] = consoleURL + "/auth/callback"
	}
	ccfg, err := consoleapp.LoadConfig(config.FromMap(cenvm))
	if err != nil {
		consoleLis.Close()
		return nil, fmt.Errorf("console config: %w", err)
	}
	mint := func(p auth.Principal, ttl time.Duration) (string, error) {
		return s.Token(p.Subject, p.Role, p.Branch, ttl)
	}
	if s.Console, err = consoleapp.New(ctx, ccfg, consoleapp.WithListener(consoleLis), consoleapp.WithDevMinter(mint), consoleapp.WithLogOutput(o.Logs)); err != nil {
		consoleLis.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	_ = s.run("console", func() error { return s.Console.Run(rctx) })

	serving := []string{s.Ingester.GRPCAddr()}
	if !o.HoldConsumers {
		serving = append(serving, s.Rules.GRPCAddr(), s.Alerts.GRPCAddr())
	}
	for _, a := range serving {
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		err := embedded.WaitTCP(wctx, a)
		wcancel()
		if err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// ConsoleURL is the console's base URL (dev mode: ConsoleURL + "/dev/login?sub=…").
func (s *Stack) ConsoleURL() string { return s.Console.URL() }

// Release starts held consumers (Options.HoldConsumers).
func (s *Stack) Release() { s.release() }

func runWhenReleased(ctx context.Context, held <-chan struct{}, run func(context.Context) error) error {
	select {
	case <-held:
		return run(ctx)
	case <-ctx.Done():
		return nil
	}
}

// service is one of the stack's apps as it runs: the environment it was
// built from and how to stop it (Restart).
type service struct {
	env    map[string]string
	cancel context.CancelFunc
	done   <-chan struct{}
}

// startService builds the app name (ingester, rules or alerts) from env,
// sets its field of the Stack and runs it under the stack's context; rules
// and alerts wait for Release. Start and Restart both come through here.
func (s *Stack) startService(ctx context.Context, name string, env map[string]string) error {
	var run func(context.Context) error
	cenv := config.FromMap(env)
	var err error
	switch name {
	case "ingester":
		var cfg ingesterapp.Config
		if cfg, err = ingesterapp.LoadConfig(cenv); err == nil {
			var a *ingesterapp.App
			if a, err = ingesterapp.New(ctx, cfg, ingesterapp.WithLogOutput(s.opts.Logs)); err == nil {
				s.Ingester, run = a, a.Run
			}
		}
	case "rules":
		var cfg rulesapp.Config
		if cfg, err = rulesapp.LoadConfig(cenv); err == nil {
			var a *rulesapp.App
			if a, err = rulesapp.New(ctx, cfg, rulesapp.WithLogOutput(s.opts.Logs)); err == nil {
				s.Rules, run = a, func(ctx context.Context) error { return runWhenReleased(ctx, s.held, a.Run) }
			}
		}
	case "alerts":
		var cfg alertsapp.Config
		if cfg, err = alertsapp.LoadConfig(cenv); err == nil {
			opts := append([]alertsapp.Option{alertsapp.WithLogOutput(s.opts.Logs)}, s.opts.AlertsOptions...)
			var a *alertsapp.App
			if a, err = alertsapp.New(ctx, cfg, opts...); err == nil {
				s.Alerts, run = a, func(ctx context.Context) error { return runWhenReleased(ctx, s.held, a.Run) }
			}
		}
	default:
		return fmt.Errorf("devstack has no service %q: name ingester, rules or alerts", name)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sctx, cancel := context.WithCancel(s.rctx)
	s.services[name] = &service{env: env, cancel: cancel, done: s.run(name, func() error { return run(sctx) })}
	return nil
}

// Restart restarts one service in place, as a deploy does: its context is
// cancelled and its Run returns (within 30 s; the service drains for up to
// CHURNWATCH_SHUTDOWN_GRACE), then a new app with the same configuration
// listens on the same gRPC and HTTP addresses, so clients redial it. The
// broker, Redis, the console and the other services keep running. name is
// ingester, rules or alerts. The Stack's Ingester, Rules and Alerts fields
// change: do not read them while Restart runs. The old port is bound again
// at once (Go listeners set SO_REUSEADDR); should another process take it
// in between, Restart fails naming the address.
func (s *Stack) Restart(ctx context.Context, name string) error {
	svc := s.services[name]
	if svc == nil {
		return fmt.Errorf("devstack has no service %q to restart: name ingester, rules or alerts", name)
	}
	env := map[string]string{}
	for k, v := range svc.env {
		env[k] = v
	}
	// With AnyPort the first app bound 127.0.0.1:0: keep the ports it got.
	switch name {
	case "ingester":
		env["CHURNWATCH_GRPC_ADDR"], env["CHURNWATCH_HTTP_ADDR"] = s.Ingester.GRPCAddr(), s.Ingester.HTTPAddr()
	case "rules":
		env["CHURNWATCH_GRPC_ADDR"], env["CHURNWATCH_HTTP_ADDR"] = s.Rules.GRPCAddr(), s.Rules.HTTPAddr()
	case "alerts":
		env["CHURNWATCH_GRPC_ADDR"], env["CHURNWATCH_HTTP_ADDR"] = s.Alerts.GRPCAddr(), s.Alerts.HTTPAddr()
	}
	svc.cancel()
	select {
	case <-svc.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("restart %s: it did not stop within 30s; close the stack (its logs say what it waits for)", name)
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", name, ctx.Err())
	}
	if err := s.startService(ctx, name, env); err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	return nil
}

// run runs f as the service name; the channel is closed when f returned.
func (s *Stack) run(name string, f func() error) <-chan struct{} {
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		if err := f(); err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			s.mu.Unlock()
		}
	}()
	return done
}

// devKey loads or creates the dev token signing key in Dir.
func (s *Stack) devKey() error {
	s.KeyPath = filepath.Join(s.Dir, "dev-key.pem")
	s.PubPath = filepath.Join(s.Dir, "dev-key.pub.pem")
	if signer, err := auth.LoadSigner(s.KeyPath); err == nil {
		s.signer = signer
	} else {
		k, err := auth.GenerateKey()
		if err != nil {
			return err
		}
		pemb, err := auth.PrivateKeyPEM(k)
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.KeyPath, pemb, 0o600); err != nil {
			return err
		}
		s.signer = k
	}
	pub, err := auth.PublicKeyPEM(s.signer)
	if err != nil {
		return err
	}
	return os.WriteFile(s.PubPath, pub, 0o644)
}

// Token mints a token with the dev key.
func (s *Stack) Token(subject string, role auth.Role, branch string, ttl time.Duration) (string, error) {
	return auth.MintWith(s.signer, auth.Principal{Subject: subject, Role: role, Branch: branch}, ttl, s.mint)
}

// clientSettings are the transport-security settings a client of the stack
// needs as well as the services (the CA of the services' certificates, a
// client certificate for mTLS, how to reach Kafka and Redis): passed through
// to Env and dev.env when set. Files only: no secret is copied.
var clientSettings = []string{
	"CHURNWATCH_TLS_CA", "CHURNWATCH_TLS_CLIENT_CERT", "CHURNWATCH_TLS_CLIENT_KEY",
	"CHURNWATCH_KAFKA_TLS_CA", "CHURNWATCH_KAFKA_TLS_CERT", "CHURNWATCH_KAFKA_TLS_KEY",
	"CHURNWATCH_KAFKA_SASL_MECHANISM", "CHURNWATCH_KAFKA_SASL_USERNAME", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE",
	"CHURNWATCH_REDIS_USERNAME", "CHURNWATCH_REDIS_PASSWORD_FILE", "CHURNWATCH_REDIS_TLS_CA",
}

// ClientTLS is how a gRPC client reaches the stack's services: TLS when
// CHURNWATCH_TLS_CA was given, with the client certificate for mTLS.
func (s *Stack) ClientTLS() client.TLS {
	return client.TLS{CAFile: s.clientEnv["CHURNWATCH_TLS_CA"], CertFile: s.clientEnv["CHURNWATCH_TLS_CLIENT_CERT"], KeyFile: s.clientEnv["CHURNWATCH_TLS_CLIENT_KEY"]}
}

// Env lists every address a client needs, as CHURNWATCH_* variables, with
// the transport-security settings clients need (clientSettings).
func (s *Stack) Env() map[string]string {
	env := map[string]string{
		"CHURNWATCH_INGESTER_ADDR":    s.Ingester.GRPCAddr(),
		"CHURNWATCH_RULES_ADDR":       s.Rules.GRPCAddr(),
		"CHURNWATCH_ALERTS_ADDR":      s.Alerts.GRPCAddr(),
		"CHURNWATCH_INGESTER_HTTP":    s.Ingester.HTTPAddr(),
		"CHURNWATCH_RULES_HTTP":       s.Rules.HTTPAddr(),
		"CHURNWATCH_ALERTS_HTTP":      s.Alerts.HTTPAddr(),
		"CHURNWATCH_KAFKA_BROKERS":    strings.Join(s.Brokers, ","),
		"CHURNWATCH_REDIS_ADDR":       s.RedisAddr,
		"CHURNWATCH_DEV_KEY":          s.KeyPath,
		"CHURNWATCH_AUTH_PUBLIC_KEYS": s.PubPath,
		"CHURNWATCH_CONSOLE_URL":      s.ConsoleURL(),
	}
	for k, v := range s.clientEnv {
		env[k] = v
	}
	return env
}

// WriteEnvFile writes Dir/dev.env: export lines for every address, the
// broker list, Redis, the dev key, and an admin token valid for 24 h.
func (s *Stack) WriteEnvFile() (string, error) {
	tok, err := s.Token("dev-admin", auth.RoleAdmin, "", 24*time.Hour)
	if err != nil {
		return "", err
	}
	env := s.Env()
	env["CHURNWATCH_TOKEN"] = tok
	keys := []string{"CHURNWATCH_INGESTER_ADDR", "CHURNWATCH_RULES_ADDR", "CHURNWATCH_ALERTS_ADDR",
		"CHURNWATCH_INGESTER_HTTP", "CHURNWATCH_RULES_HTTP", "CHURNWATCH_ALERTS_HTTP",
		"CHURNWATCH_KAFKA_BROKERS", "CHURNWATCH_REDIS_ADDR", "CHURNWATCH_DEV_KEY", "CHURNWATCH_AUTH_PUBLIC_KEYS", "CHURNWATCH_CONSOLE_URL", "CHURNWATCH_TOKEN"}
	for _, k := range clientSettings {
		if env[k] != "" {
			keys = append(keys, k)
		}
	}
	var b strings.Builder
	b.WriteString("# churnwatch dev stack — source this file: . " + filepath.Join(s.Dir, "dev.env") + "\n")
	b.WriteString("# CHURNWATCH_TOKEN is an admin token for the dev key, valid 24 h; mint others with churnctl token mint.\n")
	b.WriteString("# Console (dev mode): open $CHURNWATCH_CONSOLE_URL/dev/login?sub=rm-001&role=manager (or role=branch_head&branch=br-01, ops, admin).\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%q\n", k, env[k])
	}
	p := filepath.Join(s.Dir, "dev.env")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

// Close stops the services in order (ingester first, so nothing new
// arrives), then the broker and Redis.
func (s *Stack) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.errs = append(s.errs, errors.New("services did not stop within 30s"))
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}
