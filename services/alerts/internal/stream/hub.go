package stream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// entry is one stream entry as a subscriber gets it.
type entry struct {
	store.Entry
	live bool
}

// subscriber is one Subscribe stream's queue; the hub fills it, the
// stream's own goroutine sends from it.
type subscriber struct {
	aud     string
	q       chan entry
	cut     chan struct{}
	cutOnce sync.Once
}

// hub tails the outbox (one blocking XREAD for the whole instance) and
// fans each entry out to the subscribers of its audiences. It never blocks
// on a subscriber: a full queue cuts that subscriber off.
type hub struct {
	store *store.Store
	log   *slog.Logger
	onCut func()
	mu    sync.Mutex
	pos   string // last entry id dispatched
	subs  map[*subscriber]struct{}
	ready chan struct{}
}

func newHub(st *store.Store, log *slog.Logger, onCut func()) *hub {
	return &hub{store: st, log: log, onCut: onCut, subs: map[*subscriber]struct{}{}, ready: make(chan struct{})}
}

func (h *hub) run(ctx context.Context) error {
	// Start after the newest entry: earlier ones are served by replay.
	err := redisx.Retry(ctx, func(err error) { h.log.Warn("fan-out: redis", "err", err) }, func(ctx context.Context) error {
		end, err := h.store.OutboxEnd(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.pos = end
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
		entries, err := h.store.ReadOutbox(ctx, pos, 512, 2*time.Second)
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			h.log.Warn("fan-out read failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, e := range entries {
			h.dispatch(e)
		}
	}
	return nil
}

func (h *hub) dispatch(e store.Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		notify, ok := e.For(sub.aud)
		if !ok {
			continue
		}
		se := entry{Entry: e, live: true}
		se.Notify = notify
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
	h.pos = e.ID
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

func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
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
