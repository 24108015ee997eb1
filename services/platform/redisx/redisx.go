// Package redisx builds churnwatch's go-redis clients and waits for Redis.
package redisx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

// New builds the client cfg describes: one node (CHURNWATCH_REDIS_ADDR),
// Sentinel (CHURNWATCH_REDIS_MASTER_NAME, the sentinels in ADDR or ADDRS:
// a failover *redis.Client) or Cluster (CHURNWATCH_REDIS_CLUSTER, or ADDRS
// with several seeds: a *redis.ClusterClient). Commands honour context
// deadlines. Every churnwatch write is idempotent (watermarks, dedupe), so
// go-redis's retries on network errors are safe.
func New(cfg config.Common) (redis.UniversalClient, error) {
	o, err := Options(cfg)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(o), nil
}

// Options returns the go-redis options New uses. Errors never quote the
// address, which may hold a password.
func Options(cfg config.Common) (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Addrs:                 cfg.RedisAddrs,
		MasterName:            cfg.RedisMasterName,
		IsClusterMode:         cfg.RedisCluster,
		Username:              cfg.RedisUsername,
		Password:              cfg.RedisPassword,
		DB:                    cfg.RedisDB,
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
	}
	if a := cfg.RedisAddr; a != "" {
		if strings.Contains(a, "://") {
			u, err := redis.ParseURL(a)
			if err != nil {
				return nil, errors.New("CHURNWATCH_REDIS_ADDR: not a redis:// or rediss:// URL (redis://[user:password@]host:port[/db])")
			}
			o.Addrs = []string{u.Addr}
			o.DB = u.DB
			o.TLSConfig = u.TLSConfig
			if u.Username != "" {
				o.Username = u.Username
			}
			if u.Password != "" {
				o.Password = u.Password
			}
		} else {
			o.Addrs = []string{a}
		}
	}
	if cfg.RedisTLSCA != "" {
		pem, err := os.ReadFile(cfg.RedisTLSCA)
		if err != nil {
			return nil, fmt.Errorf("CHURNWATCH_REDIS_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CHURNWATCH_REDIS_TLS_CA %s: no PEM certificate", cfg.RedisTLSCA)
		}
		if o.TLSConfig == nil {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.TLSConfig.RootCAs = pool
	}
	if o.TLSConfig != nil && o.TLSConfig.MinVersion < tls.VersionTLS12 {
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if o.TLSConfig != nil && (o.IsClusterMode || len(o.Addrs) > 1) {
		// Each cluster node has its own name: verify each against the
		// address dialled, not the first seed's.
		o.TLSConfig.ServerName = ""
	}
	return o, nil
}

// ForEachMaster runs fn on every master: the one node (or Sentinel's current
// master), or every master of a Cluster. Per-node commands (SCAN, INFO,
// DBSIZE, FLUSHDB) go through it; SCRIPT LOAD on a ClusterClient already
// reaches every node.
func ForEachMaster(ctx context.Context, c redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("redisx: unsupported client %T", c)
	}
}

// IsCluster reports whether c talks to a Redis Cluster, where a
// transaction must stay within one hash slot.
func IsCluster(c redis.UniversalClient) bool {
	_, ok := c.(*redis.ClusterClient)
	return ok
}

// WaitReady pings until Redis answers or ctx ends.
func WaitReady(ctx context.Context, c redis.UniversalClient) error {
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
