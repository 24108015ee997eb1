package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/churnwatch/churnwatch/services/ingester/internal/intake"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Config is the ingester's configuration.
type Config struct {
	Common config.Common
	// DedupRetention is how long a published eventId is remembered
	// (CHURNWATCH_DEDUP_RETENTION).
	DedupRetention time.Duration
	// DedupPendingTTL bounds the claim held on an eventId while its Kafka
	// write is in flight (CHURNWATCH_DEDUP_PENDING_TTL).
	DedupPendingTTL time.Duration
	// InFlightWait is how long a request waits for another request holding
	// the same eventId (CHURNWATCH_DEDUP_INFLIGHT_WAIT).
	InFlightWait time.Duration
	// KafkaWriteTimeout bounds one produce attempt; KafkaWriteAttempts is how
	// many are made before a request fails UNAVAILABLE.
	KafkaWriteTimeout  time.Duration
	KafkaWriteAttempts int
	// RateLimit is events per second per principal (0: no limit) and
	// RateBurst the bucket size (CHURNWATCH_RATE_LIMIT, CHURNWATCH_RATE_BURST).
	RateLimit float64
	RateBurst int
	// AllowedLateness: an event older than its partition's clock minus this
	// is reported late (CHURNWATCH_ALLOWED_LATENESS, SPEC §3: 7 days; the
	// rules service reads the same variable).
	AllowedLateness time.Duration
	// RequestLeaseTTL: a crashed request's eventId claims are taken over
	// this long after its last sign of life (CHURNWATCH_DEDUP_LEASE_TTL).
	RequestLeaseTTL time.Duration
	// HTTPMaxBody limits POST /v1/events and /v1/customers bodies, in bytes
	// (CHURNWATCH_HTTP_MAX_BODY).
	HTTPMaxBody int64
	// EarliestEvent: events that occurred before it are rejected
	// (CHURNWATCH_EARLIEST_EVENT, SPEC §2: 1970-01-01).
	EarliestEvent time.Time
	// MappingsDir holds the mappings the HTTP intake accepts by name
	// (CHURNWATCH_INGEST_MAPPINGS); MappingData the lookup tables they join
	// (CHURNWATCH_INGEST_MAPPING_DATA, default MappingsDir).
	MappingsDir string
	MappingData string
}

// Settings documents every service-specific variable with its default, for
// --help and docs.
var Settings = []struct{ Name, Default, Help string }{
	{"CHURNWATCH_DEDUP_RETENTION", "720h", "how long a published eventId is remembered (idempotency window)"},
	{"CHURNWATCH_DEDUP_PENDING_TTL", "30s", "lifetime of the claim on an eventId while its Kafka write is in flight"},
	{"CHURNWATCH_DEDUP_INFLIGHT_WAIT", "10s", "how long to wait for another running request publishing the same eventId before answering UNAVAILABLE (retry)"},
	{"CHURNWATCH_DEDUP_LEASE_TTL", "3s", "a crashed request's eventId claims are taken over this long after its last sign of life"},
	{"CHURNWATCH_ALLOWED_LATENESS", "168h", "events older than their partition clock minus this are reported late and dead-lettered (same as the rules service)"},
	{"CHURNWATCH_KAFKA_WRITE_TIMEOUT", "2s", "bound of one produce attempt"},
	{"CHURNWATCH_KAFKA_WRITE_ATTEMPTS", "3", "produce attempts before a request fails UNAVAILABLE"},
	{"CHURNWATCH_RATE_LIMIT", "50000", "events per second per principal; 0 = unlimited"},
	{"CHURNWATCH_RATE_BURST", "20000", "events a principal may send at once (at least 10000, the largest batch)"},
	{"CHURNWATCH_HTTP_MAX_BODY", "33554432", "largest POST /v1/events or /v1/customers body in bytes (32 MiB)"},
	{"CHURNWATCH_EARLIEST_EVENT", "1970-01-01", "events with an occurredAt before this date (or RFC 3339 time) are rejected too_early"},
	{"CHURNWATCH_INGEST_MAPPINGS", "", "directory of mapping YAML files (as churnctl ingest --mapping): POST /v1/events?mapping=NAME takes a bank export in its own format"},
	{"CHURNWATCH_INGEST_MAPPING_DATA", "(the mappings directory)", "directory of the lookup tables the mappings join (account owners, branches), read on each request"},
}

// LoadConfig reads the configuration from the environment.
func LoadConfig(e *config.Env) (Config, error) {
	c := Config{
		Common:             config.LoadCommon(e, "ingester", "127.0.0.1:7001", ":8001"),
		DedupRetention:     e.Duration("CHURNWATCH_DEDUP_RETENTION", 720*time.Hour),
		DedupPendingTTL:    e.Duration("CHURNWATCH_DEDUP_PENDING_TTL", 30*time.Second),
		InFlightWait:       e.Duration("CHURNWATCH_DEDUP_INFLIGHT_WAIT", 10*time.Second),
		KafkaWriteTimeout:  e.Duration("CHURNWATCH_KAFKA_WRITE_TIMEOUT", 2*time.Second),
		KafkaWriteAttempts: e.Int("CHURNWATCH_KAFKA_WRITE_ATTEMPTS", 3),
		RateLimit:          e.Float("CHURNWATCH_RATE_LIMIT", 50000),
		RateBurst:          e.Int("CHURNWATCH_RATE_BURST", 20000),
		HTTPMaxBody:        int64(e.Int("CHURNWATCH_HTTP_MAX_BODY", 32<<20)),
		AllowedLateness:    e.Duration("CHURNWATCH_ALLOWED_LATENESS", 7*24*time.Hour),
		RequestLeaseTTL:    e.Duration("CHURNWATCH_DEDUP_LEASE_TTL", 3*time.Second),
		MappingsDir:        e.String("CHURNWATCH_INGEST_MAPPINGS", ""),
		MappingData:        e.String("CHURNWATCH_INGEST_MAPPING_DATA", ""),
	}
	earliest, err := parseEarliest(e.String("CHURNWATCH_EARLIEST_EVENT", "1970-01-01"))
	c.EarliestEvent = earliest
	_, merr := loadMappings(c.MappingsDir, c.MappingData) // refused at start, not on the first request
	return c, errors.Join(e.Err(), err, merr, c.Validate())
}

// parseEarliest reads CHURNWATCH_EARLIEST_EVENT: a date (UTC midnight) or
// an RFC 3339 time.
func parseEarliest(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("CHURNWATCH_EARLIEST_EVENT %q: want a date such as 1970-01-01 or an RFC 3339 time", s)
	}
	return t, nil
}

// writeBackoffMax is the longest pause between produce attempts.
const writeBackoffMax = 500 * time.Millisecond

// writeBound is the longest a Kafka write can take before the writer gives
// up on its own.
func (c Config) writeBound() time.Duration {
	return time.Duration(c.KafkaWriteAttempts)*c.KafkaWriteTimeout + time.Duration(max(c.KafkaWriteAttempts-1, 0))*writeBackoffMax
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	if c.DedupRetention < time.Minute {
		errs = append(errs, fmt.Errorf("CHURNWATCH_DEDUP_RETENTION %s: at least 1m", c.DedupRetention))
	}
	if c.KafkaWriteTimeout <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_KAFKA_WRITE_TIMEOUT must be positive"))
	}
	if c.KafkaWriteAttempts < 1 {
		errs = append(errs, errors.New("CHURNWATCH_KAFKA_WRITE_ATTEMPTS must be at least 1"))
	}
	// A claim that expired while its write was still in flight would let a
	// retry publish a second copy.
	if c.DedupPendingTTL < 2*c.writeBound() {
		errs = append(errs, fmt.Errorf("CHURNWATCH_DEDUP_PENDING_TTL %s: at least twice the Kafka write bound (%s)", c.DedupPendingTTL, 2*c.writeBound()))
	}
	if c.AllowedLateness <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_ALLOWED_LATENESS must be positive"))
	}
	if c.RequestLeaseTTL < 300*time.Millisecond || c.RequestLeaseTTL > c.DedupPendingTTL {
		errs = append(errs, fmt.Errorf("CHURNWATCH_DEDUP_LEASE_TTL %s: between 300ms and CHURNWATCH_DEDUP_PENDING_TTL", c.RequestLeaseTTL))
	}
	if c.InFlightWait < 0 {
		errs = append(errs, errors.New("CHURNWATCH_DEDUP_INFLIGHT_WAIT must not be negative"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, errors.New("CHURNWATCH_RATE_LIMIT must not be negative"))
	}
	if c.RateLimit > 0 && c.RateBurst < intake.MaxBatch {
		errs = append(errs, fmt.Errorf("CHURNWATCH_RATE_BURST %d: at least %d, or the largest batch could never pass", c.RateBurst, intake.MaxBatch))
	}
	// A protobuf Timestamp starts at year 1; an earlier bound would let
	// through events that cannot be published.
	if !c.EarliestEvent.IsZero() && c.EarliestEvent.Year() < 1 {
		errs = append(errs, fmt.Errorf("CHURNWATCH_EARLIEST_EVENT %s: not before 0001-01-01", c.EarliestEvent.Format(time.RFC3339)))
	}
	if c.HTTPMaxBody < 1024 {
		errs = append(errs, fmt.Errorf("CHURNWATCH_HTTP_MAX_BODY %d: at least 1024 bytes", c.HTTPMaxBody))
	}
	return errors.Join(errs...)
}

// specificFields are the ingester's own settings for the start-up log
// (the shared ones are logged by the service runtime).
func (c Config) specificFields() map[string]any {
	f := map[string]any{}
	f["dedup_retention"] = c.DedupRetention.String()
	f["dedup_pending_ttl"] = c.DedupPendingTTL.String()
	f["dedup_inflight_wait"] = c.InFlightWait.String()
	f["kafka_write_timeout"] = c.KafkaWriteTimeout.String()
	f["kafka_write_attempts"] = c.KafkaWriteAttempts
	f["rate_limit"] = c.RateLimit
	f["rate_burst"] = c.RateBurst
	f["http_max_body"] = c.HTTPMaxBody
	f["allowed_lateness"] = c.AllowedLateness.String()
	f["dedup_lease_ttl"] = c.RequestLeaseTTL.String()
	f["earliest_event"] = c.EarliestEvent.Format(time.RFC3339)
	if c.MappingsDir != "" {
		f["mappings_dir"] = c.MappingsDir
	}
	return f
}
