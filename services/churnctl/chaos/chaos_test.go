package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestShortChaosRun is `make chaos` in small: the service binaries as
// separate processes, four SIGKILLs of random instances during and between
// ingest calls, Redis killed once (and a broker, on real Kafka), an ops
// stream open throughout; then the SPEC §8 "No loss" contract, counter by
// counter.
func TestShortChaosRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not on PATH (scripts/setup.sh installs it)")
	}
	root, err := FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer bcancel()
	if err := Build(bctx, root, bin, false, "ingester", "rules", "alerts", "churnwatch"); err != nil {
		t.Fatal(err)
	}
	mode := "embedded"
	if _, err := os.Stat(filepath.Join(root, "scripts", "kafka.sh")); err == nil && os.Getenv("CHAOS_KAFKA") != "embedded" {
		mode = "real"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Kafka: mode, Kills: 4, Customers: 200, Months: 6, Seed: 3, Partitions: 3, Batch: 1000,
		Root: root, BinDir: bin, Dir: t.TempDir(), BrokerCommand: []string{filepath.Join(bin, "churnwatch"), "broker"}, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s Kafka: %+v", mode, *rep)

	if rep.Kills < 4 || rep.RedisKills != 1 || rep.ScaleEvents != 2 || (mode == "real" && rep.BrokerKills != 1) {
		t.Errorf("faults: %d kills, %d broker, %d Redis, %d scale events; want ≥ 4, 1 on real Kafka, 1, 2", rep.Kills, rep.BrokerKills, rep.RedisKills, rep.ScaleEvents)
	}
	if rep.EventsAccepted+rep.EventsLate+rep.EventsRejected != rep.Events {
		t.Errorf("%d events sent, %d accepted + %d late + %d rejected", rep.Events, rep.EventsAccepted, rep.EventsLate, rep.EventsRejected)
	}
	// The simulated history is in order: a crash or a retry must not turn
	// any of it late (SPEC §2).
	if rep.EventsLate != 0 || rep.EventsRejected != 0 {
		t.Errorf("%d events reported late and %d rejected; want 0", rep.EventsLate, rep.EventsRejected)
	}
	if rep.EventsScored != rep.EventsAccepted {
		t.Errorf("events_scored %d != events_accepted %d (%d accepted events not on the events topic)", rep.EventsScored, rep.EventsAccepted, rep.EventsNotOnTopic)
	}
	if rep.EventsScored != rep.EventsBacktestScored {
		t.Errorf("events_scored %d, the back-test scored %d", rep.EventsScored, rep.EventsBacktestScored)
	}
	if rep.AlertsBacktest < 10 {
		t.Errorf("the back-test raised only %d alerts: the comparison proves little", rep.AlertsBacktest)
	}
	if rep.Mismatches != 0 {
		t.Errorf("%d differences between live alerts and the back-test, first: %v", rep.Mismatches, rep.FirstMismatches)
	}
	if rep.DuplicateAlertPublications != 0 {
		t.Errorf("duplicate_alert_publications %d, want 0", rep.DuplicateAlertPublications)
	}
	if rep.MissingAlertVersions != 0 {
		t.Errorf("missing_alert_versions %d, want 0", rep.MissingAlertVersions)
	}
	if rep.SubscriberGaps != 0 {
		t.Errorf("subscriber_gaps %d, want 0", rep.SubscriberGaps)
	}
	if rep.UnexpectedExits != 0 {
		t.Errorf("%d service instances exited without being killed", rep.UnexpectedExits)
	}
	if f := rep.Failures(); len(f) > 0 {
		t.Logf("contract broken: %v", f)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}
