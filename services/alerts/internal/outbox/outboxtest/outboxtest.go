// Package outboxtest reads churnwatch.alerts.v1 back for tests and checks
// the publisher's guarantees on it: every alert version once, in order,
// on one partition, with its outbox id and CloudEvents headers.
package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox"
)

// TopicRecord is one record of churnwatch.alerts.v1 as the tests see it.
type TopicRecord struct {
	Partition int
	Offset    int64
	Key       string
	OutboxID  string
	Headers   map[string]string
	Value     []byte
	Update    *cwv1.AlertUpdate
}

// ReadTopic reads every record of topic, partition by partition.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]TopicRecord, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return nil, t.Error
			}
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	sort.Ints(parts)
	var out []TopicRecord
	for _, pt := range parts {
		offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(pt), kafka.LastOffsetOf(pt)}}})
		if err != nil {
			return nil, err
		}
		po := offs.Topics[topic][0]
		for off := po.FirstOffset; off < po.LastOffset; {
			res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: pt, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			if res.Error != nil {
				return nil, res.Error
			}
			n := 0
			for {
				r, err := res.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, err
				}
				if r.Offset < off {
					continue
				}
				n++
				off = r.Offset + 1
				tr := TopicRecord{Partition: pt, Offset: r.Offset, Update: &cwv1.AlertUpdate{}, Headers: map[string]string{}}
				k, _ := kafka.ReadAll(r.Key)
				v, _ := kafka.ReadAll(r.Value)
				tr.Key, tr.Value = string(k), v
				if err := proto.Unmarshal(v, tr.Update); err != nil {
					return nil, fmt.Errorf("partition %d offset %d: %w", pt, r.Offset, err)
				}
				for _, h := range r.Headers {
					tr.Headers[h.Key] = string(h.Value)
					if h.Key == outbox.Header {
						tr.OutboxID = string(h.Value)
					}
				}
				out = append(out, tr)
			}
			if n == 0 {
				return nil, fmt.Errorf("partition %d: no records at %d below %d", pt, off, po.LastOffset)
			}
		}
	}
	return out, nil
}

// CheckExactlyOnce reports what is wrong with recs given the number of
// versions each alert should have: every (alert, version) exactly once, an
// alert's records on one partition in version order, every record with its
// outbox id and its CloudEvents headers, no outbox id twice.
func CheckExactlyOnce(recs []TopicRecord, want map[string]int64) error {
	var errs []error
	type last struct {
		partition int
		version   int64
	}
	seen := map[string]*last{}
	ids := map[string]bool{}
	for _, r := range recs {
		a := r.Update.GetAlert()
		id, v := a.GetAlertId(), a.GetVersion()
		if r.OutboxID == "" {
			errs = append(errs, fmt.Errorf("%s v%d at %d/%d: no %s header", id, v, r.Partition, r.Offset, outbox.Header))
		} else if ids[r.OutboxID] {
			errs = append(errs, fmt.Errorf("outbox entry %s published twice", r.OutboxID))
		}
		ids[r.OutboxID] = true
		if r.Key != a.GetCustomerId() {
			errs = append(errs, fmt.Errorf("%s v%d keyed %q", id, v, r.Key))
		}
		if err := CheckCloudEvent(r); err != nil {
			errs = append(errs, err)
		}
		l := seen[id]
		if l == nil {
			l = &last{partition: r.Partition}
			seen[id] = l
		}
		switch {
		case l.partition != r.Partition:
			errs = append(errs, fmt.Errorf("%s on partitions %d and %d", id, l.partition, r.Partition))
		case v <= l.version:
			errs = append(errs, fmt.Errorf("%s v%d after v%d (duplicate or out of order)", id, v, l.version))
		case v != l.version+1:
			errs = append(errs, fmt.Errorf("%s v%d after v%d (gap)", id, v, l.version))
		}
		if v > l.version {
			l.version = v
		}
	}
	for id, n := range want {
		if got := seen[id]; got == nil || got.version != n {
			errs = append(errs, fmt.Errorf("%s: topic has up to version %v, want %d", id, got, n))
		}
	}
	for id := range seen {
		if _, ok := want[id]; !ok {
			errs = append(errs, fmt.Errorf("%s on the topic but not expected", id))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("… and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

// CheckCloudEvent reports what is wrong with r's CloudEvents Kafka binding
// headers (binary content mode).
func CheckCloudEvent(r TopicRecord) error {
	a := r.Update.GetAlert()
	want := map[string]string{
		"ce_specversion": "1.0",
		"ce_type":        "com.churnwatch.alert." + strings.ToLower(strings.TrimPrefix(r.Update.GetChange().String(), "ALERT_CHANGE_")),
		"ce_source":      "churnwatch/alerts",
		"ce_id":          fmt.Sprintf("%s.v%d", a.GetAlertId(), a.GetVersion()),
		"ce_subject":     a.GetCustomerId(),
		"content-type":   "application/protobuf; messageType=churnwatch.v1.AlertUpdate",
	}
	if r.Update.GetAt() != nil {
		want["ce_time"] = r.Update.GetAt().AsTime().UTC().Format(time.RFC3339Nano)
	}
	var errs []error
	for k, v := range want {
		if got := r.Headers[k]; got != v {
			errs = append(errs, fmt.Errorf("%s v%d at %d/%d: header %s = %q, want %q", a.GetAlertId(), a.GetVersion(), r.Partition, r.Offset, k, got, v))
		}
	}
	return errors.Join(errs...)
}
