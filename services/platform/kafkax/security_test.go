package kafkax_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func secureCluster(t *testing.T, env map[string]string, over map[string]string) kafkax.Cluster {
	t.Helper()
	m := map[string]string{}
	for k, v := range env {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	e := config.FromMap(m)
	c := config.LoadCommon(e, "test", "", "")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil && !strings.Contains(err.Error(), "AUTH_PUBLIC_KEYS") {
		t.Fatal(err)
	}
	cl, err := kafkax.ClusterFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// On a SASL_SSL-only cluster (scripts/kafka.sh --sasl-ssl): topics, a
// writer and a group reader built by kafkax with the right credentials work,
// with each mechanism; a wrong password, TLS without SASL and plaintext are
// refused.
func TestSASLSSLCluster(t *testing.T) {
	k := testkit.SecureRealKafka(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := secureCluster(t, k.Env, nil)
	if !cl.Secured() || cl.TLS == nil || cl.SASL == nil || cl.SASL.Name() != "SCRAM-SHA-512" {
		t.Fatalf("kafka.env did not configure TLS and SCRAM-SHA-512: %+v", k.Env)
	}
	const topic = "kafkax.sasl-ssl"
	if _, err := kafkax.EnsureTopics(ctx, cl, kafkax.TopicPolicy{}, kafkax.TopicSpec{Name: topic, Partitions: 1}); err != nil {
		t.Fatalf("topics over SASL_SSL: %v", err)
	}
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		c := secureCluster(t, k.Env, map[string]string{"CHURNWATCH_KAFKA_SASL_MECHANISM": mech})
		w := kafkax.SmallWriter(c, topic)
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(mech), Value: []byte("hello " + mech)}); err != nil {
			t.Fatalf("produce with %s: %v", mech, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r := kafka.NewReader(kafkax.ReaderConfig(cl, "sasl-ssl-test", topic))
	defer r.Close()
	got := map[string]bool{}
	for len(got) < 3 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume over SASL_SSL: %v (got %v)", err, got)
		}
		got[string(m.Key)] = true
	}
	lag, err := kafkax.GroupLag(ctx, cl, "sasl-ssl-test", topic)
	if err != nil || len(lag) != 1 {
		t.Fatalf("group lag over SASL_SSL: %v %v", lag, err)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	const wrongPassword = "not-the-password-0123456789"
	if err := os.WriteFile(wrong, []byte(wrongPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := map[string]kafkax.Cluster{
		"wrong password":   secureCluster(t, k.Env, map[string]string{"CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": wrong}),
		"TLS without SASL": secureCluster(t, k.Env, map[string]string{"CHURNWATCH_KAFKA_SASL_MECHANISM": "", "CHURNWATCH_KAFKA_SASL_USERNAME": "", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": ""}),
		"plaintext":        kafkax.Plain(k.Brokers),
	}
	for name, c := range refused {
		mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Client(5*time.Second).Metadata(mctx, &kafka.MetadataRequest{Topics: []string{topic}})
		mcancel()
		if err == nil {
			t.Fatalf("%s: metadata served", name)
		}
		if name == "wrong password" {
			if !errors.Is(err, kafka.SASLAuthenticationFailed) {
				t.Fatalf("wrong password: %v, want SASL authentication failed", err)
			}
			if strings.Contains(err.Error(), wrongPassword) {
				t.Fatalf("the error quotes the password: %v", err)
			}
		}
		t.Logf("%s refused: %v", name, err)
	}
	// The dialer readers use is refused too.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if conn, err := kafkax.Plain(k.Brokers).Dialer().DialContext(pctx, "tcp", k.Brokers[0]); err == nil {
		_, err = conn.ReadPartitions(topic)
		conn.Close()
		if err == nil {
			t.Fatal("plaintext dialer read partitions of a SASL_SSL cluster")
		}
	}
}

// ClusterFrom refuses a bad mechanism, names the setting and keeps the
// password out of every error.
func TestClusterFromErrors(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret-pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]map[string]string{
		"mechanism":     {"CHURNWATCH_KAFKA_SASL_MECHANISM": "GSSAPI", "CHURNWATCH_KAFKA_SASL_USERNAME": "u", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": pw},
		"no user":       {"CHURNWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": pw},
		"plain, no TLS": {"CHURNWATCH_KAFKA_SASL_MECHANISM": "PLAIN", "CHURNWATCH_KAFKA_SASL_USERNAME": "u", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": pw},
		"cert, no CA":   {"CHURNWATCH_KAFKA_TLS_CERT": "c.pem", "CHURNWATCH_KAFKA_TLS_KEY": "k.pem"},
	} {
		c := config.LoadCommon(config.FromMap(m), "test", "", "")
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "CHURNWATCH_KAFKA_") {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("%s: error quotes the password: %v", name, err)
		}
	}
	c := config.LoadCommon(config.FromMap(map[string]string{"CHURNWATCH_KAFKA_SASL_MECHANISM": "scram-sha-256", "CHURNWATCH_KAFKA_SASL_USERNAME": "u", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE": pw}), "test", "", "")
	for _, a := range config.Attrs(c.Fields()) {
		if strings.Contains(a.(interface{ String() string }).String(), "s3cret-pw") {
			t.Fatalf("start log attribute shows the password: %v", a)
		}
	}
	cl, err := kafkax.ClusterFrom(c)
	if err != nil || cl.SASL == nil || cl.SASL.Name() != "SCRAM-SHA-256" || cl.TLS != nil {
		t.Fatalf("SCRAM-SHA-256 without TLS: %+v %v", cl, err)
	}
}
