package app

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Config is the alert service's configuration.
type Config struct {
	Common config.Common
	// SignalsGroup consumes churnwatch.signals.v1.
	SignalsGroup string
	// CustomersGroup consumes churnwatch.customers.v1 (profiles, routing).
	CustomersGroup string
	// Playbook is a YAML/JSON playbook file; empty = the built-in one.
	Playbook string
	// SLA is the time to acknowledge per tier (wall clock).
	SLA map[cwv1.Tier]time.Duration
	// ScanInterval is how often due escalations and snooze ends are looked for.
	ScanInterval time.Duration
	// StreamRetention bounds each audience stream (XADD MAXLEN ~).
	StreamRetention int
	// SubscriberQueue bounds each subscriber's queue; a full queue cuts it off.
	SubscriberQueue int
	// StreamSendTimeout bounds one Send on a Subscribe stream: a client that
	// stops reading has its stream, goroutines and queue released after it.
	StreamSendTimeout time.Duration
	// StreamMaxPerPrincipal caps the open Subscribe streams of one principal.
	StreamMaxPerPrincipal int
	// SignalMemory bounds the merged signal ids kept per customer for dedupe.
	SignalMemory int
	// BatchSize is the most records handled per consumer batch.
	BatchSize int
	// PublishLeaseTTL is how long the publisher lease outlives its holder's
	// last renewal: a killed holder is replaced within TTL + PublishLeaseRenew.
	PublishLeaseTTL time.Duration
	// PublishLeaseRenew is how often the holder renews the lease and how
	// often standby instances try to take it.
	PublishLeaseRenew time.Duration
	// PublishBatch is the most outbox entries published per Kafka write.
	PublishBatch int
	// Receivers is the receivers file (SPEC §5); empty = no receivers.
	Receivers string
	// ReceiversReload is how often the receivers file (and the secret
	// files it names) is checked for changes.
	ReceiversReload time.Duration
	// ConsoleURL is the console's base URL; alert emails link to
	// CONSOLE_URL/alerts/ID when set.
	ConsoleURL string
}

// Vars documents every service-specific variable with its default (for -h).
var Vars = [][2]string{
	{"CHURNWATCH_ALERTS_GROUP", "churnwatch-alerts"},
	{"CHURNWATCH_ALERTS_CUSTOMERS_GROUP", "churnwatch-alerts-customers"},
	{"CHURNWATCH_PLAYBOOK", "(built-in playbook)"},
	{"CHURNWATCH_SLA_HNW", "4h"},
	{"CHURNWATCH_SLA_POTENTIAL", "24h"},
	{"CHURNWATCH_SLA_MASS", "24h"},
	{"CHURNWATCH_SLA_BASIC", "72h"},
	{"CHURNWATCH_ESCALATION_INTERVAL", "30s"},
	{"CHURNWATCH_STREAM_RETENTION", "100000"},
	{"CHURNWATCH_SUBSCRIBER_QUEUE", "1024"},
	{"CHURNWATCH_STREAM_SEND_TIMEOUT", "30s"},
	{"CHURNWATCH_STREAM_MAX_PER_PRINCIPAL", "8"},
	{"CHURNWATCH_SIGNAL_MEMORY", "1000"},
	{"CHURNWATCH_ALERTS_BATCH", "500"},
	{"CHURNWATCH_PUBLISH_LEASE_TTL", "5s"},
	{"CHURNWATCH_PUBLISH_LEASE_RENEW", "1s"},
	{"CHURNWATCH_PUBLISH_BATCH", "500"},
	{"CHURNWATCH_ALERTS_RECEIVERS", "(none: a receivers YAML file, docs/alerts.md)"},
	{"CHURNWATCH_ALERTS_RECEIVERS_RELOAD", "10s"},
	{"CHURNWATCH_CONSOLE_URL", "(none)"},
}

// LoadConfig reads the configuration from the environment.
func LoadConfig(e *config.Env) (Config, error) {
	c := Config{
		Common:         config.LoadCommon(e, "alerts", "127.0.0.1:7003", ":8003"),
		SignalsGroup:   e.String("CHURNWATCH_ALERTS_GROUP", "churnwatch-alerts"),
		CustomersGroup: e.String("CHURNWATCH_ALERTS_CUSTOMERS_GROUP", "churnwatch-alerts-customers"),
		Playbook:       e.String("CHURNWATCH_PLAYBOOK", ""),
		SLA: map[cwv1.Tier]time.Duration{
			cwv1.Tier_TIER_HIGH_NET_WORTH: e.Duration("CHURNWATCH_SLA_HNW", 4*time.Hour),
			cwv1.Tier_TIER_POTENTIAL:      e.Duration("CHURNWATCH_SLA_POTENTIAL", 24*time.Hour),
			cwv1.Tier_TIER_MASS:           e.Duration("CHURNWATCH_SLA_MASS", 24*time.Hour),
			cwv1.Tier_TIER_BASIC:          e.Duration("CHURNWATCH_SLA_BASIC", 72*time.Hour),
		},
		ScanInterval:    e.Duration("CHURNWATCH_ESCALATION_INTERVAL", 30*time.Second),
		StreamRetention: e.Int("CHURNWATCH_STREAM_RETENTION", 100000),
		SubscriberQueue: e.Int("CHURNWATCH_SUBSCRIBER_QUEUE", 1024),
		SignalMemory:    e.Int("CHURNWATCH_SIGNAL_MEMORY", 1000),

		StreamSendTimeout:     e.Duration("CHURNWATCH_STREAM_SEND_TIMEOUT", 30*time.Second),
		StreamMaxPerPrincipal: e.Int("CHURNWATCH_STREAM_MAX_PER_PRINCIPAL", 8),
		BatchSize:             e.Int("CHURNWATCH_ALERTS_BATCH", 500),

		PublishLeaseTTL:   e.Duration("CHURNWATCH_PUBLISH_LEASE_TTL", 5*time.Second),
		PublishLeaseRenew: e.Duration("CHURNWATCH_PUBLISH_LEASE_RENEW", time.Second),
		PublishBatch:      e.Int("CHURNWATCH_PUBLISH_BATCH", 500),

		Receivers:       e.String("CHURNWATCH_ALERTS_RECEIVERS", ""),
		ReceiversReload: e.Duration("CHURNWATCH_ALERTS_RECEIVERS_RELOAD", 10*time.Second),
		ConsoleURL:      e.String("CHURNWATCH_CONSOLE_URL", ""),
	}
	return c, errors.Join(e.Err(), c.Validate())
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	if c.SignalsGroup == "" || c.CustomersGroup == "" {
		errs = append(errs, errors.New("CHURNWATCH_ALERTS_GROUP and CHURNWATCH_ALERTS_CUSTOMERS_GROUP must be set"))
	}
	if c.SignalsGroup == c.CustomersGroup {
		errs = append(errs, errors.New("the signals and customers consumer groups must differ"))
	}
	for tier, d := range c.SLA {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("SLA of %s must be positive", tier))
		}
	}
	if c.ScanInterval <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_ESCALATION_INTERVAL must be positive"))
	}
	if c.StreamRetention < 100 {
		errs = append(errs, errors.New("CHURNWATCH_STREAM_RETENTION must be at least 100"))
	}
	if c.SubscriberQueue < 1 {
		errs = append(errs, errors.New("CHURNWATCH_SUBSCRIBER_QUEUE must be at least 1"))
	}
	if c.StreamSendTimeout < 10*time.Millisecond {
		errs = append(errs, errors.New("CHURNWATCH_STREAM_SEND_TIMEOUT must be at least 10ms"))
	}
	if c.StreamMaxPerPrincipal < 1 {
		errs = append(errs, errors.New("CHURNWATCH_STREAM_MAX_PER_PRINCIPAL must be at least 1"))
	}
	if c.SignalMemory < 10 {
		errs = append(errs, errors.New("CHURNWATCH_SIGNAL_MEMORY must be at least 10"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("CHURNWATCH_ALERTS_BATCH must be at least 1"))
	}
	// The holder stops writing one renew period before the lease can
	// expire, so the TTL must leave room for at least one more renewal.
	if c.PublishLeaseRenew < 10*time.Millisecond || c.PublishLeaseTTL < 2*c.PublishLeaseRenew {
		errs = append(errs, errors.New("CHURNWATCH_PUBLISH_LEASE_RENEW must be at least 10ms and CHURNWATCH_PUBLISH_LEASE_TTL at least twice it"))
	}
	if c.PublishBatch < 1 || c.PublishBatch > 10000 {
		errs = append(errs, errors.New("CHURNWATCH_PUBLISH_BATCH must be between 1 and 10000"))
	}
	if c.ReceiversReload < 10*time.Millisecond {
		errs = append(errs, errors.New("CHURNWATCH_ALERTS_RECEIVERS_RELOAD must be at least 10ms"))
	}
	if c.ConsoleURL != "" {
		if u, err := url.Parse(c.ConsoleURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("CHURNWATCH_CONSOLE_URL must be an http(s) URL"))
		}
	}
	return errors.Join(errs...)
}

func (c Config) fields() map[string]any {
	f := c.Common.Fields()
	f["signals_group"], f["customers_group"], f["playbook"] = c.SignalsGroup, c.CustomersGroup, c.Playbook
	for tier, d := range c.SLA {
		f["sla_"+tier.String()] = d.String()
	}
	f["scan_interval"], f["stream_retention"], f["subscriber_queue"] = c.ScanInterval.String(), c.StreamRetention, c.SubscriberQueue
	f["signal_memory"], f["batch_size"] = c.SignalMemory, c.BatchSize
	f["stream_send_timeout"], f["stream_max_per_principal"] = c.StreamSendTimeout.String(), c.StreamMaxPerPrincipal
	f["publish_lease_ttl"], f["publish_lease_renew"], f["publish_batch"] = c.PublishLeaseTTL.String(), c.PublishLeaseRenew.String(), c.PublishBatch
	f["receivers"], f["receivers_reload"], f["console_url"] = c.Receivers, c.ReceiversReload.String(), c.ConsoleURL
	return f
}

type options struct {
	logOutput   io.Writer
	clock       func() time.Time
	deliverHook func(reader string) error // tests (export_test.go): after a delivery, before the position update
}

// Option tunes New.
type Option func(*options)

// WithLogOutput sends the service's logs to w.
func WithLogOutput(w io.Writer) Option { return func(o *options) { o.logOutput = w } }

// WithClock replaces the wall clock used for alert times, SLAs and snoozes
// (tests drive escalation with it).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }
