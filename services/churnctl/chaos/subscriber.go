package chaos

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// subscriber keeps one AlertService.Subscribe stream open for the whole
// run (an ops principal: it sees every alert), reconnecting with its last
// cursor to the other alerts instance whenever the stream breaks, and
// checks that every alert's versions arrive in order without a gap.
type subscriber struct {
	clients []cwv1.AlertServiceClient
	logf    func(string, ...any)

	mu          sync.Mutex
	cursor      string
	last        map[string]int64 // alert id → highest version seen
	gaps        int              // versions skipped on the stream
	redelivered int              // updates at or below a version already seen
	reconnects  int
	snapshots   int
	updates     int
}

func newSubscriber(clients []cwv1.AlertServiceClient, logf func(string, ...any)) *subscriber {
	return &subscriber{clients: clients, logf: logf, last: map[string]int64{}}
}

// run streams until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		c := s.clients[i%len(s.clients)]
		s.mu.Lock()
		cur := s.cursor
		s.mu.Unlock()
		err := s.stream(ctx, c, cur)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
		if code := status.Code(err); code == codes.InvalidArgument || code == codes.PermissionDenied {
			s.logf("subscriber: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *subscriber) stream(ctx context.Context, c cwv1.AlertServiceClient, cursor string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Subscribe(sctx, &cwv1.SubscribeRequest{Cursor: cursor})
	if err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.see(resp.GetUpdate())
	}
}

func (s *subscriber) see(u *cwv1.AlertUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, v := u.GetAlert().GetAlertId(), u.GetAlert().GetVersion()
	hadCursor := s.cursor != ""
	if c := u.GetCursor(); c != "" {
		s.cursor = c
	}
	last := s.last[id]
	if u.GetChange() == cwv1.AlertChange_ALERT_CHANGE_SNAPSHOT {
		s.snapshots++
		// A snapshot is the alert as it is now. Before the stream ever
		// handed out a cursor it is the starting point; after, the server
		// could not replay from the cursor, and what the snapshot jumps
		// over was missed.
		if v > last {
			if hadCursor && v > last+1 {
				s.gaps += int(v - last - 1)
			}
			s.last[id] = v
		}
		return
	}
	s.updates++
	switch {
	case v <= last:
		s.redelivered++ // at-least-once: allowed, deduped by (alert id, version)
	case v == last+1:
		s.last[id] = v
	default:
		s.gaps += int(v - last - 1)
		s.logf("subscriber: alert %s jumped from version %d to %d", id, last, v)
		s.last[id] = v
	}
}

// settle waits until the stream has shown every alert at its live version
// (or timeout), then counts what it never showed as gaps.
func (s *subscriber) settle(live []*cwv1.Alert, timeout time.Duration) (gaps int) {
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		s.mu.Lock()
		for _, a := range live {
			if l := s.last[a.GetAlertId()]; l < a.GetVersion() {
				missing += int(a.GetVersion() - l)
			}
		}
		gaps := s.gaps
		s.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			if missing > 0 {
				s.logf("subscriber: %d alert versions never arrived on the stream", missing)
			}
			return gaps + missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}
