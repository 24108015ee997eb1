// Package testkit starts real dependencies for tests: a redis-server on a
// free port, the kfake Kafka-protocol broker, and real Apache Kafka clusters
// (scripts/kafka.sh), all stopped at cleanup.
package testkit

import (
	"crypto"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
)

// Partitions is the partition count of every test topic.
const Partitions = 3

// Redis starts a redis-server for the test. A missing redis-server fails the
// test: `make test` installs it.
func Redis(t testing.TB) *embedded.Redis {
	t.Helper()
	r, err := embedded.StartRedis(t.TempDir(), 0)
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Kafka starts a kfake broker with the default churnwatch topics.
func Kafka(t testing.TB) *embedded.Kafka {
	t.Helper()
	k, err := embedded.StartKafka(0, Partitions, DefaultTopics().All()...)
	if err != nil {
		t.Fatalf("kafka: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

// DefaultTopics are the SPEC topic names.
func DefaultTopics() config.Topics {
	return config.LoadCommon(config.FromMap(nil), "", "", "").Topics
}

// Keys is a signing key for test tokens and its public half for services.
type Keys struct {
	PublicPEM string
	signer    crypto.Signer
}

// NewKeys makes a fresh Ed25519 key pair.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := auth.PublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return &Keys{PublicPEM: string(pub), signer: k}
}

// Token mints a one-hour token.
func (k *Keys) Token(t testing.TB, subject string, role auth.Role, branch string) string {
	t.Helper()
	tok, err := auth.Mint(k.signer, auth.Principal{Subject: subject, Role: role, Branch: branch}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TokenTTL mints a token valid for ttl.
func (k *Keys) TokenTTL(t testing.TB, subject string, role auth.Role, branch string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(k.signer, auth.Principal{Subject: subject, Role: role, Branch: branch}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Common returns a service configuration bound to 127.0.0.1:0 and pointed at
// the given broker and Redis, trusting k.
func Common(service string, k *Keys, brokers []string, redisAddr string) config.Common {
	c := config.LoadCommon(config.FromMap(map[string]string{}), service, "127.0.0.1:0", "127.0.0.1:0")
	c.KafkaBrokers = brokers
	c.RedisAddr = redisAddr
	c.AuthPublicKeys = []string{k.PublicPEM}
	c.ShutdownGrace = 5 * time.Second
	c.LogLevel = "warn"
	return c
}
