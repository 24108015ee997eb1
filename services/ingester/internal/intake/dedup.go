package intake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimState is what a claim found for one eventId.
type claimState int

const (
	// claimed: this request holds the eventId and must publish it.
	claimed claimState = iota
	// published: the eventId is on the topic already (a duplicate).
	published
	// inFlight: another request that is still running holds the eventId.
	inFlight
	// lateMarked: the eventId was reported late before (and dead-lettered).
	lateMarked
)

// Values of a dedup key: the final mark of a published event, the mark of
// an event reported late, or a pending claim: "p:" and the claiming
// request's token.
const (
	publishedMark = "1"
	lateMark      = "L"
)

// releaseScript deletes a claim only if it is still the caller's, so that a
// request never frees a claim another request took over.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// takeoverScript replaces the claim ARGV[1] of a request that is no longer
// running (crashed, or failed while Redis was away) by the caller's claim
// ARGV[2], for ARGV[3] ms; it returns the value it found.
var takeoverScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return v`)

// dedup remembers which eventIds are on the topic, in Redis, across
// requests, restarts and ingester instances. A mark is made in two steps:
// a short pending claim (SET NX) before the Kafka write, promoted to the
// retention period once the write is acknowledged, or released when it
// failed so that a retry is accepted. One pipeline per step per batch.
//
// A claim belongs to one request, which keeps a lease key alive
// (ingest:req:TOKEN, see lease) while it runs. A claim whose request's
// lease is gone — the ingester was killed, or Redis failed under it — is
// taken over at once by the next request for the same eventId instead of
// blocking it until the claim expires: the earlier request may or may not
// have written the event, so the next one writes it (again); the rules
// service applies an event id once.
//
// Keys:
//
//	PREFIX+eventId     string  "1" published (retention) · "L" reported late (retention) · "p:TOKEN" claim (pending TTL)
//	ingest:req:TOKEN   string  "1" while the request holding claims TOKEN runs (lease TTL, refreshed)
type dedup struct {
	rdb        redis.UniversalClient
	prefix     string
	retention  time.Duration
	pendingTTL time.Duration
	leaseTTL   time.Duration
}

func (d *dedup) key(eventID string) string { return d.prefix + eventID }

// leaseKey is the liveness key of the request holding claims token.
func leaseKey(token string) string { return "ingest:req:" + token }

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "p:" + hex.EncodeToString(b[:])
}

// lease keeps the request's lease key alive until the returned stop is
// called, which deletes it. A claim is never taken over while its lease
// lives; the lease outlives a stalled refresh by its TTL only.
func (d *dedup) lease(ctx context.Context, token string) (stop func(), err error) {
	if err := d.rdb.Set(ctx, leaseKey(token), "1", d.leaseTTL).Err(); err != nil {
		return nil, fmt.Errorf("take request lease: %w", err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d.leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.leaseTTL/3)
				_ = d.rdb.Set(rctx, leaseKey(token), "1", d.leaseTTL).Err()
				cancel()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.rdb.Del(rctx, leaseKey(token)).Err()
	}, nil
}

// claim tries to take every id for token. It fails only when Redis fails;
// claims it may have taken then are released best-effort (and expire after
// pendingTTL anyway).
func (d *dedup) claim(ctx context.Context, ids []string, token string) ([]claimState, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.SetArgs(ctx, d.key(id), token, redis.SetArgs{Mode: "NX", TTL: d.pendingTTL, Get: true})
	}
	_, _ = pipe.Exec(ctx)
	out := make([]claimState, len(ids))
	var failed error
	held := map[int]string{} // index → claim of another request
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[i] = claimed
		case err != nil:
			failed = err
		case v == publishedMark:
			out[i] = published
		case v == lateMark:
			out[i] = lateMarked
		case v == token:
			// Our own claim survived a retried pipeline: still ours.
			out[i] = claimed
		case strings.HasPrefix(v, "p:"):
			out[i] = inFlight
			held[i] = v
		default:
			// An unknown value under our prefix: treat as published rather
			// than risk a second copy on the topic.
			out[i] = published
		}
	}
	if failed == nil && len(held) > 0 {
		failed = d.takeOver(ctx, ids, token, held, out)
	}
	if failed != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.release(rctx, ids, token)
		return nil, fmt.Errorf("claim event ids: %w", failed)
	}
	return out, nil
}

// takeOver takes the claims in held whose requests no longer run, marking
// them claimed in out; the others stay inFlight.
func (d *dedup) takeOver(ctx context.Context, ids []string, token string, held map[int]string, out []claimState) error {
	owners := map[string]*redis.IntCmd{}
	pipe := d.rdb.Pipeline()
	for _, v := range held {
		if _, ok := owners[v]; !ok {
			owners[v] = pipe.Exists(ctx, leaseKey(v))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	run := func() (map[int]*redis.Cmd, error) {
		pipe := d.rdb.Pipeline()
		cmds := map[int]*redis.Cmd{}
		for i, v := range held {
			if owners[v].Val() == 0 {
				cmds[i] = takeoverScript.EvalSha(ctx, pipe, []string{d.key(ids[i])}, v, token, d.pendingTTL.Milliseconds())
			}
		}
		if len(cmds) == 0 {
			return nil, nil
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if lerr := takeoverScript.Load(ctx, d.rdb).Err(); lerr != nil {
			return fmt.Errorf("load takeover script: %w", lerr)
		}
		cmds, err = run()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, c := range cmds {
		if v, err := c.Text(); err == nil && v == held[i] {
			out[i] = claimed
		}
		// Else the claim changed meanwhile (published, released, taken by
		// another request): the next round of the claim loop looks again.
	}
	return nil
}

// markLate records that ids were reported late, for the retention period.
func (d *dedup) markLate(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := d.rdb.Pipeline()
	for _, id := range ids {
		pipe.Set(ctx, d.key(id), lateMark, d.retention)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("mark late event ids: %w", err)
	}
	return nil
}

// promote makes the claims final for the retention period.
func (d *dedup) promote(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := d.rdb.Pipeline()
	for _, id := range ids {
		pipe.Set(ctx, d.key(id), publishedMark, d.retention)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("promote event ids: %w", err)
	}
	return nil
}

// release frees the claims token still holds.
func (d *dedup) release(ctx context.Context, ids []string, token string) error {
	if len(ids) == 0 {
		return nil
	}
	run := func() error {
		pipe := d.rdb.Pipeline()
		for _, id := range ids {
			releaseScript.EvalSha(ctx, pipe, []string{d.key(id)}, token)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Scripts are loaded at start; a Redis restart forgets them. The
		// EVAL fallback does not work inside pipelines, so load and redo.
		if lerr := releaseScript.Load(ctx, d.rdb).Err(); lerr != nil {
			return fmt.Errorf("load release script: %w", lerr)
		}
		err = run()
	}
	if err != nil {
		return fmt.Errorf("release event ids: %w", err)
	}
	return nil
}

// loadScripts loads the scripts so that EVALSHA finds them.
func (d *dedup) loadScripts(ctx context.Context) error {
	return errors.Join(releaseScript.Load(ctx, d.rdb).Err(), takeoverScript.Load(ctx, d.rdb).Err(), clockScript.Load(ctx, d.rdb).Err())
}
