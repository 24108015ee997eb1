package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// outcome is the definite result of one event: what the caller was told.
type outcome uint8

const (
	pending outcome = iota
	accepted
	rejected
	late
)

// feeder is the core-banking client: ordered PublishEvents calls,
// round-robin over the ingesters, each batch retried (to the next ingester)
// until every record of it has a definite result.
type feeder struct {
	ingesters []cwv1.IngestServiceClient
	next      int
	// results per event id; an id is counted once whatever the retries.
	results map[string]outcome
	reasons map[string]string // first rejection or late reason per id
	calls   int
	retries int
	logf    func(string, ...any)
}

// retryable reports whether a call error leaves the batch's fate unknown
// and worth sending again: the ingester was killed, is starting, shedding
// load, or its Redis / Kafka is down.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Canceled, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// inFlight marks a record another request (often one cut short by a kill)
// still holds a claim on: no definite result yet.
func inFlight(r *cwv1.RecordResult) bool {
	return r.GetStatus() == cwv1.RecordStatus_RECORD_STATUS_REJECTED && strings.Contains(r.GetReason(), "publishing this eventId right now")
}

// isLate recognises the per-record `late` result (SPEC §2) by name, so the
// harness builds before and after that status exists in the proto.
func isLate(s cwv1.RecordStatus) bool {
	return strings.Contains(s.String(), "LATE")
}

// publish sends one batch until every record has a definite result. before
// is called before each attempt with whether it is a retry.
func (f *feeder) publish(ctx context.Context, batch []*cwv1.IncomingEvent, before func()) error {
	todo := batch
	retried := false
	backoff := 50 * time.Millisecond
	giveUp := time.Now().Add(5 * time.Minute)
	for len(todo) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(giveUp) {
			return fmt.Errorf("publish: %d records of a batch still without a definite result after 5 minutes", len(todo))
		}
		if before != nil {
			before()
		}
		ing := f.ingesters[f.next%len(f.ingesters)]
		f.next++
		f.calls++
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := ing.PublishEvents(cctx, &cwv1.PublishEventsRequest{Events: todo})
		cancel()
		if err != nil {
			if !retryable(err) || ctx.Err() != nil {
				return fmt.Errorf("publish: %w", err)
			}
			f.retries++
			retried = true
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		got := make([]bool, len(todo))
		for _, r := range resp.GetResults() {
			i := int(r.GetIndex())
			if i < 0 || i >= len(todo) || todo[i].GetEventId() != r.GetId() {
				return fmt.Errorf("publish: result %d (%s) does not match the request", i, r.GetId())
			}
			id := r.GetId()
			switch st := r.GetStatus(); {
			case st == cwv1.RecordStatus_RECORD_STATUS_ACCEPTED:
				f.set(id, accepted, "")
			case st == cwv1.RecordStatus_RECORD_STATUS_DUPLICATE:
				// Only the harness sends these ids: a duplicate means an
				// earlier try of this batch landed.
				if !retried {
					f.logf("event %s reported duplicate on its first try", id)
				}
				f.set(id, accepted, "")
			case inFlight(r):
				continue
			case isLate(st):
				f.set(id, late, r.GetReason())
			case st == cwv1.RecordStatus_RECORD_STATUS_REJECTED:
				f.set(id, rejected, r.GetReason())
			default:
				continue
			}
			got[i] = true
		}
		var rest []*cwv1.IncomingEvent
		for i, ev := range todo {
			if !got[i] {
				rest = append(rest, ev)
			}
		}
		if len(rest) > 0 {
			f.retries++
			retried = true
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		todo = rest
	}
	return nil
}

func (f *feeder) set(id string, o outcome, reason string) {
	if f.results[id] != pending {
		return // the first definite result stands
	}
	f.results[id] = o
	if reason != "" {
		f.reasons[id] = reason
	}
}

func (f *feeder) count(o outcome) int {
	n := 0
	for _, v := range f.results {
		if v == o {
			n++
		}
	}
	return n
}
