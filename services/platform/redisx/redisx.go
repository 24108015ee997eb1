// Package redisx builds churnwatch's go-redis clients and waits for Redis.
package redisx

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// New returns a client whose commands honour context deadlines. Every
// churnwatch write is idempotent (watermarks, dedupe), so go-redis's
// retries on network errors are safe.
func New(addr, password string, db int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		Password:              password,
		DB:                    db,
		ContextTimeoutEnabled: true,
		DialTimeout:           2 * time.Second,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		MaxRetries:            2,
		MinRetryBackoff:       20 * time.Millisecond,
		MaxRetryBackoff:       500 * time.Millisecond,
		PoolSize:              32,
		Protocol:              2,
		DisableIdentity:       true,
	})
}

// WaitReady pings until Redis answers or ctx ends.
func WaitReady(ctx context.Context, c *redis.Client) error {
	var err error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err = c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis not reachable: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Retry runs op until it succeeds or ctx ends, backing off between attempts:
// a Redis outage stalls the caller instead of losing work.
func Retry(ctx context.Context, onErr func(error), op func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}
