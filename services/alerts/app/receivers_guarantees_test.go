package app_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// receiversFile is one CRM webhook receiver with a short retry schedule
// (the real backoff code path, in milliseconds instead of seconds) and a
// 1 s attempt timeout, so that its lease (TTL + timeout) expires quickly.
func receiversFile(t *testing.T, url string) string {
	dir := t.TempDir()
	secret := writeFile(t, dir, "crm-secret", testSecret+"\n")
	return writeFile(t, dir, "receivers.yaml", fmt.Sprintf(`receivers:
  - name: crm
    match: {min_severity: LOW}
    timeout: 1s
    retry: {initial: 20ms, max: 200ms, for: 1h}
    webhook: {url: %q, secret_file: %q}
`, url, secret))
}

// checkOncePerVersion fails unless got holds, after dropping repeats of a
// webhook-id, each version of every alert of want once, in version order
// per alert, and returns how many deliveries were repeats. A repeat must
// be the same event (same id, same version) as the delivery it repeats.
func checkOncePerVersion(t *testing.T, got []delivered, want map[string]int64) int {
	t.Helper()
	last := map[string]int64{}
	first := map[string]delivered{}
	repeats := 0
	for _, d := range got {
		a := d.update.GetAlert()
		id := fmt.Sprintf("%s.v%d", a.GetAlertId(), a.GetVersion())
		if d.webhookID != id || str(d.event, "id") != id {
			t.Errorf("delivery of %s has webhook-id %q, event id %q", id, d.webhookID, str(d.event, "id"))
		}
		if f, ok := first[d.webhookID]; ok {
			repeats++
			if str(f.event, "type") != str(d.event, "type") || f.update.GetAlert().GetVersion() != a.GetVersion() {
				t.Errorf("%s redelivered as a different event: %s vs %s", id, str(f.event, "type"), str(d.event, "type"))
			}
			continue
		}
		first[d.webhookID] = d
		if a.GetVersion() != last[a.GetAlertId()]+1 {
			t.Errorf("%s after v%d: out of order or gap", id, last[a.GetAlertId()])
		}
		last[a.GetAlertId()] = a.GetVersion()
	}
	for id, v := range want {
		if last[id] != v {
			t.Errorf("%s: delivered up to v%d, want v%d", id, last[id], v)
		}
	}
	if len(want) == 0 {
		t.Error("no alerts to check")
	}
	return repeats
}

// Two instances; the CRM answers 503 to everything for two seconds (its
// outage) while alerts keep changing, then 200. It gets every change
// exactly once, in version order per alert: the instance holding the
// receiver's lease retries the oldest change with backoff (the same
// webhook-id each time) and sends the rest after it; the other instance
// sends nothing. The outage holds up neither the Kafka topic nor listings.
func TestWebhookOutageThenEveryChangeOnceInOrder(t *testing.T) {
	crm := newHookServer(t, 0, 200)
	crm.failFor = 2 * time.Second
	tune := func(c *app.Config) {
		fastLease(c)
		c.Receivers = receiversFile(t, crm.srv.URL+"/hooks/churnwatch")
	}
	e := start(t, tune)
	f := e.peer(tune)

	customers := []string{"CO1", "CO2", "CO3", "CO4"}
	for _, c := range customers {
		e.profile(c, "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	}
	e.profilesCaughtUp()
	for i, c := range customers {
		e.signal("o1-"+c, c, "activity.drop", 45)
		e.signal("o2-"+c, c, "salary.stopped", int32(62+i))
	}
	e.signalsCaughtUp()
	// Human actions during the outage, on both instances.
	a1 := e.alertOf("CO1", func(a *cwv1.Alert) bool { return a.Version == 2 })
	a2 := e.alertOf("CO2", func(a *cwv1.Alert) bool { return a.Version == 2 })
	ctx := context.Background()
	if _, err := e.client("rm-1", auth.RoleManager, "").AcknowledgeAlert(ctx, &cwv1.AcknowledgeAlertRequest{AlertId: a1.AlertId}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client("rm-1", auth.RoleManager, "").ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: a2.AlertId, Outcome: cwv1.Outcome_OUTCOME_RETAINED}); err != nil {
		t.Fatal(err)
	}
	want := e.versions(customers)
	// The topic is not held up by the CRM being down (published waits with
	// a deadline and fails the test).
	e.published()
	e.caughtUpReceiver("crm")

	got, calls, bad := crm.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad requests: %v", bad)
	}
	crm.mu.Lock()
	refused := slices.Clone(crm.refused)
	crm.mu.Unlock()
	if len(refused) < 3 {
		t.Fatalf("only %d requests answered 503 in a 2 s outage: not retried with the short schedule", len(refused))
	}
	// During the outage only the oldest pending change is tried, again and
	// again under the same webhook-id; nothing behind it jumps the queue.
	for _, id := range refused {
		if id != refused[0] {
			t.Fatalf("during the outage %s was tried after %s: later changes must wait for the oldest", id, refused[0])
		}
	}
	if len(got) == 0 || got[0].webhookID != refused[0] {
		t.Fatalf("first delivery after the outage is not the change that was being retried (%s)", refused[0])
	}
	if n := checkOncePerVersion(t, got, want); n != 0 {
		t.Errorf("%d changes delivered twice by two instances", n)
	}
	total := 0
	for _, v := range want {
		total += int(v)
	}
	if calls != total+len(refused) {
		t.Errorf("%d requests for %d changes and %d refusals: some change was sent twice", calls, total, len(refused))
	}
	if n := len(e.deadLetters("crm")); n != 0 {
		t.Errorf("%d dead letters within the retry period", n)
	}
}

// The instance delivering to the CRM is killed right after the CRM
// accepted a change and before the receiver's position moved (the delivery
// hook stops the receiver as kill -9 would: no position update, no lease
// release), then the instance is stopped and a new one starts on the same
// Redis. Nothing is lost: the new instance takes the receiver's lease when
// it expires and delivers from the stored position — the killed change
// once more, with the same webhook-id and event, so the CRM can drop it —
// and every later change once, in order.
func TestWebhookDeliveryAcrossKillAndRestart(t *testing.T) {
	crm := newHookServer(t, 0, 200)
	url := crm.srv.URL + "/hooks/churnwatch"
	var deliveries atomic.Int64
	killed := make(chan struct{})
	kill := app.WithDeliverHook(func(reader string) error {
		if reader == "receiver crm" && deliveries.Add(1) == 3 {
			close(killed)
			return app.ErrKilled
		}
		return nil
	})
	tune := func(c *app.Config) {
		fastLease(c)
		c.Receivers = receiversFile(t, url)
	}
	e := startOn(t, testkit.RedisTarget{Node: testkit.Redis(t)}, testkit.Kafka(t), testkit.NewKeys(t), nil, tune, nil, kill)

	customers := []string{"CK1", "CK2", "CK3"}
	for _, c := range customers {
		e.profile(c, "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	}
	e.profilesCaughtUp()
	for i, c := range customers {
		e.signal("k1-"+c, c, "activity.drop", 45)
		e.signal("k2-"+c, c, "salary.stopped", int32(62+i))
	}
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver never delivered three changes")
	}
	e.signalsCaughtUp()
	e.stop()
	before, _, _ := crm.snapshot()
	if len(before) != 3 {
		t.Fatalf("%d deliveries before the kill, want 3", len(before))
	}

	restarted := e.peer(tune)
	// More changes after the restart.
	rm := restarted.client("rm-1", auth.RoleManager, "")
	a1 := restarted.alertOf("CK1", func(a *cwv1.Alert) bool { return a.Version == 2 })
	if _, err := rm.AcknowledgeAlert(context.Background(), &cwv1.AcknowledgeAlertRequest{AlertId: a1.AlertId}); err != nil {
		t.Fatal(err)
	}
	want := restarted.versions(customers)
	restarted.caughtUpReceiver("crm")

	got, _, bad := crm.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad requests: %v", bad)
	}
	if n := checkOncePerVersion(t, got, want); n != 1 {
		t.Errorf("%d repeats after a kill between delivery and position update, want exactly 1 (the change in flight)", n)
	}
	if len(got) > 3 && got[3].webhookID != before[2].webhookID {
		t.Errorf("the first delivery after the restart is %s, want the change delivered just before the kill (%s) again", got[3].webhookID, before[2].webhookID)
	}
}
