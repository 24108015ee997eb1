package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// RedisCluster starts a Redis Cluster of three masters (no replicas, no
// persistence) on free loopback ports in a temporary directory and returns
// the seed addresses; cleanup stops the servers.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis cluster: redis-cli not on PATH (scripts/setup.sh installs redis-tools)")
	}
	dir := t.TempDir()
	addrs := make([]string, 3)
	for i := range addrs {
		port, err := embedded.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		bus, err := embedded.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p := strconv.Itoa(port)
		logf, err := os.Create(filepath.Join(dir, "redis-"+p+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", "--port", p, "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus), "--cluster-config-file", "nodes-"+p+".conf",
			"--save", "", "--appendonly", "no")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
		})
		addrs[i] = "127.0.0.1:" + p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range addrs {
		if err := embedded.WaitTCP(ctx, a); err != nil {
			t.Fatalf("redis cluster node: %v (logs in %s)", err, dir)
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.CommandContext(ctx, "redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		if err := waitClusterOK(ctx, a); err != nil {
			t.Fatalf("redis cluster: %v", err)
		}
	}
	return addrs
}

func waitClusterOK(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	var last string
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		last = fmt.Sprint(err, info)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: cluster_state not ok: %s", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RedisModeEnv chooses the Redis that RedisUnderTest starts: unset or
// "single" for one redis-server, "cluster" for a three-master Cluster, so
// that the store tests run unchanged against both (`make test-cluster`).
const RedisModeEnv = "CHURNWATCH_TEST_REDIS"

// RedisTarget is the Redis a test runs against.
type RedisTarget struct {
	Node  *embedded.Redis // the single node; nil on a Cluster
	Seeds []string        // the Cluster's seed addresses; nil for one node
}

// RedisUnderTest starts the Redis RedisModeEnv asks for.
func RedisUnderTest(t testing.TB) RedisTarget {
	t.Helper()
	switch m := os.Getenv(RedisModeEnv); m {
	case "", "single":
		return RedisTarget{Node: Redis(t)}
	case "cluster":
		return RedisTarget{Seeds: RedisCluster(t)}
	default:
		t.Fatalf("%s=%q: want single or cluster", RedisModeEnv, m)
		return RedisTarget{}
	}
}

// Cluster reports whether r is a Redis Cluster.
func (r RedisTarget) Cluster() bool { return r.Node == nil }

// Configure points c at r.
func (r RedisTarget) Configure(c *config.Common) {
	if r.Cluster() {
		c.RedisAddr, c.RedisAddrs, c.RedisCluster = "", r.Seeds, true
	} else {
		c.RedisAddr, c.RedisAddrs, c.RedisCluster = r.Node.Addr, nil, false
	}
}

// Client returns a churnwatch client of r, closed at cleanup.
func (r RedisTarget) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	var c config.Common
	r.Configure(&c)
	rdb, err := redisx.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
