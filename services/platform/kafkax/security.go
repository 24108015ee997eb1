package kafkax

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Cluster is how churnwatch reaches Kafka: the bootstrap brokers and the
// connection security (TLS, SASL). Every reader, writer, admin client and
// transport is built from one, so no connection can skip the security the
// configuration asks for. The zero security is plaintext (the embedded
// broker, tests).
type Cluster struct {
	Brokers []string
	// TLS, when set, wraps every connection (server name: the broker's host).
	TLS *tls.Config
	// SASL, when set, authenticates every connection.
	SASL sasl.Mechanism

	transport *kafka.Transport
}

// Plain is a cluster reached without TLS or SASL.
func Plain(brokers []string) Cluster { return Cluster{Brokers: brokers} }

// ClusterFrom builds the cluster cfg describes (CHURNWATCH_KAFKA_BROKERS,
// _KAFKA_TLS_*, _KAFKA_SASL_*). Errors name the setting, never the password.
func ClusterFrom(cfg config.Common) (Cluster, error) {
	c := Cluster{Brokers: cfg.KafkaBrokers}
	if cfg.KafkaTLSCA != "" {
		pem, err := os.ReadFile(cfg.KafkaTLSCA)
		if err != nil {
			return c, fmt.Errorf("CHURNWATCH_KAFKA_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("CHURNWATCH_KAFKA_TLS_CA %s: no PEM certificate", cfg.KafkaTLSCA)
		}
		c.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cfg.KafkaTLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.KafkaTLSCert, cfg.KafkaTLSKey)
			if err != nil {
				return c, fmt.Errorf("CHURNWATCH_KAFKA_TLS_CERT/_KEY: %w", err)
			}
			c.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	if cfg.KafkaSASLMechanism != "" {
		m, err := Mechanism(cfg.KafkaSASLMechanism, cfg.KafkaSASLUsername, cfg.KafkaSASLPassword)
		if err != nil {
			return c, err
		}
		c.SASL = m
	}
	if c.Secured() {
		// One pool of connections per cluster value: the writers and admin
		// clients of a service share it, as they share kafka.DefaultTransport
		// when plaintext.
		c.transport = c.Secure(&kafka.Transport{})
	}
	return c, nil
}

// Mechanism returns the kafka-go SASL mechanism called name.
func Mechanism(name, user, password string) (sasl.Mechanism, error) {
	if user == "" || password == "" {
		return nil, fmt.Errorf("CHURNWATCH_KAFKA_SASL_MECHANISM %s: user and password are needed", name)
	}
	switch name {
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, user, password)
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, user, password)
	case "PLAIN":
		return plain.Mechanism{Username: user, Password: password}, nil
	case "":
		return nil, errors.New("no SASL mechanism named")
	default:
		return nil, fmt.Errorf("CHURNWATCH_KAFKA_SASL_MECHANISM %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", name)
	}
}

// Secured reports whether connections use TLS or SASL.
func (c Cluster) Secured() bool { return c.TLS != nil || c.SASL != nil }

// Dialer is the dialer readers use (kafka.ReaderConfig.Dialer).
func (c Cluster) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.tlsConfig(), SASLMechanism: c.SASL}
}

// Secure sets the cluster's TLS and SASL on t and returns it: for a
// service that wants its own pool and timeouts (the ingester, the alert
// publisher).
func (c Cluster) Secure(t *kafka.Transport) *kafka.Transport {
	t.TLS, t.SASL = c.tlsConfig(), c.SASL
	return t
}

// Transport is the round tripper writers and clients use: the cluster's
// shared secured transport, or kafka-go's default one when plaintext.
func (c Cluster) Transport() kafka.RoundTripper {
	if c.transport != nil {
		return c.transport
	}
	if c.Secured() {
		return c.Secure(&kafka.Transport{})
	}
	return kafka.DefaultTransport
}

// Client is an admin/metadata client with timeout.
func (c Cluster) Client(timeout time.Duration) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: timeout, Transport: c.Transport()}
}

// Close drops the shared transport's idle connections.
func (c Cluster) Close() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

func (c Cluster) tlsConfig() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	return c.TLS.Clone()
}
