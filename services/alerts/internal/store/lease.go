package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a reader's lease on the outbox and its position: one Redis key
// holding the owner's random token with a TTL, and the key of the last
// outbox id the reader handled. Whoever holds the lease is the only
// instance that reads on for that reader (the Kafka publisher, a
// receiver); the others retry SET NX and take over once the key expires
// (the holder died) or is released (clean shutdown).
//
// The holder counts itself leased until the time it sent its last
// successful renewal plus TTL minus one renew period, so it stops writing
// before the key can expire in Redis whatever the clock drift between the
// round trip's two ends. Every position update is a CAS on the token
// (commitPosition), so a holder that lost the lease can never move the
// position.
type Lease struct {
	rdb        redis.Cmdable
	key, pos   string
	ttl, renew time.Duration
	token      string
	until      atomic.Int64 // unix ns until which this holder may write; 0 = not held
}

// PublisherLease is the Kafka publisher's lease on cw:{alerts}:pub:lease
// and its position cw:{alerts}:pub:last.
func (s *Store) PublisherLease(ttl, renew time.Duration) *Lease {
	return s.newLease(kPubLease, kPubLast, ttl, renew)
}

// ReceiverLease is receiver name's lease (cw:{alerts}:rcv:NAME:lease) and
// position (cw:{alerts}:rcv:NAME:pos).
func (s *Store) ReceiverLease(name string, ttl, renew time.Duration) *Lease {
	return s.newLease(kRcv(name, "lease"), kRcv(name, "pos"), ttl, renew)
}

func (s *Store) newLease(key, pos string, ttl, renew time.Duration) *Lease {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return &Lease{rdb: s.rdb, key: key, pos: pos, ttl: ttl, renew: renew, token: hex.EncodeToString(b[:])}
}

// TTL is how long the lease outlives its holder's last renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Renew is how often the holder renews and standby instances try to take it.
func (l *Lease) Renew() time.Duration { return l.renew }

// renewLease extends the lease if it is still ours. KEYS: lease. ARGV:
// token, ttl ms.
var renewLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseLease deletes the lease if it is still ours. KEYS: lease. ARGV:
// token.
var releaseLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// commitPosition sets the position only while the lease is still ours.
// KEYS: lease, position. ARGV: token, stream id.
var commitPosition = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
`)

// ErrLeaseLost is returned by the holder's steps once the lease is not ours.
var ErrLeaseLost = errors.New("lease lost")

// Acquire takes the lease when nobody holds it.
func (l *Lease) Acquire(ctx context.Context) (bool, error) {
	sent := time.Now()
	ok, err := l.rdb.SetNX(ctx, l.key, l.token, l.ttl).Result()
	if err != nil || !ok {
		return false, err
	}
	l.until.Store(sent.Add(l.ttl - l.renew).UnixNano())
	return true, nil
}

// Extend renews the lease; false means another instance holds it now.
func (l *Lease) Extend(ctx context.Context) (bool, error) {
	sent := time.Now()
	n, err := renewLease.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, err
	}
	if n != 1 {
		l.until.Store(0)
		return false, nil
	}
	l.until.Store(sent.Add(l.ttl - l.renew).UnixNano())
	return true, nil
}

// Valid reports whether this holder may still write, and until when.
func (l *Lease) Valid() (time.Time, bool) {
	u := l.until.Load()
	if u == 0 {
		return time.Time{}, false
	}
	t := time.Unix(0, u)
	return t, time.Now().Before(t)
}

// Drop forgets the lease locally (it was lost or its holder stops).
func (l *Lease) Drop() { l.until.Store(0) }

// Release gives the lease up on clean shutdown so a peer takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	l.Drop()
	return releaseLease.Run(ctx, l.rdb, []string{l.key}, l.token).Err()
}

// Commit moves the position to id if the lease is still ours.
func (l *Lease) Commit(ctx context.Context, id string) error {
	n, err := commitPosition.Run(ctx, l.rdb, []string{l.key, l.pos}, l.token, id).Int()
	if err != nil {
		return err
	}
	if n != 1 {
		l.Drop()
		return ErrLeaseLost
	}
	return nil
}

// Position is the last outbox id handled; false when none is stored.
func (l *Lease) Position(ctx context.Context) (string, bool, error) {
	pos, err := l.rdb.Get(ctx, l.pos).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	return pos, err == nil, err
}

// StartAt stores id as the position unless one is stored (SET NX), so
// instances starting together agree and a known reader keeps its place.
func (l *Lease) StartAt(ctx context.Context, id string) error {
	return l.rdb.SetNX(ctx, l.pos, id, 0).Err()
}

// RetryHead is the change a receiver is retrying: its outbox id, when the
// first attempt was made and how many were made; zero when none is kept.
type RetryHead struct {
	ID       string
	First    time.Time
	Attempts int
}

// RetryHead loads what receiver name keeps of the change it is retrying.
func (s *Store) RetryHead(ctx context.Context, name string) (RetryHead, error) {
	h, err := s.rdb.HGetAll(ctx, kRcv(name, "head")).Result()
	if err != nil || h["id"] == "" {
		return RetryHead{}, err
	}
	ms, _ := strconv.ParseInt(h["first"], 10, 64)
	n, _ := strconv.Atoi(h["attempts"])
	return RetryHead{ID: h["id"], First: time.UnixMilli(ms), Attempts: n}, nil
}

// SetRetryHead keeps h so that a receiver's retry period survives restarts.
func (s *Store) SetRetryHead(ctx context.Context, name string, h RetryHead) error {
	return s.rdb.HSet(ctx, kRcv(name, "head"), "id", h.ID, "first", h.First.UnixMilli(), "attempts", h.Attempts).Err()
}

// DeadLetter appends a change receiver name gave up on to its dead-letter
// stream (capped at DeadLetterCap); values are field, value pairs.
func (s *Store) DeadLetter(ctx context.Context, name string, values ...any) error {
	return s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: kRcv(name, "dead"), MaxLen: DeadLetterCap, Approx: true, Values: values}).Err()
}
