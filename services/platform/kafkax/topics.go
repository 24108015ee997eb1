package kafkax

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	Compacted  bool
	// Retention is retention.ms when set (the broker's default otherwise).
	Retention time.Duration
}

// Specs are churnwatch's topics (SPEC §1) with partitions each: customers
// compacted (the latest profile per customer is the table), the rest
// deleted by retention.
func Specs(names config.Topics, partitions int) []TopicSpec {
	return []TopicSpec{
		{Name: names.Events, Partitions: partitions},
		{Name: names.Customers, Partitions: partitions, Compacted: true},
		{Name: names.Signals, Partitions: partitions},
		{Name: names.Alerts, Partitions: partitions},
		// 30 days to inspect and replay dead letters (docs/deployment.md).
		{Name: names.DLQ, Partitions: partitions, Retention: 30 * 24 * time.Hour},
	}
}

// TopicPolicy is how EnsureTopics creates topics. Zero values pick the
// production defaults for the cluster at hand (SPEC §1): replication
// min(3, brokers), min.insync.replicas 2 from replication 3 on, else 1.
type TopicPolicy struct {
	Replication int
	MinInsync   int
}

// TopicReport is what EnsureTopics found or made for one topic.
type TopicReport struct {
	Name        string `json:"name"`
	Created     bool   `json:"created"`
	Partitions  int    `json:"partitions"`
	Replication int    `json:"replication"`
	MinInsync   int    `json:"minInsync,omitempty"`
	Compacted   bool   `json:"compacted"`
	// Note says how an existing topic differs from what was asked for.
	Note string `json:"note,omitempty"`
}

// NotEnoughBrokersError is returned when the replication asked for exceeds
// the brokers in the cluster.
type NotEnoughBrokersError struct{ Replication, Brokers int }

func (e *NotEnoughBrokersError) Error() string {
	return fmt.Sprintf("replication %d needs %d brokers; the cluster has %d", e.Replication, e.Replication, e.Brokers)
}

// Resolve fills in the zero fields of p for a cluster of n brokers.
func (p TopicPolicy) Resolve(n int) (TopicPolicy, error) {
	if p.Replication <= 0 {
		p.Replication = min(3, n)
	}
	if p.Replication > n {
		return p, &NotEnoughBrokersError{Replication: p.Replication, Brokers: n}
	}
	if p.MinInsync <= 0 {
		p.MinInsync = 1
		if p.Replication >= 3 {
			p.MinInsync = 2
		}
	}
	if p.MinInsync > p.Replication {
		return p, fmt.Errorf("min.insync.replicas %d exceeds replication %d: every write would fail", p.MinInsync, p.Replication)
	}
	return p, nil
}

// EnsureTopics creates the topics that do not exist yet (replication and
// min.insync.replicas from policy, compaction where asked) and reports, per
// topic, what it made or what was there already. Existing topics are left as
// they are. The requests negotiate their versions, so this works on Kafka
// 3.x and 4.x and on the embedded broker.
func EnsureTopics(ctx context.Context, c Cluster, policy TopicPolicy, topics ...TopicSpec) ([]TopicReport, error) {
	brokers := c.Brokers
	if len(brokers) == 0 {
		return nil, errors.New("no brokers given (set CHURNWATCH_KAFKA_BROKERS)")
	}
	cl := c.Client(15 * time.Second)
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		names = append(names, t.Name)
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("metadata from %v: %w", brokers, err)
	}
	policy, err = policy.Resolve(len(md.Brokers))
	if err != nil {
		return nil, err
	}
	existing := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			existing[t.Name] = t
		}
	}
	var create []kafka.TopicConfig
	for _, t := range topics {
		if _, ok := existing[t.Name]; ok {
			continue
		}
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: policy.Replication,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(policy.MinInsync)}}}
		if t.Compacted {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
		}
		if t.Retention > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(t.Retention.Milliseconds(), 10)})
		}
		create = append(create, tc)
	}
	made := map[string]bool{}
	if len(create) > 0 {
		res, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
		}
		var errs []error
		for _, tc := range create {
			switch err := res.Errors[tc.Topic]; {
			case err == nil:
				made[tc.Topic] = true
			case errors.Is(err, kafka.TopicAlreadyExists):
				// Created concurrently by another instance: reported as existing.
			default:
				errs = append(errs, fmt.Errorf("create %s: %w", tc.Topic, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	configs := topicConfigs(ctx, cl, names)
	out := make([]TopicReport, 0, len(topics))
	for _, t := range topics {
		r := TopicReport{Name: t.Name, Created: made[t.Name]}
		cfg := configs[t.Name]
		r.MinInsync, _ = strconv.Atoi(cfg["min.insync.replicas"])
		r.Compacted = cfg["cleanup.policy"] == "compact" || (r.Created && t.Compacted)
		if r.Created {
			r.Partitions, r.Replication = t.Partitions, policy.Replication
			if r.MinInsync == 0 {
				r.MinInsync = policy.MinInsync
			}
		} else {
			et := existing[t.Name]
			if et.Name == "" {
				// Lost a creation race: describe what the winner made.
				if m, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{t.Name}}); err == nil && len(m.Topics) == 1 {
					et = m.Topics[0]
				}
			}
			r.Partitions = len(et.Partitions)
			if len(et.Partitions) > 0 {
				r.Replication = len(et.Partitions[0].Replicas)
			}
			r.Note = driftNote(t, policy, r)
		}
		out = append(out, r)
	}
	return out, nil
}

// driftNote says how an existing topic differs from what would be created.
func driftNote(want TopicSpec, p TopicPolicy, got TopicReport) string {
	var d []string
	if got.Partitions < want.Partitions {
		d = append(d, fmt.Sprintf("%d partitions, fewer than %d", got.Partitions, want.Partitions))
	}
	if got.Replication < p.Replication {
		d = append(d, fmt.Sprintf("replication %d, below %d", got.Replication, p.Replication))
	}
	if got.MinInsync != 0 && got.MinInsync < p.MinInsync {
		d = append(d, fmt.Sprintf("min.insync.replicas %d, below %d", got.MinInsync, p.MinInsync))
	}
	if want.Compacted && !got.Compacted {
		d = append(d, "not compacted")
	}
	if len(d) == 0 {
		return ""
	}
	sort.Strings(d)
	return fmt.Sprintf("existing topic differs: %v (left as it is)", d)
}

// topicConfigs reads cleanup.policy and min.insync.replicas of each topic.
// A broker that cannot describe configs (the embedded one may not) leaves
// the map empty rather than failing topic creation.
func topicConfigs(ctx context.Context, cl *kafka.Client, names []string) map[string]map[string]string {
	req := &kafka.DescribeConfigsRequest{}
	for _, n := range names {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: n, ConfigNames: []string{"cleanup.policy", "min.insync.replicas"}})
	}
	out := map[string]map[string]string{}
	res, err := cl.DescribeConfigs(ctx, req)
	if err != nil {
		return out
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			continue
		}
		m := map[string]string{}
		for _, e := range r.ConfigEntries {
			m[e.ConfigName] = e.ConfigValue
		}
		out[r.ResourceName] = m
	}
	return out
}
