package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func newStore(t *testing.T) (*store.Store, *redis.Client) {
	t.Helper()
	addr := testkit.Redis(t).Addr
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	blocking := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	st := store.New(rdb, blocking, store.Options{})
	t.Cleanup(func() { st.Close(); rdb.Close() })
	return st, rdb
}

// openAlert commits one signal for customer c (manager rm-1, branch br-1)
// created at t.
func openAlert(t *testing.T, st *store.Store, c string, at time.Time) {
	t.Helper()
	e := &alerting.Engine{}
	sig := &cwv1.RiskSignal{SignalId: "s-" + c, CustomerId: c, RuleId: "closure", Score: 50, EventTime: timestamppb.New(at),
		Explanation: &cwv1.Explanation{RuleId: "closure", Observed: "1", Threshold: "1"}}
	_, err := st.Transact(context.Background(), []string{c}, map[string][]string{c: {sig.SignalId}}, func(m map[string]*alerting.Customer) (*store.Step, error) {
		cust := m[c]
		cust.Profile = &cwv1.CustomerProfile{CustomerId: c, ManagerId: "rm-1", BranchId: "br-1"}
		step := &store.Step{Seen: map[string][]string{}}
		if ch, ok := e.Signal(cust, sig, at); ok {
			step.Add(ch, "")
			step.Seen[c] = []string{sig.SignalId}
		}
		return step, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The one index scan pages newest first, resumes after the member it
// returns, says whether members may be left, and stops at its limit.
func TestScanIndexPages(t *testing.T) {
	st, rdb := newStore(t)
	ctx := context.Background()
	t0 := time.Now().Truncate(time.Millisecond)
	for i := range 7 {
		openAlert(t, st, fmt.Sprintf("S%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	var all []string
	_, more, err := st.ScanIndex(ctx, store.AudienceIndex(alerting.ManagerAudience("rm-1")), "", 3, 0, func(a *cwv1.Alert) (bool, error) {
		all = append(all, a.GetCustomerId())
		return true, nil
	})
	if err != nil || more {
		t.Fatalf("full scan: more %v, err %v", more, err)
	}
	if fmt.Sprint(all) != "[S6 S5 S4 S3 S2 S1 S0]" {
		t.Fatalf("scan order %v, want newest first", all)
	}
	// Pages of two, resumed by the returned member.
	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		n := 0
		last, more, err := st.ScanIndex(ctx, store.AudienceIndex(alerting.AudienceAll), after, 3, 0, func(a *cwv1.Alert) (bool, error) {
			paged = append(paged, a.GetCustomerId())
			n++
			return n < 2, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		after = last
	}
	if fmt.Sprint(paged) != fmt.Sprint(all) {
		t.Fatalf("paged %v, want %v", paged, all)
	}
	// A limit stops a scan that finds nothing it wants, with more left.
	seen := 0
	last, more, err := st.ScanIndex(ctx, store.CustomerIndex("S3"), "", 3, 3, func(*cwv1.Alert) (bool, error) { seen++; return true, nil })
	if err != nil || seen != 1 || more || last == "" {
		t.Fatalf("customer index: %d alerts, more %v, last %q, err %v", seen, more, last, err)
	}
	seen = 0
	if _, more, _ = st.ScanIndex(ctx, store.AudienceIndex(alerting.AudienceAll), "", 3, 3, func(*cwv1.Alert) (bool, error) { seen++; return true, nil }); seen != 3 || !more {
		t.Fatalf("limited scan read %d, more %v; want 3 and more", seen, more)
	}
	// The documented key names.
	for _, k := range []string{"cw:{alerts}:idx:all", "cw:{alerts}:idx:m:rm-1", "cw:{alerts}:idx:b:br-1", "cw:{alerts}:idx:open",
		"cw:{alerts}:c:S3:open", "cw:{alerts}:c:S3:alerts", "cw:{alerts}:s:all", "cw:{alerts}:s:m:rm-1"} {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Errorf("key %s missing (%d, %v)", k, n, err)
		}
	}
}

// Outbox entries carry their audiences: the manager is notified of a new
// alert, the branch head of an assigned customer sees it quietly, another
// manager does not see it.
func TestOutboxEntryAudiences(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	openAlert(t, st, "E1", time.Now())
	entries, err := st.ReadOutbox(ctx, "0-0", 10, 100*time.Millisecond)
	if err != nil || len(entries) != 1 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	e := entries[0]
	for _, c := range []struct {
		aud          string
		notify, sees bool
	}{{"all", true, true}, {"m:rm-1", true, true}, {"b:br-1", false, true}, {"m:rm-2", false, false}} {
		notify, ok := e.For(c.aud)
		if notify != c.notify || ok != c.sees {
			t.Errorf("%s: notify %v sees %v, want %v %v", c.aud, notify, ok, c.notify, c.sees)
		}
	}
	end, err := st.OutboxEnd(ctx)
	if err != nil || end != e.ID {
		t.Fatalf("outbox end %q (%v), want %q", end, err, e.ID)
	}
	var replayed []string
	trimmed, err := st.Replay(ctx, "m:rm-1", "0-0", end, func(x store.Entry) error { replayed = append(replayed, x.ID); return nil })
	if err != nil || trimmed || len(replayed) != 1 || replayed[0] != e.ID {
		t.Fatalf("replay %v trimmed %v err %v", replayed, trimmed, err)
	}
	if more, _ := st.ReadOutbox(ctx, end, 10, 50*time.Millisecond); len(more) != 0 {
		t.Fatalf("read after the end: %d entries", len(more))
	}
}
