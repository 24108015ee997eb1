// Package config reads churnwatch configuration from the environment: typed
// values with defaults, validation, and a masked view for the start-up log.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Env reads typed values from a lookup function (os.LookupEnv by default)
// and collects every parse error so that a bad setup is reported at once.
type Env struct {
	Lookup func(string) (string, bool)
	errs   []error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{Lookup: os.LookupEnv} }

// FromMap reads a map, for tests and embedding.
func FromMap(m map[string]string) *Env {
	return &Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// Err returns every parse error seen so far.
func (e *Env) Err() error { return errors.Join(e.errs...) }

func (e *Env) raw(key string) (string, bool) {
	v, ok := e.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return strings.TrimSpace(v), true
}

// String returns the value of key or def.
func (e *Env) String(key, def string) string {
	if v, ok := e.raw(key); ok {
		return v
	}
	return def
}

// List returns a comma-separated list.
func (e *Env) List(key string, def []string) []string {
	v, ok := e.raw(key)
	if !ok {
		return def
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Int returns an integer.
func (e *Env) Int(key string, def int) int {
	v, ok := e.raw(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not an integer", key, v))
		return def
	}
	return n
}

// Float returns a float (never for money).
func (e *Env) Float(key string, def float64) float64 {
	v, ok := e.raw(key)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a number", key, v))
		return def
	}
	return f
}

// Duration returns a Go duration such as "30s" or "720h".
func (e *Env) Duration(key string, def time.Duration) time.Duration {
	v, ok := e.raw(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a duration", key, v))
		return def
	}
	return d
}

// Bool returns a boolean.
func (e *Env) Bool(key string, def bool) bool {
	v, ok := e.raw(key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a boolean", key, v))
		return def
	}
	return b
}

// Topics are the Kafka topic names (SPEC §1).
type Topics struct {
	Events    string
	Customers string
	Signals   string
	Alerts    string
	DLQ       string
}

// All lists every topic.
func (t Topics) All() []string { return []string{t.Events, t.Customers, t.Signals, t.Alerts, t.DLQ} }

// Common is the configuration every service shares.
type Common struct {
	Service      string
	GRPCAddr     string
	HTTPAddr     string
	KafkaBrokers []string
	// Redis: one node (RedisAddr: host:port or a redis:// / rediss:// URL),
	// Sentinel (RedisMasterName, RedisAddrs = the sentinels) or Cluster
	// (RedisCluster, RedisAddrs = seed nodes). redisx builds the client.
	RedisAddr         string
	RedisAddrs        []string
	RedisMasterName   string
	RedisCluster      bool
	RedisUsername     string // ACL user
	RedisPassword     string // secret: from _PASSWORD or the file _PASSWORD_FILE names
	RedisPasswordFile string
	RedisTLSCA        string // PEM file of the CA that signed Redis's certificate: TLS on
	RedisDB           int
	AuthPublicKeys    []string // PEM files (or PEM text) of the token signers
	Auth              Auth     // JWKS, iss/aud, lifetimes, claim names (auth.go)
	TLSCert           string
	TLSKey            string
	TLSClientCA       string // when set, clients must present a certificate (mTLS)
	// HTTPPlainAddr, when set, is a second, plaintext HTTP listener serving
	// only /healthz, /readyz and /metrics (probes that cannot speak TLS).
	HTTPPlainAddr string
	// Kafka: TLS to the brokers (CA, optional client certificate) and SASL.
	KafkaTLSCA            string
	KafkaTLSCert          string
	KafkaTLSKey           string
	KafkaSASLMechanism    string // SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN
	KafkaSASLUsername     string
	KafkaSASLPassword     string // secret: from the file _KAFKA_SASL_PASSWORD_FILE names
	KafkaSASLPasswordFile string
	Limits                Limits
	LogLevel              string
	HomeBank              string
	Topics                Topics
	ShutdownGrace         time.Duration
	OTLPEndpoint          string
}

// Limits bound what one client can hold of a server: connections,
// streams, message and body sizes, and time.
type Limits struct {
	GRPCMaxMessage        int           // largest request message accepted (bytes)
	GRPCMaxStreams        int           // concurrent streams per connection
	GRPCConnectionTimeout time.Duration // TCP accept to TLS + HTTP/2 handshake done
	GRPCMaxConnectionIdle time.Duration // a connection without RPCs is closed after this
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration // the whole request, body included
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	HTTPMaxBodies         int // concurrent request bodies over 64 KiB or of unknown length
}

// Setting documents one environment variable: its default and meaning,
// for --help and docs/deployment.md.
type Setting struct{ Name, Default, Help string }

// TransportSettings are the shared transport-security and resource-limit
// settings (SPEC §6), listed by every service's --help.
var TransportSettings = []Setting{
	{"CHURNWATCH_TLS_CERT, _TLS_KEY", "", "PEM certificate and key: TLS on the gRPC and HTTP ports"},
	{"CHURNWATCH_TLS_CLIENT_CA", "", "PEM CA: clients of both ports must present a certificate it signed (mTLS)"},
	{"CHURNWATCH_HTTP_PLAIN_ADDR", "", "extra plaintext listener serving only /healthz /readyz /metrics (for probes)"},
	{"CHURNWATCH_KAFKA_TLS_CA", "", "PEM CA of the brokers' certificates: TLS to Kafka"},
	{"CHURNWATCH_KAFKA_TLS_CERT, _KAFKA_TLS_KEY", "", "client certificate for the brokers (optional, needs _KAFKA_TLS_CA)"},
	{"CHURNWATCH_KAFKA_SASL_MECHANISM", "", "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (PLAIN only with TLS)"},
	{"CHURNWATCH_KAFKA_SASL_USERNAME", "", "SASL user"},
	{"CHURNWATCH_KAFKA_SASL_PASSWORD_FILE", "", "file holding the SASL password (secret, never logged)"},
	{"CHURNWATCH_GRPC_MAX_MESSAGE", "4194304", "largest gRPC request message in bytes; larger ones get RESOURCE_EXHAUSTED"},
	{"CHURNWATCH_GRPC_MAX_STREAMS", "256", "concurrent gRPC streams per connection"},
	{"CHURNWATCH_GRPC_CONNECTION_TIMEOUT", "10s", "time a new gRPC connection has to finish its TLS and HTTP/2 handshake"},
	{"CHURNWATCH_GRPC_MAX_CONNECTION_IDLE", "5m", "a gRPC connection with no RPC for this long is closed"},
	{"CHURNWATCH_HTTP_READ_HEADER_TIMEOUT", "5s", "time to send the request headers (and the TLS handshake)"},
	{"CHURNWATCH_HTTP_READ_TIMEOUT", "30s", "time to send a whole request, body included (a slow body is cut off)"},
	{"CHURNWATCH_HTTP_WRITE_TIMEOUT", "2m", "time to answer a request"},
	{"CHURNWATCH_HTTP_IDLE_TIMEOUT", "60s", "a keep-alive HTTP connection idle this long is closed"},
	{"CHURNWATCH_HTTP_MAX_BODIES", "8", "concurrent request bodies over 64 KiB (or of unknown length); more get 503 + Retry-After"},
}

// WriteSettings prints settings as --help lines.
func WriteSettings(w io.Writer, settings []Setting) {
	for _, s := range settings {
		def := s.Default
		if def == "" {
			def = "off"
		}
		fmt.Fprintf(w, "  %-40s %s (%s)\n", s.Name, s.Help, def)
	}
}

// LoadCommon reads the shared settings; grpcDefault and httpDefault are the
// service's default listen addresses (SPEC §6).
func LoadCommon(e *Env, service, grpcDefault, httpDefault string) Common {
	c := loadCommon(e, service, grpcDefault, httpDefault)
	if c.RedisAddr == "" && len(c.RedisAddrs) == 0 {
		c.RedisAddr = DefaultRedisAddr
	}
	if c.RedisPasswordFile != "" {
		b, err := os.ReadFile(c.RedisPasswordFile)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("CHURNWATCH_REDIS_PASSWORD_FILE: %w", err))
		} else if c.RedisPassword != "" {
			e.errs = append(e.errs, errors.New("CHURNWATCH_REDIS_PASSWORD and CHURNWATCH_REDIS_PASSWORD_FILE are both set: keep only the file"))
		} else {
			c.RedisPassword = strings.TrimRight(string(b), "\r\n")
		}
	}
	if c.KafkaSASLPasswordFile != "" {
		b, err := os.ReadFile(c.KafkaSASLPasswordFile)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("CHURNWATCH_KAFKA_SASL_PASSWORD_FILE: %w", err))
		} else {
			c.KafkaSASLPassword = strings.TrimRight(string(b), "\r\n")
		}
	}
	return c
}

// DefaultRedisAddr is used when neither CHURNWATCH_REDIS_ADDR nor
// CHURNWATCH_REDIS_ADDRS is set.
const DefaultRedisAddr = "127.0.0.1:6379"

func loadCommon(e *Env, service, grpcDefault, httpDefault string) Common {
	return Common{
		Service:               service,
		GRPCAddr:              e.String("CHURNWATCH_GRPC_ADDR", grpcDefault),
		HTTPAddr:              e.String("CHURNWATCH_HTTP_ADDR", httpDefault),
		KafkaBrokers:          e.List("CHURNWATCH_KAFKA_BROKERS", []string{"127.0.0.1:9092"}),
		RedisAddr:             e.String("CHURNWATCH_REDIS_ADDR", ""),
		RedisAddrs:            e.List("CHURNWATCH_REDIS_ADDRS", nil),
		RedisMasterName:       e.String("CHURNWATCH_REDIS_MASTER_NAME", ""),
		RedisCluster:          e.Bool("CHURNWATCH_REDIS_CLUSTER", false),
		RedisUsername:         e.String("CHURNWATCH_REDIS_USERNAME", ""),
		RedisPassword:         e.String("CHURNWATCH_REDIS_PASSWORD", ""),
		RedisPasswordFile:     e.String("CHURNWATCH_REDIS_PASSWORD_FILE", ""),
		RedisTLSCA:            e.String("CHURNWATCH_REDIS_TLS_CA", ""),
		RedisDB:               e.Int("CHURNWATCH_REDIS_DB", 0),
		AuthPublicKeys:        e.List("CHURNWATCH_AUTH_PUBLIC_KEYS", nil),
		Auth:                  loadAuth(e),
		TLSCert:               e.String("CHURNWATCH_TLS_CERT", ""),
		TLSKey:                e.String("CHURNWATCH_TLS_KEY", ""),
		TLSClientCA:           e.String("CHURNWATCH_TLS_CLIENT_CA", ""),
		HTTPPlainAddr:         e.String("CHURNWATCH_HTTP_PLAIN_ADDR", ""),
		KafkaTLSCA:            e.String("CHURNWATCH_KAFKA_TLS_CA", ""),
		KafkaTLSCert:          e.String("CHURNWATCH_KAFKA_TLS_CERT", ""),
		KafkaTLSKey:           e.String("CHURNWATCH_KAFKA_TLS_KEY", ""),
		KafkaSASLMechanism:    strings.ToUpper(e.String("CHURNWATCH_KAFKA_SASL_MECHANISM", "")),
		KafkaSASLUsername:     e.String("CHURNWATCH_KAFKA_SASL_USERNAME", ""),
		KafkaSASLPasswordFile: e.String("CHURNWATCH_KAFKA_SASL_PASSWORD_FILE", ""),
		Limits: Limits{
			GRPCMaxMessage:        e.Int("CHURNWATCH_GRPC_MAX_MESSAGE", 4<<20),
			GRPCMaxStreams:        e.Int("CHURNWATCH_GRPC_MAX_STREAMS", 256),
			GRPCConnectionTimeout: e.Duration("CHURNWATCH_GRPC_CONNECTION_TIMEOUT", 10*time.Second),
			GRPCMaxConnectionIdle: e.Duration("CHURNWATCH_GRPC_MAX_CONNECTION_IDLE", 5*time.Minute),
			HTTPReadHeaderTimeout: e.Duration("CHURNWATCH_HTTP_READ_HEADER_TIMEOUT", 5*time.Second),
			HTTPReadTimeout:       e.Duration("CHURNWATCH_HTTP_READ_TIMEOUT", 30*time.Second),
			HTTPWriteTimeout:      e.Duration("CHURNWATCH_HTTP_WRITE_TIMEOUT", 2*time.Minute),
			HTTPIdleTimeout:       e.Duration("CHURNWATCH_HTTP_IDLE_TIMEOUT", 60*time.Second),
			HTTPMaxBodies:         e.Int("CHURNWATCH_HTTP_MAX_BODIES", 8),
		},
		LogLevel: e.String("CHURNWATCH_LOG_LEVEL", "info"),
		HomeBank: e.String("CHURNWATCH_HOME_BANK", "HOME"),
		Topics: Topics{
			Events:    e.String("CHURNWATCH_TOPIC_EVENTS", "churnwatch.events.v1"),
			Customers: e.String("CHURNWATCH_TOPIC_CUSTOMERS", "churnwatch.customers.v1"),
			Signals:   e.String("CHURNWATCH_TOPIC_SIGNALS", "churnwatch.signals.v1"),
			Alerts:    e.String("CHURNWATCH_TOPIC_ALERTS", "churnwatch.alerts.v1"),
			DLQ:       e.String("CHURNWATCH_TOPIC_DLQ", "churnwatch.events.v1.dlq"),
		},
		ShutdownGrace: e.Duration("CHURNWATCH_SHUTDOWN_GRACE", 10*time.Second),
		OTLPEndpoint:  e.String("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
	}
}

// Validate reports every problem of the shared settings.
func (c Common) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("CHURNWATCH_GRPC_ADDR is empty"))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("CHURNWATCH_KAFKA_BROKERS is empty"))
	}
	errs = append(errs, c.validateRedis()...)
	errs = append(errs, c.Auth.validate(len(c.AuthPublicKeys) > 0)...)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("CHURNWATCH_TLS_CERT and CHURNWATCH_TLS_KEY must be set together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("CHURNWATCH_TLS_CLIENT_CA needs CHURNWATCH_TLS_CERT"))
	}
	errs = append(errs, c.validateKafkaSecurity()...)
	errs = append(errs, c.Limits.validate()...)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("CHURNWATCH_LOG_LEVEL %q: want debug, info, warn or error", c.LogLevel))
	}
	for _, t := range c.Topics.All() {
		if t == "" {
			errs = append(errs, errors.New("a CHURNWATCH_TOPIC_* is empty"))
		}
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_SHUTDOWN_GRACE must be positive"))
	}
	return errors.Join(errs...)
}

// Attrs renders a configuration as log attributes with secrets masked.
// Fields whose name mentions a password, secret, token or key material are
// replaced by "***" when set.
func Attrs(fields map[string]any) []any {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, len(keys))
	for _, k := range keys {
		v := fields[k]
		lk := strings.ToLower(k)
		if strings.Contains(lk, "password") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
			if s := fmt.Sprint(v); s != "" {
				v = "***"
			}
		}
		out = append(out, slog.Any(k, v))
	}
	return out
}

// Fields lists the shared settings for the start-up log (masked by Attrs).
func (c Common) Fields() map[string]any {
	return map[string]any{
		"grpc_addr": c.GRPCAddr, "http_addr": c.HTTPAddr, "kafka_brokers": strings.Join(c.KafkaBrokers, ","),
		"redis_addr": MaskURL(c.RedisAddr), "redis_addrs": strings.Join(c.RedisAddrs, ","), "redis_master_name": c.RedisMasterName,
		"redis_cluster": c.RedisCluster, "redis_username": c.RedisUsername, "redis_password": c.RedisPassword,
		"redis_password_file": c.RedisPasswordFile, "redis_tls_ca": c.RedisTLSCA, "redis_db": c.RedisDB,
		"auth_public_keys": len(c.AuthPublicKeys), "auth": c.Auth.fields(), "tls": c.TLSCert != "", "mtls": c.TLSClientCA != "",
		"http_plain_addr": c.HTTPPlainAddr, "kafka_tls": c.KafkaTLSCA != "", "kafka_tls_client_cert": c.KafkaTLSCert != "",
		"kafka_sasl_mechanism": c.KafkaSASLMechanism, "kafka_sasl_username": c.KafkaSASLUsername,
		"kafka_sasl_password": c.KafkaSASLPassword, "kafka_sasl_password_file": c.KafkaSASLPasswordFile,
		"grpc_max_message": c.Limits.GRPCMaxMessage, "grpc_max_streams": c.Limits.GRPCMaxStreams,
		"http_read_timeout": c.Limits.HTTPReadTimeout.String(), "http_max_bodies": c.Limits.HTTPMaxBodies,
		"log_level": c.LogLevel, "home_bank": c.HomeBank, "topic_events": c.Topics.Events,
		"topic_customers": c.Topics.Customers, "topic_signals": c.Topics.Signals, "topic_alerts": c.Topics.Alerts,
		"topic_dlq": c.Topics.DLQ, "otlp_endpoint": c.OTLPEndpoint, "shutdown_grace": c.ShutdownGrace.String(),
	}
}

// validateKafkaSecurity checks the TLS and SASL settings for the brokers.
func (c Common) validateKafkaSecurity() []error {
	var errs []error
	if (c.KafkaTLSCert == "") != (c.KafkaTLSKey == "") {
		errs = append(errs, errors.New("CHURNWATCH_KAFKA_TLS_CERT and CHURNWATCH_KAFKA_TLS_KEY must be set together"))
	}
	if c.KafkaTLSCert != "" && c.KafkaTLSCA == "" {
		errs = append(errs, errors.New("CHURNWATCH_KAFKA_TLS_CERT needs CHURNWATCH_KAFKA_TLS_CA (the client certificate is sent over TLS only)"))
	}
	switch c.KafkaSASLMechanism {
	case "":
		if c.KafkaSASLUsername != "" || c.KafkaSASLPasswordFile != "" {
			errs = append(errs, errors.New("CHURNWATCH_KAFKA_SASL_USERNAME or _PASSWORD_FILE set without CHURNWATCH_KAFKA_SASL_MECHANISM"))
		}
	case "SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN":
		if c.KafkaSASLUsername == "" || c.KafkaSASLPasswordFile == "" {
			errs = append(errs, fmt.Errorf("CHURNWATCH_KAFKA_SASL_MECHANISM %s needs CHURNWATCH_KAFKA_SASL_USERNAME and CHURNWATCH_KAFKA_SASL_PASSWORD_FILE", c.KafkaSASLMechanism))
		}
		if c.KafkaSASLMechanism == "PLAIN" && c.KafkaTLSCA == "" {
			errs = append(errs, errors.New("CHURNWATCH_KAFKA_SASL_MECHANISM PLAIN sends the password as it is: set CHURNWATCH_KAFKA_TLS_CA too"))
		}
	default:
		errs = append(errs, fmt.Errorf("CHURNWATCH_KAFKA_SASL_MECHANISM %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", c.KafkaSASLMechanism))
	}
	return errs
}

func (l Limits) validate() []error {
	var errs []error
	if l.GRPCMaxMessage < 1024 {
		errs = append(errs, errors.New("CHURNWATCH_GRPC_MAX_MESSAGE must be at least 1024 bytes"))
	}
	if l.GRPCMaxStreams <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_GRPC_MAX_STREAMS must be positive"))
	}
	if l.HTTPMaxBodies <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_HTTP_MAX_BODIES must be positive"))
	}
	for name, d := range map[string]time.Duration{
		"CHURNWATCH_GRPC_CONNECTION_TIMEOUT": l.GRPCConnectionTimeout, "CHURNWATCH_GRPC_MAX_CONNECTION_IDLE": l.GRPCMaxConnectionIdle,
		"CHURNWATCH_HTTP_READ_HEADER_TIMEOUT": l.HTTPReadHeaderTimeout, "CHURNWATCH_HTTP_READ_TIMEOUT": l.HTTPReadTimeout,
		"CHURNWATCH_HTTP_WRITE_TIMEOUT": l.HTTPWriteTimeout, "CHURNWATCH_HTTP_IDLE_TIMEOUT": l.HTTPIdleTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

// validateRedis checks that the Redis settings name one topology.
func (c Common) validateRedis() []error {
	var errs []error
	switch {
	case c.RedisAddr == "" && len(c.RedisAddrs) == 0:
		errs = append(errs, errors.New("CHURNWATCH_REDIS_ADDR and CHURNWATCH_REDIS_ADDRS are empty: set one"))
	case c.RedisAddr != "" && len(c.RedisAddrs) > 0:
		errs = append(errs, errors.New("CHURNWATCH_REDIS_ADDR and CHURNWATCH_REDIS_ADDRS are both set: use ADDR for one node, ADDRS for the seeds of a Cluster or the sentinels, not both"))
	}
	if c.RedisMasterName != "" && c.RedisCluster {
		errs = append(errs, errors.New("CHURNWATCH_REDIS_MASTER_NAME (Sentinel) and CHURNWATCH_REDIS_CLUSTER=true are both set: Redis runs either behind Sentinel or as a Cluster; unset one"))
	}
	if len(c.RedisAddrs) > 1 && c.RedisMasterName == "" && !c.RedisCluster {
		errs = append(errs, errors.New("CHURNWATCH_REDIS_ADDRS lists several addresses: set CHURNWATCH_REDIS_CLUSTER=true (seed nodes) or CHURNWATCH_REDIS_MASTER_NAME (sentinels)"))
	}
	if c.RedisCluster && c.RedisDB != 0 {
		errs = append(errs, errors.New("CHURNWATCH_REDIS_DB must be 0 with CHURNWATCH_REDIS_CLUSTER: a Redis Cluster has only database 0"))
	}
	if strings.Contains(c.RedisAddr, "://") {
		u, err := url.Parse(c.RedisAddr)
		switch {
		case err != nil:
			// url's error quotes the URL, password included: not repeated.
			errs = append(errs, errors.New("CHURNWATCH_REDIS_ADDR is not a valid URL: want redis://[user:password@]host:port[/db] or rediss://…"))
		case u.Scheme != "redis" && u.Scheme != "rediss":
			errs = append(errs, fmt.Errorf("CHURNWATCH_REDIS_ADDR: scheme %q: want redis:// or rediss://", u.Scheme))
		default:
			if _, set := u.User.Password(); set && c.RedisPassword != "" {
				errs = append(errs, errors.New("the Redis password is both in CHURNWATCH_REDIS_ADDR and in CHURNWATCH_REDIS_PASSWORD(_FILE): keep it in one place (the file)"))
			}
			if u.User.Username() != "" && c.RedisUsername != "" {
				errs = append(errs, errors.New("the Redis user is both in CHURNWATCH_REDIS_ADDR and in CHURNWATCH_REDIS_USERNAME: keep one"))
			}
		}
	}
	return errs
}

// MaskURL returns a URL with its password replaced, for logs; a plain
// host:port is returned as is, and an unparsable URL not at all.
func MaskURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
