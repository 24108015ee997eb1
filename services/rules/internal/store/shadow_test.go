package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// TestPurgeShadow: a stopped set's fields leave every customer hash (the
// live state and another set's fields stay), its clocks, deadlines and
// alerted set go, and it stays listed as purged; a running set, or one
// stopped within the grace, is refused. On a Cluster too (make
// test-cluster): the customer keys are spread over the masters.
func TestPurgeShadow(t *testing.T) {
	rdb := testkit.RedisUnderTest(t).Client(t)
	st := New(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	for _, name := range []string{"old", "other"} {
		if err := st.StartShadow(ctx, ShadowSet{Name: name, Reason: "test", Actor: "ops-1", Started: t0}); err != nil {
			t.Fatal(err)
		}
	}
	const customers = 2500 // more than one SCAN page
	for i := range customers {
		key := CustomerKey(fmt.Sprintf("C%05d", i))
		fields := []any{fieldState, "live", ShadowStateField("other"), "kept"}
		if i%5 != 0 { // some customers never reached the set
			fields = append(fields, ShadowStateField("old"), "state")
		}
		if i%7 == 0 {
			fields = append(fields, ShadowAlertField("old"), "alert")
		}
		if err := rdb.HSet(ctx, key, fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	withOld := 0
	for i := range customers {
		if i%5 != 0 || i%7 == 0 {
			withOld++
		}
	}
	zsets := []string{ShadowClocksKey("old"), ShadowDueKey("old", 0), ShadowDueKey("old", 5)}
	otherKeys := []string{ShadowClocksKey("other"), ShadowDueKey("other", 0)}
	for _, k := range append(zsets, otherKeys...) {
		if err := rdb.ZAdd(ctx, k, redis.Z{Score: 1, Member: "x"}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.SAdd(ctx, ShadowAlertedKey("old"), "C00000").Err(); err != nil {
		t.Fatal(err)
	}
	setKeys := append(zsets, ShadowAlertedKey("old"))

	if _, _, err := st.PurgeShadow(ctx, "old", t0.Add(time.Hour)); !errors.Is(err, ErrShadowRunning) {
		t.Fatalf("purge of a running set: %v, want ErrShadowRunning", err)
	}
	if _, _, err := st.PurgeShadow(ctx, "nope", t0); !errors.Is(err, ErrShadowUnknown) {
		t.Fatalf("purge of an unknown set: %v, want ErrShadowUnknown", err)
	}
	stopped := t0.Add(time.Hour)
	if _, err := st.StopShadow(ctx, "old", stopped); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PurgeShadow(ctx, "old", stopped.Add(ShadowPurgeGrace-time.Second)); !errors.Is(err, ErrShadowJustStopped) {
		t.Fatalf("purge within the grace: %v, want ErrShadowJustStopped", err)
	}
	at := stopped.Add(ShadowPurgeGrace)
	set, n, err := st.PurgeShadow(ctx, "old", at)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(withOld) || !set.Purged.Equal(at) {
		t.Errorf("purged from %d customers at %v, want %d at %v", n, set.Purged, withOld, at)
	}
	for i := range customers {
		key := CustomerKey(fmt.Sprintf("C%05d", i))
		got, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[fieldState] != "live" || got[ShadowStateField("other")] != "kept" {
			t.Fatalf("%s after the purge: %v, want only the live state and set other's", key, got)
		}
	}
	for _, k := range setKeys {
		if n, _ := rdb.Exists(ctx, k).Result(); n != 0 {
			t.Errorf("%s still there", k)
		}
	}
	for _, k := range otherKeys {
		if n, _ := rdb.Exists(ctx, k).Result(); n != 1 {
			t.Errorf("%s of the other set deleted", k)
		}
	}
	sets, err := st.Shadows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || sets[0].Name != "old" || !sets[0].Purged.Equal(at) || !sets[1].Purged.IsZero() {
		t.Errorf("sets after the purge: %+v", sets)
	}
	if err := st.StartShadow(ctx, ShadowSet{Name: "old", Reason: "again", Started: at}); !errors.Is(err, ErrShadowExists) {
		t.Errorf("a purged set's name reused: %v", err)
	}
	if again, n, err := st.PurgeShadow(ctx, "old", at.Add(time.Hour)); err != nil || n != 0 || !again.Purged.Equal(at) {
		t.Errorf("second purge: %+v %d %v, want a no-op", again, n, err)
	}
}

// TestSeedShadowDeadlines: every live deadline of every partition is
// copied to the set's index; an entry the set already has stays. On a
// Cluster too (make test-cluster).
func TestSeedShadowDeadlines(t *testing.T) {
	rdb := testkit.RedisUnderTest(t).Client(t)
	st := New(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := 0
	for p := range int32(6) {
		var zs []redis.Z
		for i := range 700 * int(p) { // partition 0 has none; pages of 1,000 overrun
			zs = append(zs, redis.Z{Score: float64(1e12 + i), Member: fmt.Sprintf("C%d-%d", p, i)})
		}
		if len(zs) > 0 {
			if err := rdb.ZAdd(ctx, DueKey(p), zs...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		want += len(zs)
	}
	if err := rdb.ZAdd(ctx, ShadowDueKey("s1", 3), redis.Z{Score: 5, Member: "C3-0"}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := st.SeedShadowDeadlines(ctx, "s1")
	if err != nil || n < int64(want) {
		t.Fatalf("seeded %d (%v), want %d", n, err, want)
	}
	for p := range int32(6) {
		live, err := rdb.ZRangeWithScores(ctx, DueKey(p), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		got, err := rdb.ZRangeWithScores(ctx, ShadowDueKey("s1", p), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(live) {
			t.Fatalf("partition %d: %d seeded, %d live", p, len(got), len(live))
		}
		scores := map[string]float64{}
		for _, z := range got {
			scores[z.Member.(string)] = z.Score
		}
		for _, z := range live {
			w := z.Score
			if p == 3 && z.Member == "C3-0" {
				w = 5 // the set's own entry stays
			}
			if scores[z.Member.(string)] != w {
				t.Fatalf("partition %d: %v at %v, want %v", p, z.Member, scores[z.Member.(string)], w)
			}
		}
	}
}
