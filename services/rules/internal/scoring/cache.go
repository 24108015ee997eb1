package scoring

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"sync/atomic"

	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// StateCache keeps the decoded engine states this instance last wrote, so
// that a customer seen again in a later batch is neither read from Redis
// whole nor decoded: the batch load reads only the stamp stored beside the
// state (a few bytes), and the cached state is used only when that stamp is
// the one this instance wrote. Anything else — another instance scored the
// customer after a rebalance, Redis lost writes, an operator changed the key
// — shows as a different stamp, and the state is read from Redis as before.
//
// Entries hold states that a batch mutates in place; a batch that fails
// after scoring must call Reset (Consumer does), since its states may then
// be ahead of Redis. A StateCache belongs to one Consumer: it is not safe
// for concurrent use. At most Max customers are kept, least recently used
// first out.
type StateCache struct {
	max     int
	entries map[string]*cacheEntry
	ring    cacheEntry // sentinel: ring.next is the most recently used

	// Read by metrics from other goroutines.
	hits, stale, misses, size atomic.Int64
}

type cacheEntry struct {
	id    string
	stamp string
	env   store.Envelope // State not kept: the decoded state is
	state *engine.State

	prev, next *cacheEntry
}

// NewStateCache returns a cache of at most max customers; max ≤ 0 returns
// nil, which caches nothing.
func NewStateCache(max int) *StateCache {
	if max <= 0 {
		return nil
	}
	c := &StateCache{max: max, entries: make(map[string]*cacheEntry, min(max, 1<<16))}
	c.ring.next, c.ring.prev = &c.ring, &c.ring
	return c
}

// Len returns the number of cached customers; it may be called from any
// goroutine.
func (c *StateCache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.size.Load())
}

// Stats returns how many customers of batches were served from the cache,
// found stale (stamp changed) and not cached, since the start; it may be
// called from any goroutine.
func (c *StateCache) Stats() (hits, stale, misses int64) {
	if c == nil {
		return 0, 0, 0
	}
	return c.hits.Load(), c.stale.Load(), c.misses.Load()
}

// held reports whether the cache has a state for id.
func (c *StateCache) held(id string) bool {
	if c == nil {
		return false
	}
	_, ok := c.entries[id]
	return ok
}

// take returns a customer from the cache if loaded (read with only the stamp
// and profile) shows that Redis still holds the state the cache has. A stale
// entry is dropped.
func (c *StateCache) take(id string, loaded store.Customer) (*customer, bool) {
	e, ok := c.entries[id]
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	if loaded.Stamp != e.stamp {
		c.stale.Add(1)
		c.remove(e)
		return nil, false
	}
	c.hits.Add(1)
	c.touch(e)
	return &customer{id: id, env: e.env, state: e.state, profile: profileOf(loaded), branch: loaded.Profile.Branch, stamp: e.stamp}, true
}

// put records cu's state as stored with stamp.
func (c *StateCache) put(cu *customer, stamp string) {
	if c == nil || stamp == "" {
		return
	}
	env := cu.env
	env.State = nil
	if e, ok := c.entries[cu.id]; ok {
		e.stamp, e.env, e.state = stamp, env, cu.state
		c.touch(e)
		return
	}
	e := &cacheEntry{id: cu.id, stamp: stamp, env: env, state: cu.state}
	c.entries[cu.id] = e
	c.link(e)
	c.size.Add(1)
	for len(c.entries) > c.max {
		c.remove(c.ring.prev)
	}
}

// Reset empties the cache.
func (c *StateCache) Reset() {
	if c == nil {
		return
	}
	clear(c.entries)
	c.ring.next, c.ring.prev = &c.ring, &c.ring
	c.size.Store(0)
}

func (c *StateCache) link(e *cacheEntry) {
	e.prev, e.next = &c.ring, c.ring.next
	c.ring.next.prev = e
	c.ring.next = e
}

func (c *StateCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *StateCache) touch(e *cacheEntry) {
	c.unlink(e)
	c.link(e)
}

func (c *StateCache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.id)
	c.size.Add(-1)
}

// stamper makes the stamps of one process's writes: a random instance id
// and a sequence number, so that no two writes anywhere share a stamp.
type stamper struct {
	instance string
	seq      atomic.Uint64
}

func newStamper() *stamper {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return &stamper{instance: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])}
}

func (s *stamper) next() string {
	return s.instance + "." + strconv.FormatUint(s.seq.Add(1), 36)
}
