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
	// inFlight: another request holds the eventId right now.
	inFlight
)

// publishedMark is the value of a final dedup mark; a pending claim holds
// "p:" and the claiming request's token.
const publishedMark = "1"

// releaseScript deletes a claim only if it is still the caller's, so that a
// request never frees a claim another request took over.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// dedup remembers which eventIds are on the topic, in Redis, across
// requests, restarts and ingester instances. A mark is made in two steps:
// a short pending claim (SET NX) before the Kafka write, promoted to the
// retention period once the write is acknowledged, or released when it
// failed so that a retry is accepted. One pipeline per step per batch.
type dedup struct {
	rdb        redis.UniversalClient
	prefix     string
	retention  time.Duration
	pendingTTL time.Duration
}

func (d *dedup) key(eventID string) string { return d.prefix + eventID }

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "p:" + hex.EncodeToString(b[:])
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
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[i] = claimed
		case err != nil:
			failed = err
		case v == publishedMark:
			out[i] = published
		case v == token:
			// Our own claim survived a retried pipeline: still ours.
			out[i] = claimed
		case strings.HasPrefix(v, "p:"):
			out[i] = inFlight
		default:
			// An unknown value under our prefix: treat as published rather
			// than risk a second copy on the topic.
			out[i] = published
		}
	}
	if failed != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.release(rctx, ids, token)
		return nil, fmt.Errorf("claim event ids: %w", failed)
	}
	return out, nil
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

// loadScripts loads the release script so that EVALSHA finds it.
func (d *dedup) loadScripts(ctx context.Context) error {
	return releaseScript.Load(ctx, d.rdb).Err()
}
