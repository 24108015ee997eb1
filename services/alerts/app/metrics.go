package app

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// metrics are the alert service's instruments; names are agreed with
// deploy/ (docs/deployment.md).
// The domain packages register their own (lifecycle: changes,
// escalations, ack time, bad records; stream: subscribers, sends, cutoffs,
// e2e latency; outbox: receivers); these are the wiring's.
type metrics struct {
	takeovers  metric.Int64Counter
	reconciled metric.Int64Counter
	consumer   *kafkax.ConsumerMetrics
}

func newMetrics(a *App) (*metrics, error) {
	m := a.base.Tel.Meter
	var err error
	var mt metrics
	if mt.consumer, err = kafkax.NewConsumerMetrics(m); err != nil {
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
			if a.pub != nil && a.pub.Leader() {
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
			counts, err := a.store.OpenCounts(ctx)
			if err != nil {
				return nil // a scrape during a Redis outage shows no series rather than failing
			}
			for f, n := range counts {
				sev, tier, _ := strings.Cut(f, "|")
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
