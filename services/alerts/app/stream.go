package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// entry is one audience-stream entry.
type entry struct {
	id       string
	update   []byte // AlertUpdate without cursor
	notify   bool
	tp       string
	ingested int64 // ms; 0 unless the change is CREATED/SEVERITY_RAISED from a signal
	live     bool
}

func field(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func parseEntry(x redis.XMessage) entry {
	n := field(x.Values, "n")
	ing, _ := strconv.ParseInt(field(x.Values, "i"), 10, 64)
	return entry{id: x.ID, update: []byte(field(x.Values, "u")), notify: strings.HasPrefix(n, "1"), tp: field(x.Values, "tp"), ingested: ing}
}

// streamID is a parsed Redis stream entry id, for ordering.
type streamID struct{ ms, seq uint64 }

func parseID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (x streamID) less(y streamID) bool { return x.ms < y.ms || (x.ms == y.ms && x.seq < y.seq) }

func idLess(a, b string) bool {
	x, _ := parseID(a)
	y, _ := parseID(b)
	return x.less(y)
}

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
	if _, ok := parseID(parts[3]); !ok {
		return cursor{}, errors.New("cursor is not one this service handed out")
	}
	return cursor{kind: parts[1], aud: parts[2], id: parts[3]}, nil
}

// subscriber is one Subscribe stream's queue; the hub fills it, the
// stream's own goroutine sends from it.
type subscriber struct {
	aud     string
	q       chan entry
	cut     chan struct{}
	cutOnce sync.Once
}

// hub tails the all-stream (one blocking XREAD for the whole instance) and
// fans each entry out to the subscribers of its audiences. It never blocks
// on a subscriber: a full queue cuts that subscriber off.
type hub struct {
	rdb   redis.UniversalClient // own client: the blocking read holds a connection
	log   *slog.Logger
	onCut func()
	mu    sync.Mutex
	pos   string // last entry id dispatched
	subs  map[*subscriber]struct{}
	ready chan struct{}
}

func newHub(log *slog.Logger, cfg config.Common) (*hub, error) {
	rdb, err := redisx.New(cfg)
	if err != nil {
		return nil, err
	}
	return &hub{rdb: rdb, log: log, subs: map[*subscriber]struct{}{}, ready: make(chan struct{})}, nil
}

func (h *hub) close() { _ = h.rdb.Close() }

func (h *hub) run(ctx context.Context) error {
	// Start after the newest entry: earlier ones are served by replay.
	err := redisx.Retry(ctx, func(err error) { h.log.Warn("fan-out: redis", "err", err) }, func(ctx context.Context) error {
		last, err := h.rdb.XRevRangeN(ctx, kStream(audAll), "+", "-", 1).Result()
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.pos = "0-0"
		if len(last) > 0 {
			h.pos = last[0].ID
		}
		h.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil // shutting down
	}
	close(h.ready)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		h.mu.Lock()
		pos := h.pos
		h.mu.Unlock()
		res, err := h.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{kStream(audAll), pos}, Count: 512, Block: 2 * time.Second}).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) || ctx.Err() != nil {
				continue
			}
			h.log.Warn("fan-out read failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, s := range res {
			for _, x := range s.Messages {
				h.dispatch(x)
			}
		}
	}
	return nil
}

func (h *hub) dispatch(x redis.XMessage) {
	e := parseEntry(x)
	e.live = true
	flags := field(x.Values, "n")
	auds := strings.Split(field(x.Values, "a"), ",")
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		var idx int
		if sub.aud == audAll {
			idx = 0
		} else {
			idx = -1
			for i, a := range auds {
				if a == sub.aud {
					idx = i + 1
				}
			}
			if idx < 0 {
				continue
			}
		}
		se := e
		se.notify = idx < len(flags) && flags[idx] == '1'
		select {
		case sub.q <- se:
		default:
			sub.cutOnce.Do(func() { close(sub.cut) })
			delete(h.subs, sub)
			if h.onCut != nil {
				h.onCut()
			}
		}
	}
	h.pos = x.ID
}

// subscribe registers a queue and returns the id of the last entry the hub
// dispatched: everything after it arrives on the queue, everything up to it
// is the caller's to replay from Redis.
func (h *hub) subscribe(ctx context.Context, aud string, size int) (*subscriber, string, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	sub := &subscriber{aud: aud, q: make(chan entry, size), cut: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = struct{}{}
	return sub, h.pos, nil
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// streamCount caps the open streams of each principal.
type streamCount struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts a new stream of key unless max are open already.
func (c *streamCount) acquire(key string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[key] >= max {
		return false
	}
	c.n[key]++
	return true
}

func (c *streamCount) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
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

// Subscribe streams the caller's updates: with a cursor, everything after
// it, else the open alerts first; then live. One goroutine (this one) sends.
func (s *server) Subscribe(req *cwv1.SubscribeRequest, stream grpc.ServerStreamingServer[cwv1.SubscribeResponse]) error {
	a := s.app
	p, err := principal(stream.Context())
	if err != nil {
		return err
	}
	aud, ok := audienceOf(p)
	if !ok {
		s.denied(stream.Context(), p, "")
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
	if !a.streams.acquire(key, a.cfg.StreamMaxPerPrincipal) {
		auth.LogDenied(stream.Context(), a.base.Log, "subscribe refused", p, cwv1.AlertService_Subscribe_FullMethodName, "too many open streams", "")
		return errTooMany(a.cfg.StreamMaxPerPrincipal)
	}
	defer a.streams.release(key)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(a.base.StreamsContext(), cancel)
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
	a.openStreams.Add(1)
	go func() {
		defer a.openStreams.Add(-1)
		for m := range sendq {
			sent <- stream.Send(m)
		}
	}()
	defer close(sendq)

	sub, pos, err := a.hub.subscribe(ctx, aud, a.cfg.SubscriberQueue)
	if err != nil {
		return s.streamEnd(ctx, err)
	}
	defer a.hub.unsubscribe(sub)
	a.met.subscribers.Add(ctx, 1)
	defer a.met.subscribers.Add(context.WithoutCancel(ctx), -1)

	snap := cursor{kind: "s", aud: aud, id: pos}
	lastSent := "0-0"
	send := func(e entry, c cursor) error {
		select {
		case <-sub.cut:
			return errCutOff
		default:
		}
		u := &cwv1.AlertUpdate{}
		if err := proto.Unmarshal(e.update, u); err != nil {
			return status.Error(codes.Internal, "corrupt stream entry")
		}
		u.Cursor, u.Notify = c.String(), e.notify
		sctx := ctx
		if e.tp != "" {
			sctx = a.base.Tel.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": e.tp})
		}
		_, span := a.base.Tel.Tracer.Start(sctx, "alert.deliver", trace.WithSpanKind(trace.SpanKindProducer))
		err := s.sendBounded(ctx, sendq, sent, &cwv1.SubscribeResponse{Update: u}, sub.cut, expired)
		span.End()
		if err != nil {
			if errors.Is(err, errStalled) {
				a.base.Log.WarnContext(ctx, "subscriber stopped reading", "principal", p.Subject, "role", string(p.Role), "send_timeout", a.cfg.StreamSendTimeout.String())
			}
			return err
		}
		a.met.sends.Add(ctx, 1)
		if e.live && e.ingested > 0 {
			a.met.e2e.Record(ctx, time.Since(time.UnixMilli(e.ingested)).Seconds())
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
			return send(entry{update: b}, snap)
		}); err != nil {
			return s.streamEnd(ctx, err)
		}
	}
	for {
		select {
		case e := <-sub.q:
			if !idLess(lastSent, e.id) {
				continue // already replayed
			}
			if err := send(e, cursor{kind: "l", aud: aud, id: e.id}); err != nil {
				return s.streamEnd(ctx, err)
			}
		case <-sub.cut:
			a.base.Log.Warn("subscriber cut off", "principal", p.Subject, "queue", a.cfg.SubscriberQueue)
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
func (s *server) sendBounded(ctx context.Context, sendq chan<- *cwv1.SubscribeResponse, sent <-chan error, m *cwv1.SubscribeResponse, cut <-chan struct{}, expired <-chan time.Time) error {
	select {
	case sendq <- m:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTimer(s.app.cfg.StreamSendTimeout)
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
func (s *server) streamEnd(ctx context.Context, err error) error {
	for _, e := range []error{errCutOff, errStalled, errExpired} {
		if errors.Is(err, e) {
			return e
		}
	}
	if s.app.base.StreamsContext().Err() != nil {
		return errShutdown
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return internal(err)
}

// replay sends the audience stream's entries after from up to pos. It
// reports a gap when the stream was trimmed past the cursor (the entry the
// cursor names is gone while later ones remain): the caller then also gets
// a snapshot of the open alerts.
func (s *server) replay(ctx context.Context, aud, from, pos string, send func(entry, cursor) error) (bool, error) {
	rdb := s.app.store.rdb
	gap := false
	first, err := rdb.XRangeN(ctx, kStream(aud), "-", "+", 1).Result()
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	if len(first) > 0 && idLess(from, first[0].ID) && from != "0-0" {
		gap = true
	}
	if !idLess(from, pos) {
		return gap, nil
	}
	start := "(" + from
	for {
		msgs, err := rdb.XRangeN(ctx, kStream(aud), start, pos, 256).Result()
		if err != nil {
			return gap, fmt.Errorf("replay: %w", err)
		}
		for _, x := range msgs {
			if err := send(parseEntry(x), cursor{kind: "l", aud: aud, id: x.ID}); err != nil {
				return gap, err
			}
		}
		if len(msgs) < 256 {
			return gap, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// snapshot sends every open alert visible to p.
func (s *server) snapshot(ctx context.Context, p auth.Principal, aud string, send func(*cwv1.Alert) error) error {
	rdb := s.app.store.rdb
	key := kIndex(aud)
	if aud == audAll {
		key = kOpenIndex
	}
	start := "+"
	for {
		members, err := rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: start, Stop: "-", ByLex: true, Rev: true, Count: 256}).Result()
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		ids := make([]string, len(members))
		for i, m := range members {
			_, ids[i], _ = strings.Cut(m, "|")
		}
		alerts, err := s.app.store.getAlerts(ctx, ids)
		if err != nil {
			return err
		}
		for _, al := range alerts {
			if alerting.Open(al) && visible(p, al) {
				if err := send(al); err != nil {
					return err
				}
			}
		}
		if len(members) < 256 {
			return nil
		}
		start = "(" + members[len(members)-1]
	}
}

// updateCustomer reads the customer id of a marshalled AlertUpdate.
func updateCustomer(b []byte) (string, error) {
	u := &cwv1.AlertUpdate{}
	if err := proto.Unmarshal(b, u); err != nil {
		return "", err
	}
	return u.GetAlert().GetCustomerId(), nil
}
