// Package stream owns Subscribe: the fan-out hub that tails the outbox
// once per instance, the cursors handed to clients (an audience stream and
// an entry id, or a snapshot), resume by replay from the audience stream,
// the open-alert snapshot, and the limits that keep one slow or stalled
// client from holding anything (bounded queue, bounded Send, streams per
// principal, token expiry).
package stream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/telemetry"
)

// Config is what a Service needs besides the store.
type Config struct {
	// Queue bounds each subscriber's queue; a full queue cuts it off.
	Queue int
	// SendTimeout bounds one Send: a client that stops reading has its
	// stream, goroutines and queue released after it.
	SendTimeout time.Duration
	// MaxPerPrincipal caps the open streams of one principal.
	MaxPerPrincipal int
	// Shutdown ends when the service begins to shut down: open streams end
	// with UNAVAILABLE.
	Shutdown context.Context
	Log      *slog.Logger
	Tel      *telemetry.Telemetry
	// Denied logs a refused access (no PII).
	Denied func(ctx context.Context, p auth.Principal, alertID string)
}

// Service serves Subscribe streams.
type Service struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	hub     *hub
	met     metrics
	streams streamCount
	open    atomic.Int64 // streams whose sender goroutine still runs
}

type metrics struct {
	e2e         metric.Float64Histogram
	sends       metric.Int64Counter
	cutoffs     metric.Int64Counter
	subscribers metric.Int64UpDownCounter
}

// New prepares the service; Run is its fan-out worker.
func New(st *store.Store, cfg Config) (*Service, error) {
	s := &Service{cfg: cfg, store: st, log: cfg.Log}
	m := cfg.Tel.Meter
	var err error
	if s.met.e2e, err = m.Float64Histogram("churnwatch.e2e.latency", metric.WithUnit("s"), metric.WithDescription("event accepted → alert sent on a subscriber stream"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if s.met.sends, err = m.Int64Counter("churnwatch.alert.stream.sends", metric.WithDescription("alert updates sent on Subscribe streams")); err != nil {
		return nil, err
	}
	if s.met.cutoffs, err = m.Int64Counter("churnwatch.alert.stream.cutoffs", metric.WithDescription("subscribers cut off for falling behind")); err != nil {
		return nil, err
	}
	if s.met.subscribers, err = m.Int64UpDownCounter("churnwatch.alert.subscribers", metric.WithDescription("open Subscribe streams")); err != nil {
		return nil, err
	}
	s.hub = newHub(st, cfg.Log, func() { s.met.cutoffs.Add(context.Background(), 1) })
	return s, nil
}

// Run is the fan-out worker: it tails the outbox until ctx ends.
func (s *Service) Run(ctx context.Context) error { return s.hub.run(ctx) }

// OpenStreams is the number of streams whose sender goroutine still runs.
func (s *Service) OpenStreams() int64 { return s.open.Load() }

// Subscribers is the number of subscriber queues the fan-out holds.
func (s *Service) Subscribers() int { return s.hub.subscribers() }

// cursor is what a Subscribe client passes back: the audience stream and
// the entry id it last received. A snapshot cursor (kind "s") was handed out
// with the open-alert snapshot: resuming from it redoes the snapshot.
type cursor struct {
	kind string // "l" live/replayed entry, "s" snapshot
	aud  string
	id   string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + c.kind + "|" + c.aud + "|" + c.id))
}

func parseCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, errors.New("cursor is not one this service handed out")
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 4 || parts[0] != "v1" || (parts[1] != "l" && parts[1] != "s") {
		return cursor{}, errors.New("cursor is not one this service handed out")
	}
	if !store.ValidID(parts[3]) {
		return cursor{}, errors.New("cursor is not one this service handed out")
	}
	return cursor{kind: parts[1], aud: parts[2], id: parts[3]}, nil
}

var (
	errCutOff  = status.Error(codes.ResourceExhausted, "subscriber fell behind; resume with your last cursor")
	errStalled = status.Error(codes.ResourceExhausted, "subscriber stopped reading; resume with your last cursor")
	errTooMany = func(max int) error {
		return status.Errorf(codes.ResourceExhausted, "too many open Subscribe streams for this principal (at most %d); close one first", max)
	}
	errShutdown  = status.Error(codes.Unavailable, "alert service is shutting down; resume with your last cursor")
	errExpired   = status.Error(codes.Unauthenticated, "token expired; resume with a fresh token and your last cursor")
	errBadCursor = func(msg string) error { return status.Error(codes.InvalidArgument, msg) }
)

// Subscribe streams p's updates: with a cursor, everything after it, else
// the open alerts first; then live. One goroutine (this one) sends. Errors
// that are not a gRPC status are the store's (the caller maps them).
func (s *Service) Subscribe(req *cwv1.SubscribeRequest, stream grpc.ServerStreamingServer[cwv1.SubscribeResponse], p auth.Principal) error {
	var err error
	aud, ok := alerting.AudienceOf(p)
	if !ok {
		s.cfg.Denied(stream.Context(), p, "")
		return status.Error(codes.PermissionDenied, "no alerts are routed to this principal")
	}
	var from cursor
	if req.GetCursor() != "" {
		if from, err = parseCursor(req.GetCursor()); err != nil {
			return errBadCursor(err.Error())
		}
		if from.aud != aud {
			return errBadCursor("cursor belongs to another audience; subscribe without one")
		}
	}
	key := string(p.Role) + "|" + p.Subject
	if !s.streams.acquire(key, s.cfg.MaxPerPrincipal) {
		auth.LogDenied(stream.Context(), s.log, "subscribe refused", p, cwv1.AlertService_Subscribe_FullMethodName, "too many open streams", "")
		return errTooMany(s.cfg.MaxPerPrincipal)
	}
	defer s.streams.release(key)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(s.cfg.Shutdown, cancel)
	defer stop()
	var expired <-chan time.Time
	if !p.Expires.IsZero() {
		t := time.NewTimer(time.Until(p.Expires))
		defer t.Stop()
		expired = t.C
	}

	// One sender goroutine does every Send; this goroutine hands it each
	// message and waits at most StreamSendTimeout for it to return. A
	// client that stops reading blocks Send on flow control forever; giving
	// up and returning ends the RPC, which cancels the stream and so
	// unblocks the Send: stream, goroutines and queue are then released.
	sendq := make(chan *cwv1.SubscribeResponse)
	sent := make(chan error, 1)
	s.open.Add(1)
	go func() {
		defer s.open.Add(-1)
		for m := range sendq {
			sent <- stream.Send(m)
		}
	}()
	defer close(sendq)

	sub, pos, err := s.hub.subscribe(ctx, aud, s.cfg.Queue)
	if err != nil {
		return s.streamEnd(ctx, err)
	}
	defer s.hub.unsubscribe(sub)
	s.met.subscribers.Add(ctx, 1)
	defer s.met.subscribers.Add(context.WithoutCancel(ctx), -1)

	snap := cursor{kind: "s", aud: aud, id: pos}
	lastSent := "0-0"
	send := func(e entry, c cursor) error {
		select {
		case <-sub.cut:
			return errCutOff
		default:
		}
		u := &cwv1.AlertUpdate{}
		if err := proto.Unmarshal(e.Update, u); err != nil {
			return status.Error(codes.Internal, "corrupt stream entry")
		}
		u.Cursor, u.Notify = c.String(), e.Notify
		sctx := ctx
		if e.Traceparent != "" {
			sctx = s.cfg.Tel.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": e.Traceparent})
		}
		_, span := s.cfg.Tel.Tracer.Start(sctx, "alert.deliver", trace.WithSpanKind(trace.SpanKindProducer))
		err := s.sendBounded(ctx, sendq, sent, &cwv1.SubscribeResponse{Update: u}, sub.cut, expired)
		span.End()
		if err != nil {
			if errors.Is(err, errStalled) {
				s.log.WarnContext(ctx, "subscriber stopped reading", "principal", p.Subject, "role", string(p.Role), "send_timeout", s.cfg.SendTimeout.String())
			}
			return err
		}
		s.met.sends.Add(ctx, 1)
		if e.live && e.IngestedMs > 0 {
			s.met.e2e.Record(ctx, time.Since(time.UnixMilli(e.IngestedMs)).Seconds())
		}
		if c.kind == "l" {
			lastSent = c.id
		}
		return nil
	}

	needSnapshot := req.GetCursor() == "" || from.kind == "s"
	if from.id != "" {
		gap, err := s.replay(ctx, aud, from.id, pos, send)
		if err != nil {
			return s.streamEnd(ctx, err)
		}
		needSnapshot = needSnapshot || gap
	}
	if needSnapshot {
		if err := s.snapshot(ctx, p, aud, func(al *cwv1.Alert) error {
			b, err := proto.Marshal(&cwv1.AlertUpdate{Change: cwv1.AlertChange_ALERT_CHANGE_SNAPSHOT, Alert: al, Actor: alerting.ActorSystem, At: al.GetUpdatedAt()})
			if err != nil {
				return err
			}
			return send(entry{Entry: store.Entry{Update: b}}, snap)
		}); err != nil {
			return s.streamEnd(ctx, err)
		}
	}
	for {
		select {
		case e := <-sub.q:
			if !store.IDLess(lastSent, e.ID) {
				continue // already replayed
			}
			if err := send(e, cursor{kind: "l", aud: aud, id: e.ID}); err != nil {
				return s.streamEnd(ctx, err)
			}
		case <-sub.cut:
			s.log.Warn("subscriber cut off", "principal", p.Subject, "queue", s.cfg.Queue)
			return errCutOff
		case <-expired:
			return errExpired
		case <-ctx.Done():
			return s.streamEnd(ctx, ctx.Err())
		}
	}
}

// sendBounded hands m to the sender goroutine and waits for the Send to
// return, at most StreamSendTimeout, or until the hub cuts the subscriber
// off, the token expires or the stream ends.
func (s *Service) sendBounded(ctx context.Context, sendq chan<- *cwv1.SubscribeResponse, sent <-chan error, m *cwv1.SubscribeResponse, cut <-chan struct{}, expired <-chan time.Time) error {
	select {
	case sendq <- m:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTimer(s.cfg.SendTimeout)
	defer t.Stop()
	select {
	case err := <-sent:
		return err
	case <-t.C:
		return errStalled
	case <-cut:
		return errCutOff
	case <-expired:
		return errExpired
	case <-ctx.Done():
		return ctx.Err()
	}
}

// streamEnd maps why a stream stopped to its status.
func (s *Service) streamEnd(ctx context.Context, err error) error {
	for _, e := range []error{errCutOff, errStalled, errExpired} {
		if errors.Is(err, e) {
			return e
		}
	}
	if s.cfg.Shutdown.Err() != nil {
		return errShutdown
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return err
}

// replay sends the audience stream's entries after from up to pos. It
// reports a gap when the stream was trimmed past the cursor: the caller
// then also gets a snapshot of the open alerts.
func (s *Service) replay(ctx context.Context, aud, from, pos string, send func(entry, cursor) error) (bool, error) {
	return s.store.Replay(ctx, aud, from, pos, func(e store.Entry) error {
		return send(entry{Entry: e}, cursor{kind: "l", aud: aud, id: e.ID})
	})
}

// snapshot sends every open alert visible to p.
func (s *Service) snapshot(ctx context.Context, p auth.Principal, aud string, send func(*cwv1.Alert) error) error {
	_, _, err := s.store.ScanIndex(ctx, store.SnapshotIndex(aud), "", 256, 0, func(al *cwv1.Alert) (bool, error) {
		if alerting.Open(al) && alerting.Visible(p, al) {
			return true, send(al)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}
