package redisx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func load(t *testing.T, env map[string]string) (config.Common, error) {
	t.Helper()
	e := config.FromMap(env)
	c := config.LoadCommon(e, "rules", "127.0.0.1:0", "127.0.0.1:0")
	c.AuthPublicKeys = []string{"k.pem"}
	return c, errors.Join(e.Err(), c.Validate())
}

func TestOptionsFromSettings(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		env       map[string]string
		addrs     []string
		user, pw  string
		db        int
		tls       bool
		clientKey string // which client NewUniversalClient builds
	}{
		{name: "default", env: nil, addrs: []string{"127.0.0.1:6379"}, clientKey: "*redis.Client"},
		{name: "url with user and password", env: map[string]string{"CHURNWATCH_REDIS_ADDR": "rediss://cw:hunter2@redis.bank:6380/3"},
			addrs: []string{"redis.bank:6380"}, user: "cw", pw: "hunter2", db: 3, tls: true, clientKey: "*redis.Client"},
		{name: "cluster with one seed", env: map[string]string{"CHURNWATCH_REDIS_ADDRS": "10.0.0.1:7000", "CHURNWATCH_REDIS_CLUSTER": "true"},
			addrs: []string{"10.0.0.1:7000"}, clientKey: "*redis.ClusterClient"},
		{name: "cluster seeds", env: map[string]string{"CHURNWATCH_REDIS_ADDRS": "a:7000, b:7000,c:7000", "CHURNWATCH_REDIS_CLUSTER": "true",
			"CHURNWATCH_REDIS_USERNAME": "cw", "CHURNWATCH_REDIS_PASSWORD_FILE": pwFile},
			addrs: []string{"a:7000", "b:7000", "c:7000"}, user: "cw", pw: "s3cret-from-file", clientKey: "*redis.ClusterClient"},
		{name: "sentinel", env: map[string]string{"CHURNWATCH_REDIS_ADDRS": "s1:26379,s2:26379", "CHURNWATCH_REDIS_MASTER_NAME": "churnwatch"},
			addrs: []string{"s1:26379", "s2:26379"}, clientKey: "failover"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.env)
			if err != nil {
				t.Fatalf("valid settings refused: %v", err)
			}
			o, err := redisx.Options(c)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(o.Addrs) != fmt.Sprint(tc.addrs) || o.Username != tc.user || o.Password != tc.pw || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
				t.Fatalf("options: addrs %v user %q pw %q db %d tls %v", o.Addrs, o.Username, o.Password, o.DB, o.TLSConfig != nil)
			}
			if !o.ContextTimeoutEnabled || o.Protocol != 2 || !o.DisableIdentity || o.MaxRetries != 2 || o.PoolSize != 32 {
				t.Fatalf("shared client options lost: %+v", o)
			}
			rdb := redis.NewUniversalClient(o)
			defer rdb.Close()
			got := fmt.Sprintf("%T", rdb)
			if tc.clientKey == "failover" {
				// NewFailoverClient returns a *redis.Client whose dialler asks
				// the sentinels for the master.
				if got != "*redis.Client" || !strings.Contains(rdb.(*redis.Client).String(), "FailoverClient") {
					t.Fatalf("want a failover client, got %s %v", got, rdb)
				}
			} else if got != tc.clientKey {
				t.Fatalf("client %s, want %s", got, tc.clientKey)
			}
			for _, a := range config.Attrs(c.Fields()) {
				if s := fmt.Sprint(a); tc.pw != "" && strings.Contains(s, tc.pw) {
					t.Fatalf("password in the start log: %s", s)
				}
			}
		})
	}
}

func TestMaskedURLKeepsUserAndHost(t *testing.T) {
	c, err := load(t, map[string]string{"CHURNWATCH_REDIS_ADDR": "redis://cw:hunter2@redis.bank:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, a := range config.Attrs(c.Fields()) {
		line += fmt.Sprint(a) + " "
	}
	if strings.Contains(line, "hunter2") || !strings.Contains(line, "redis_addr=redis://cw:xxxxx@redis.bank:6379/0") {
		t.Fatalf("masked log: %s", line)
	}
}

func TestInvalidSettingsSayWhatToDo(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pwFile, []byte("x"), 0o600)
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"addr and addrs":           {map[string]string{"CHURNWATCH_REDIS_ADDR": "a:1", "CHURNWATCH_REDIS_ADDRS": "b:1"}, "not both"},
		"master name and cluster":  {map[string]string{"CHURNWATCH_REDIS_ADDRS": "b:1", "CHURNWATCH_REDIS_MASTER_NAME": "m", "CHURNWATCH_REDIS_CLUSTER": "true"}, "unset one"},
		"several addrs, no mode":   {map[string]string{"CHURNWATCH_REDIS_ADDRS": "a:1,b:1"}, "CHURNWATCH_REDIS_CLUSTER=true"},
		"cluster db":               {map[string]string{"CHURNWATCH_REDIS_ADDRS": "a:1", "CHURNWATCH_REDIS_CLUSTER": "true", "CHURNWATCH_REDIS_DB": "2"}, "only database 0"},
		"password twice":           {map[string]string{"CHURNWATCH_REDIS_PASSWORD": "y", "CHURNWATCH_REDIS_PASSWORD_FILE": pwFile}, "keep only the file"},
		"password in url and file": {map[string]string{"CHURNWATCH_REDIS_ADDR": "redis://:hunter2@h:1", "CHURNWATCH_REDIS_PASSWORD_FILE": pwFile}, "keep it in one place"},
		"missing file":             {map[string]string{"CHURNWATCH_REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "CHURNWATCH_REDIS_PASSWORD_FILE"},
		"bad scheme":               {map[string]string{"CHURNWATCH_REDIS_ADDR": "http://:hunter2@h:1"}, "want redis://"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error saying %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("password in the error: %v", err)
			}
		})
	}
	if _, err := redisx.Options(config.Common{RedisTLSCA: "/nonexistent/ca.pem"}); err == nil {
		t.Fatal("missing TLS CA accepted")
	}
}

// TestClusterClient checks the topology helpers on a real Cluster: keys of
// one hash tag share a transaction, other keys refuse to (the CROSSSLOT
// guard the store tests rely on), and ForEachMaster reaches all three.
func TestClusterClient(t *testing.T) {
	rt := testkit.RedisTarget{Seeds: testkit.RedisCluster(t)}
	rdb := rt.Client(t)
	ctx := context.Background()
	if !redisx.IsCluster(rdb) {
		t.Fatalf("client %T is not a cluster client", rdb)
	}
	if err := redisx.WaitReady(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "cw:{c:1}:a", "1", 0)
		p.Set(ctx, "cw:{c:1}:b", "1", 0)
		return nil
	}); err != nil {
		t.Fatalf("single-slot transaction: %v", err)
	}
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "cw:{c:1}:a", "1", 0)
		p.Set(ctx, "cw:{c:2}:a", "1", 0)
		return nil
	}); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot transaction: want CROSSSLOT, got %v", err)
	}
	for i := range 100 {
		rdb.Set(ctx, fmt.Sprintf("k%d", i), "v", 0)
	}
	var masters, keys atomic.Int64 // fn runs on the masters concurrently
	err := redisx.ForEachMaster(ctx, rdb, func(ctx context.Context, n *redis.Client) error {
		k, err := n.DBSize(ctx).Result()
		masters.Add(1)
		keys.Add(k)
		return err
	})
	if err != nil || masters.Load() != 3 || keys.Load() != 102 {
		t.Fatalf("ForEachMaster: %d masters, %d keys, %v", masters.Load(), keys.Load(), err)
	}
}
