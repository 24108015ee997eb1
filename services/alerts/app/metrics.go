package app

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// metrics are the alert service's instruments; names are agreed with
// deploy/ (docs/deployment.md).
type metrics struct {
	escalations metric.Int64Counter
	ackTime     metric.Float64Histogram
	e2e         metric.Float64Histogram
	sends       metric.Int64Counter
	cutoffs     metric.Int64Counter
	changes     metric.Int64Counter
	badRecords  metric.Int64Counter
	subscribers metric.Int64UpDownCounter
	takeovers   metric.Int64Counter
	reconciled  metric.Int64Counter
	consumer    *kafkax.ConsumerMetrics
}

func lower(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func newMetrics(a *App) (*metrics, error) {
	m := a.base.Tel.Meter
	var err error
	var mt metrics
	if mt.escalations, err = m.Int64Counter("churnwatch.alert.escalations", metric.WithDescription("alerts escalated after a missed acknowledgement SLA")); err != nil {
		return nil, err
	}
	if mt.ackTime, err = m.Float64Histogram("churnwatch.alert.ack.time", metric.WithUnit("s"), metric.WithDescription("time from alert creation to acknowledgement"),
		metric.WithExplicitBucketBoundaries(60, 300, 900, 3600, 4*3600, 8*3600, 24*3600, 72*3600, 7*24*3600)); err != nil {
		return nil, err
	}
	if mt.e2e, err = m.Float64Histogram("churnwatch.e2e.latency", metric.WithUnit("s"), metric.WithDescription("event accepted → alert sent on a subscriber stream"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if mt.sends, err = m.Int64Counter("churnwatch.alert.stream.sends", metric.WithDescription("alert updates sent on Subscribe streams")); err != nil {
		return nil, err
	}
	if mt.cutoffs, err = m.Int64Counter("churnwatch.alert.stream.cutoffs", metric.WithDescription("subscribers cut off for falling behind")); err != nil {
		return nil, err
	}
	if mt.changes, err = m.Int64Counter("churnwatch.alert.changes", metric.WithDescription("alert changes by kind")); err != nil {
		return nil, err
	}
	if mt.badRecords, err = m.Int64Counter("churnwatch.alert.bad.records", metric.WithDescription("undecodable signal or profile records (sent to the DLQ)")); err != nil {
		return nil, err
	}
	if mt.consumer, err = kafkax.NewConsumerMetrics(m); err != nil {
		return nil, err
	}
	if mt.subscribers, err = m.Int64UpDownCounter("churnwatch.alert.subscribers", metric.WithDescription("open Subscribe streams")); err != nil {
		return nil, err
	}
	if mt.takeovers, err = m.Int64Counter("churnwatch.alert.publisher.takeovers", metric.WithDescription("times this instance took the publisher lease (start, or a peer died or stopped)")); err != nil {
		return nil, err
	}
	if mt.reconciled, err = m.Int64Counter("churnwatch.alert.publisher.reconciled", metric.WithDescription("outbox entries found already on churnwatch.alerts.v1 when reconciling, and not published again")); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge("churnwatch.alert.publisher.leader", metric.WithDescription("1 while this instance holds the publisher lease"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if a.pub != nil && a.pub.leader.Load() {
				o.Observe(1)
			} else {
				o.Observe(0)
			}
			return nil
		})); err != nil {
		return nil, err
	}
	// Open alerts are counted in Redis in the same transaction as each
	// change, so every instance reports the same exact figure.
	if _, err = m.Int64ObservableGauge("churnwatch.alerts.open", metric.WithDescription("alerts not resolved, by severity and tier"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			counts, err := a.store.rdb.HGetAll(ctx, kOpenStats).Result()
			if err != nil {
				return nil // a scrape during a Redis outage shows no series rather than failing
			}
			for f, v := range counts {
				sev, tier, _ := strings.Cut(f, "|")
				n, _ := strconv.ParseInt(v, 10, 64)
				o.Observe(n, metric.WithAttributes(attribute.String("severity", strings.ToLower(sev)), attribute.String("tier", strings.ToLower(tier))))
			}
			return nil
		})); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge("churnwatch.consumer.lag", metric.WithDescription("records behind the partition's end"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			for _, g := range [][2]string{{a.cfg.SignalsGroup, a.cfg.Common.Topics.Signals}, {a.cfg.CustomersGroup, a.cfg.Common.Topics.Customers}} {
				lag, err := kafkax.GroupLag(ctx, a.base.Kafka, g[0], g[1])
				if err != nil {
					continue
				}
				for _, p := range lag {
					o.Observe(p.Lag, metric.WithAttributes(attribute.String("group", g[0]), attribute.String("topic", g[1]), attribute.String("partition", strconv.Itoa(p.Partition))))
				}
			}
			return nil
		})); err != nil {
		return nil, err
	}
	return &mt, nil
}

// recordChanges counts committed changes.
func (a *App) recordChanges(ctx context.Context, st *staged) {
	for _, sc := range st.changes {
		ch := sc.ch
		a.met.changes.Add(ctx, 1, metric.WithAttributes(attribute.String("change", lower(ch.Kind.String(), "ALERT_CHANGE_"))))
		switch ch.Kind {
		case cwv1.AlertChange_ALERT_CHANGE_ESCALATED:
			a.met.escalations.Add(ctx, 1, metric.WithAttributes(attribute.String("tier", lower(ch.Alert.GetTier().String(), "TIER_"))))
		case cwv1.AlertChange_ALERT_CHANGE_ACKNOWLEDGED:
			if c := ch.Alert.GetCreatedAt(); c != nil {
				a.met.ackTime.Record(ctx, ch.At.Sub(c.AsTime()).Seconds())
			}
		}
	}
}
