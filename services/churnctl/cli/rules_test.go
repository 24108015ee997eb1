package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	rulesapp "github.com/churnwatch/churnwatch/services/rules/app"
)

type cliRig struct {
	t    *testing.T
	keys *testkit.Keys
	vars map[string]string
}

func newRulesRig(t *testing.T) *cliRig { return newRulesRigWith(t, nil) }

// newRulesRigWith starts the rules service with tune applied to its
// configuration.
func newRulesRigWith(t *testing.T, tune func(*rulesapp.Config)) *cliRig {
	t.Helper()
	r := testkit.Redis(t)
	k := testkit.Kafka(t)
	keys := testkit.NewKeys(t)
	cfg := rulesapp.Defaults()
	cfg.Common = testkit.Common("rules", keys, k.Brokers, r.Addr)
	if tune != nil {
		tune(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := rulesapp.New(ctx, cfg, rulesapp.WithLogOutput(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &cliRig{t: t, keys: keys, vars: map[string]string{
		"CHURNWATCH_RULES_ADDR":    a.GRPCAddr(),
		"CHURNWATCH_INGESTER_ADDR": "127.0.0.1:1", // nothing listens there
		"CHURNWATCH_ALERTS_ADDR":   "127.0.0.1:1",
		"CHURNWATCH_KAFKA_BROKERS": strings.Join(k.Brokers, ","),
	}}
}

func (r *cliRig) as(sub string, role auth.Role) {
	r.vars["CHURNWATCH_TOKEN"] = r.keys.Token(r.t, sub, role, "")
}

func (r *cliRig) run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return r.vars[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Main(ctx, env, args)
	return code, out.String(), errb.String()
}

func TestThresholdCommands(t *testing.T) {
	r := newRulesRig(t)
	r.as("ops-1", auth.RoleOps)
	code, out, errs := r.run("thresholds", "show", "--json")
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	var set thresholdSetJSON
	if err := json.Unmarshal([]byte(out), &set); err != nil || set.Version != 1 || set.Settings["dormancy.declining.days.MASS"] != "90" {
		t.Fatalf("show --json: %v %s", err, out)
	}
	if code, out, _ = r.run("thresholds", "show"); code != 0 || !strings.Contains(out, "outflow.large.amount.HIGH_NET_WORTH") {
		t.Fatalf("show: %s", out)
	}
	// ops may not change thresholds.
	if code, _, errs = r.run("thresholds", "set", "dormancy.declining.days=60", "--reason", "try"); code != ExitFailure || !strings.Contains(errs, "PermissionDenied") {
		t.Fatalf("ops set: %d %s", code, errs)
	}
	r.as("admin-1", auth.RoleAdmin)
	if code, _, _ = r.run("thresholds", "set", "dormancy.declining.days=60"); code != ExitUsage {
		t.Fatalf("set without reason: %d", code)
	}
	code, out, errs = r.run("thresholds", "set", "dormancy.declining.days.MASS=60", "outflow.large.amount.BASIC=4000", "--reason", "Q3 review")
	if code != 0 || !strings.Contains(out, "version 2 (was 1)") || !strings.Contains(out, "dormancy.declining.days.MASS") || !strings.Contains(out, "90 → 60") {
		t.Fatalf("set: %d %s %s", code, out, errs)
	}
	code, out, _ = r.run("thresholds", "history", "--json")
	var ch changeJSONT
	if code != 0 || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ch) != nil || ch.Actor != "admin-1" || ch.Reason != "Q3 review" || len(ch.Changes) != 2 {
		t.Fatalf("history: %d %s", code, out)
	}
	if code, out, _ = r.run("thresholds", "history"); code != 0 || !strings.Contains(out, "v2") || !strings.Contains(out, "4000") {
		t.Fatalf("history text: %s", out)
	}
	if code, _, errs = r.run("risk", "NOPE"); code != ExitFailure || !strings.Contains(errs, "NotFound") {
		t.Fatalf("risk of unknown customer: %d %s", code, errs)
	}
}

func TestStatusAndWait(t *testing.T) {
	r := newRulesRig(t)
	// StatusService is for ops and admin only (SPEC §6).
	r.as("rm-1", auth.RoleManager)
	if _, out, _ := r.run("status", "--json"); !strings.Contains(out, "PermissionDenied") && !strings.Contains(out, "permission") {
		t.Fatalf("a manager read the status: %s", out)
	}
	r.as("ops-1", auth.RoleOps)
	code, out, errs := r.run("status", "--json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("status --json lines: %q", out)
	}
	var rules, ing serviceStatusJSON
	if json.Unmarshal([]byte(lines[0]), &ing) != nil || json.Unmarshal([]byte(lines[1]), &rules) != nil {
		t.Fatalf("status json: %s", out)
	}
	if ing.Reachable || ing.Error == "" {
		t.Fatalf("ingester must show as unreachable: %+v", ing)
	}
	// events (profiles come in event order) and the KPIs' alert facts
	if !rules.Reachable || len(rules.Consumers) != 2 || rules.Consumers[0].Group != "churnwatch-rules" || rules.Consumers[1].Group != "churnwatch-rules-kpi" {
		t.Fatalf("rules status: %+v", rules)
	}
	if code, out, _ = r.run("status"); code != 0 || !strings.Contains(out, "UNREACHABLE") || !strings.Contains(out, "group churnwatch-rules") {
		t.Fatalf("status text: %s", out)
	}
	// alerts unreachable: wait cannot succeed.
	if code, _, errs = r.run("wait", "--timeout", "300ms"); code != ExitNotCaughtUp {
		t.Fatalf("wait with alerts down: %d %s", code, errs)
	}
	// Point alerts at the rules app too: every group is caught up and idle.
	r.vars["CHURNWATCH_ALERTS_ADDR"] = r.vars["CHURNWATCH_RULES_ADDR"]
	if code, _, errs = r.run("wait", "--timeout", "20s"); code != 0 {
		t.Fatalf("wait: %d %s", code, errs)
	}
}
