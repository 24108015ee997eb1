package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// lease is the publisher lease: one Redis key holding the owner's random
// token with a TTL. Whoever holds it is the only instance that writes to
// churnwatch.alerts.v1; the others retry SET NX and take over once the key
// expires (the holder died) or is released (clean shutdown).
//
// The holder counts itself leased until the time it sent its last
// successful renewal plus TTL minus one renew period, so it stops writing
// before the key can expire in Redis whatever the clock drift between the
// round trip's two ends. Every position update is a CAS on the token
// (commitPosition), so a holder that lost the lease can never move the
// position.
type lease struct {
	rdb        redis.Cmdable
	key        string
	ttl, renew time.Duration
	token      string
	until      atomic.Int64 // unix ns until which this holder may write; 0 = not held
}

func newLease(rdb redis.Cmdable, key string, ttl, renew time.Duration) *lease {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return &lease{rdb: rdb, key: key, ttl: ttl, renew: renew, token: hex.EncodeToString(b[:])}
}

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

// commitPosition sets the publisher position only while the lease is still
// ours. KEYS: lease, position. ARGV: token, stream id.
var commitPosition = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
`)

// errLeaseLost is returned by the holder's steps once the lease is not ours.
var errLeaseLost = errors.New("publisher lease lost")

// acquire takes the lease when nobody holds it.
func (l *lease) acquire(ctx context.Context) (bool, error) {
	sent := time.Now()
	ok, err := l.rdb.SetNX(ctx, l.key, l.token, l.ttl).Result()
	if err != nil || !ok {
		return false, err
	}
	l.until.Store(sent.Add(l.ttl - l.renew).UnixNano())
	return true, nil
}

// extend renews the lease; false means another instance holds it now.
func (l *lease) extend(ctx context.Context) (bool, error) {
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

// valid reports whether this holder may still write, and until when.
func (l *lease) valid() (time.Time, bool) {
	u := l.until.Load()
	if u == 0 {
		return time.Time{}, false
	}
	t := time.Unix(0, u)
	return t, time.Now().Before(t)
}

// drop forgets the lease locally (it was lost or its holder stops).
func (l *lease) drop() { l.until.Store(0) }

// release gives the lease up on clean shutdown so a peer takes over at once.
func (l *lease) release(ctx context.Context) error {
	l.drop()
	return releaseLease.Run(ctx, l.rdb, []string{l.key}, l.token).Err()
}

// commit moves the position to id if the lease is still ours.
func (l *lease) commit(ctx context.Context, posKey, id string) error {
	n, err := commitPosition.Run(ctx, l.rdb, []string{l.key, posKey}, l.token, id).Int()
	if err != nil {
		return err
	}
	if n != 1 {
		l.drop()
		return errLeaseLost
	}
	return nil
}

// leaseLoop runs work whenever this instance holds l, until ctx ends: it
// stands by while another instance holds it, renews it while work runs,
// cancels work when the lease is lost, and releases it on shutdown. The
// Kafka publisher and the receivers' deliverers run on it. Work returning
// errKilled (a test hook) ends the loop without releasing, as kill -9 does.
func leaseLoop(ctx context.Context, l *lease, log *slog.Logger, what string, work func(context.Context) error) {
	for {
		ok, err := l.acquire(ctx)
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, what+" lease: acquire failed", "err", err)
		}
		if ok {
			log.InfoContext(ctx, what+" lease taken: this instance now delivers", "lease_ttl", l.ttl.String())
			hctx, cancel := context.WithCancel(ctx)
			renewed := make(chan struct{})
			go func() {
				defer close(renewed)
				renewLoop(hctx, l, log, what, cancel)
			}()
			err := work(hctx)
			cancel()
			<-renewed
			if errors.Is(err, errKilled) {
				<-ctx.Done()
				return
			}
			if err == nil && ctx.Err() == nil {
				err = errLeaseLost
			}
			if ctx.Err() != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				if err := l.release(rctx); err != nil {
					log.WarnContext(rctx, what+" lease: release failed; a peer takes over when it expires", "err", err)
				}
				cancel()
				return
			}
			log.WarnContext(ctx, what+" lease lost: standing by", "err", err)
		}
		if !sleep(ctx, l.renew) {
			return
		}
	}
}

// renewLoop extends l every renew period and calls lost when it is gone.
func renewLoop(ctx context.Context, l *lease, log *slog.Logger, what string, lost context.CancelFunc) {
	t := time.NewTicker(l.renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.renew)
		ok, err := l.extend(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, what+" lease: renew failed", "err", err)
			if _, valid := l.valid(); valid {
				continue
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return
			}
			l.drop()
			lost()
			return
		}
	}
}
