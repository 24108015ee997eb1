package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/money"
)

func init() {
	Register(&Command{Name: "thresholds show", Args: "[--json]", Summary: "the threshold set in force, key by key", Run: thresholdsShow})
	Register(&Command{Name: "thresholds set", Args: "RULE.FIELD[.TIER]=VALUE … --reason \"…\" [--json]",
		Summary: "change thresholds live directly (admin; with CHURNWATCH_THRESHOLDS_FOUR_EYES=true on the rules service it becomes a proposal instead); audited", Run: thresholdsSet,
		Help: `An admin's change goes live at once as the next version. When the rules
service runs with CHURNWATCH_THRESHOLDS_FOUR_EYES=true nothing goes live: the
change becomes a proposal with the server's back-test, and set prints
"proposed as tp-N, needs a second person's approval" (--json: the proposal,
with "proposed": true). A second principal then approves it
(churnctl thresholds approve tp-N).`})
	Register(&Command{Name: "thresholds history", Args: "[--limit N] [--json]",
		Summary: "who changed which threshold, when and why: direct changes, and approved proposals with proposer, approver and back-test", Run: thresholdsHistory})
	Register(&Command{Name: "risk", Args: "CUSTOMER_ID [--json]", Summary: "a customer's stage, score and live signals with explanations", Run: risk})
	Register(&Command{Name: "status", Args: "[--json]", Summary: "per service: ready, consumer lag, partition clocks", Run: statusCmd})
	Register(&Command{Name: "wait", Args: "[--timeout 60s]", Summary: "return when rules and alerts have caught up (exit 4 on timeout)", Run: waitCmd})
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// ---- thresholds ----

type thresholdSetJSON struct {
	Version   int64             `json:"version"`
	UpdatedAt string            `json:"updatedAt,omitempty"`
	UpdatedBy string            `json:"updatedBy,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Settings  map[string]string `json:"settings"`
}

func setJSON(s *cwv1.ThresholdSet) thresholdSetJSON {
	out := thresholdSetJSON{Version: s.GetVersion(), UpdatedAt: ts(s.GetUpdatedAt()), UpdatedBy: s.GetUpdatedBy(), Reason: s.GetReason(), Settings: map[string]string{}}
	for _, kv := range s.GetSettings() {
		out.Settings[kv.GetKey()] = kv.GetValue()
	}
	return out
}

func rulesClient(env *Env) (cwv1.RulesAdminServiceClient, func(), error) {
	conn, err := env.Dial("rules")
	if err != nil {
		return nil, nil, err
	}
	return cwv1.NewRulesAdminServiceClient(conn), func() { conn.Close() }, nil
}

func thresholdsShow(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds show")
	asJSON := fs.Bool("json", false, "one JSON object")
	if pos, err := Parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return Usagef("thresholds show takes no arguments")
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GetThresholds(ctx, &cwv1.GetThresholdsRequest{})
	if err != nil {
		return RPCError("rules", err)
	}
	set := resp.GetThresholds()
	if *asJSON {
		return env.JSON(setJSON(set))
	}
	fmt.Fprintf(env.Stdout, "threshold set version %d", set.GetVersion())
	if set.GetUpdatedBy() != "" {
		fmt.Fprintf(env.Stdout, " — %s by %s: %s", ts(set.GetUpdatedAt()), set.GetUpdatedBy(), set.GetReason())
	}
	fmt.Fprintln(env.Stdout)
	for _, kv := range set.GetSettings() {
		fmt.Fprintf(env.Stdout, "  %-46s %s\n", kv.GetKey(), kv.GetValue())
	}
	return nil
}

func thresholdsSet(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds set")
	reason := fs.String("reason", "", "why (required; goes into the audit trail)")
	asJSON := fs.Bool("json", false, "one JSON object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	settings, err := parseChange(pos, *reason)
	if err != nil {
		return err
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	cur, err := c.GetThresholds(ctx, &cwv1.GetThresholdsRequest{})
	if err != nil {
		return RPCError("rules", err)
	}
	resp, err := c.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{
		ExpectedVersion: cur.GetThresholds().GetVersion(), Settings: settings, Reason: *reason})
	if err != nil {
		return RPCError("rules", err)
	}
	if p := resp.GetProposal(); p != nil {
		if *asJSON {
			return env.JSON(struct {
				Proposed bool `json:"proposed"`
				proposalJSONT
			}{true, proposalJSON(p)})
		}
		fmt.Fprintf(env.Stdout, "proposed as %s, needs a second person's approval (four-eyes is enforced on the rules service)\n\n", p.GetId())
		printProposal(env.Stdout, p)
		fmt.Fprintf(env.Stdout, "\na second principal (an admin, or ops other than you) decides it:\n  churnctl thresholds approve %s   |   churnctl thresholds reject %s --reason \"…\"\n", p.GetId(), p.GetId())
		return nil
	}
	if *asJSON {
		return env.JSON(changeJSON(resp.GetChange()))
	}
	ch := resp.GetChange()
	fmt.Fprintf(env.Stdout, "threshold set version %d (was %d)\n", ch.GetVersion(), ch.GetPreviousVersion())
	for _, kv := range ch.GetChanges() {
		fmt.Fprintf(env.Stdout, "  %-46s %s → %s\n", kv.GetKey(), kv.GetOldValue(), kv.GetNewValue())
	}
	return nil
}

type settingChangeJSON struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

type changeJSONT struct {
	Version         int64               `json:"version"`
	PreviousVersion int64               `json:"previousVersion"`
	Actor           string              `json:"actor"`
	ChangedAt       string              `json:"changedAt"`
	Reason          string              `json:"reason"`
	Changes         []settingChangeJSON `json:"changes"`
	// Kind is "direct" or "proposal"; the rest is set for proposals.
	Kind           string        `json:"kind"`
	ProposalID     string        `json:"proposalId,omitempty"`
	Proposer       string        `json:"proposer,omitempty"`
	Approver       string        `json:"approver,omitempty"`
	ApprovalReason string        `json:"approvalReason,omitempty"`
	Backtest       *backtestJSON `json:"backtest,omitempty"`
}

func changeJSON(c *cwv1.ThresholdChange) changeJSONT {
	out := changeJSONT{Version: c.GetVersion(), PreviousVersion: c.GetPreviousVersion(), Actor: c.GetActor(),
		ChangedAt: ts(c.GetChangedAt()), Reason: c.GetReason(), Changes: settingChanges(c.GetChanges()),
		Kind: "direct", ProposalID: c.GetProposalId(), Proposer: c.GetProposer(), Approver: c.GetApprover(),
		ApprovalReason: c.GetApprovalReason(), Backtest: backtestOut(c.GetBacktest())}
	if c.GetKind() == cwv1.ThresholdChangeKind_THRESHOLD_CHANGE_KIND_PROPOSAL {
		out.Kind = "proposal"
	}
	return out
}

func thresholdsHistory(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds history")
	limit := fs.Int("limit", 50, "how many changes, newest first")
	asJSON := fs.Bool("json", false, "one JSON object per change")
	if pos, err := Parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return Usagef("thresholds history takes no arguments")
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.ListThresholdChanges(ctx, &cwv1.ListThresholdChangesRequest{Limit: int32(*limit)})
	if err != nil {
		return RPCError("rules", err)
	}
	for _, ch := range resp.GetChanges() {
		if *asJSON {
			if err := env.JSON(changeJSON(ch)); err != nil {
				return err
			}
			continue
		}
		j := changeJSON(ch)
		if j.Kind == "proposal" {
			fmt.Fprintf(env.Stdout, "v%d  %s  %s proposed by %s, approved by %s  %q\n", j.Version, j.ChangedAt, j.ProposalID, j.Proposer, j.Approver, j.Reason)
			if j.ApprovalReason != "" {
				fmt.Fprintf(env.Stdout, "      approver's note: %s\n", j.ApprovalReason)
			}
		} else {
			fmt.Fprintf(env.Stdout, "v%d  %s  direct change by %s  %q\n", j.Version, j.ChangedAt, j.Actor, j.Reason)
		}
		for _, kv := range j.Changes {
			fmt.Fprintf(env.Stdout, "      %-46s %s → %s\n", kv.Key, kv.Old, kv.New)
		}
		printBacktestSummary(env.Stdout, j.Backtest, "      ")
	}
	if len(resp.GetChanges()) == 0 && !*asJSON {
		fmt.Fprintln(env.Stdout, "no threshold changes yet (version 1 = SPEC defaults)")
	}
	return nil
}

// ---- risk ----

type signalJSON struct {
	SignalID         string   `json:"signalId"`
	Rule             string   `json:"rule"`
	Time             string   `json:"time"`
	Observed         string   `json:"observed"`
	Threshold        string   `json:"threshold"`
	Unit             string   `json:"unit"`
	ThresholdVersion int64    `json:"thresholdVersion"`
	EventIDs         []string `json:"eventIds"`
	Detail           string   `json:"detail"`
}

type riskJSON struct {
	CustomerID       string       `json:"customerId"`
	Tier             string       `json:"tier"`
	KnownCustomer    bool         `json:"knownCustomer"`
	Stage            string       `json:"stage"`
	Score            int32        `json:"score"`
	Severity         string       `json:"severity"`
	LastActivity     string       `json:"lastActivity,omitempty"`
	Partition        int32        `json:"partition"`
	PartitionClock   string       `json:"partitionClock,omitempty"`
	ThresholdVersion int64        `json:"thresholdVersion"`
	Signals          []signalJSON `json:"signals"`
	Daily            []dayJSON    `json:"daily"`
}

// dayJSON is one day of GetCustomerRisk's daily series.
type dayJSON struct {
	Date         string `json:"date"`
	Transactions int32  `json:"transactions"`
	Balance      string `json:"balance,omitempty"` // decimal, in currency; absent before the first known balance
	Currency     string `json:"currency,omitempty"`
}

func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func risk(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "risk")
	asJSON := fs.Bool("json", false, "one JSON object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return Usagef("usage: churnctl risk CUSTOMER_ID")
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	r, err := c.GetCustomerRisk(ctx, &cwv1.GetCustomerRiskRequest{CustomerId: pos[0]})
	if err != nil {
		return RPCError("rules", err)
	}
	out := riskJSON{CustomerID: r.GetCustomerId(), Tier: enumName(r.GetTier().String(), "TIER_"), KnownCustomer: r.GetKnownCustomer(),
		Stage: enumName(r.GetStage().String(), "STAGE_"), Score: r.GetScore(), Severity: enumName(r.GetSeverity().String(), "SEVERITY_"),
		LastActivity: ts(r.GetLastActivity()), Partition: r.GetPartition(), PartitionClock: ts(r.GetPartitionClock()),
		ThresholdVersion: r.GetThresholdVersion(), Signals: []signalJSON{}}
	for _, s := range r.GetLiveSignals() {
		e := s.GetExplanation()
		out.Signals = append(out.Signals, signalJSON{SignalID: s.GetSignalId(), Rule: s.GetRuleId(), Time: ts(s.GetEventTime()),
			Observed: e.GetObserved(), Threshold: e.GetThreshold(), Unit: e.GetUnit(), ThresholdVersion: e.GetThresholdVersion(),
			EventIDs: append([]string{}, e.GetEventIds()...), Detail: e.GetDetail()})
	}
	out.Daily = []dayJSON{}
	for _, d := range r.GetDaily() {
		dj := dayJSON{Date: d.GetDate(), Transactions: d.GetTransactions()}
		if d.BalanceMinor != nil {
			dj.Balance, dj.Currency = money.FormatMinor(d.GetBalanceMinor(), d.GetCurrency()), d.GetCurrency()
		}
		out.Daily = append(out.Daily, dj)
	}
	if *asJSON {
		return env.JSON(out)
	}
	w := env.Stdout
	known := ""
	if !out.KnownCustomer {
		known = " (no customer record: scored as MASS)"
	}
	fmt.Fprintf(w, "customer %s  tier %s%s\n", out.CustomerID, out.Tier, known)
	fmt.Fprintf(w, "stage %s  score %d  severity %s\n", out.Stage, out.Score, out.Severity)
	if out.LastActivity != "" {
		fmt.Fprintf(w, "last activity %s\n", out.LastActivity)
	}
	fmt.Fprintf(w, "partition %d  clock %s  thresholds v%d\n", out.Partition, orDash(out.PartitionClock), out.ThresholdVersion)
	printDaily(w, out.Daily)
	if len(out.Signals) == 0 {
		fmt.Fprintln(w, "no live signals")
	}
	for _, s := range out.Signals {
		fmt.Fprintf(w, "\n  %s  at %s\n", s.Rule, s.Time)
		fmt.Fprintf(w, "    observed %s vs threshold %s %s (thresholds v%d)\n", s.Observed, s.Threshold, s.Unit, s.ThresholdVersion)
		if s.Detail != "" {
			fmt.Fprintf(w, "    %s\n", s.Detail)
		}
		if len(s.EventIDs) > 0 {
			fmt.Fprintf(w, "    events %s\n", strings.Join(s.EventIDs, ", "))
		}
	}
	return nil
}

// printDaily summarises the daily series: transactions per 30 days and the
// end-of-day balance at each period's end (--json lists every day).
func printDaily(w io.Writer, days []dayJSON) {
	if len(days) == 0 {
		return
	}
	fmt.Fprintf(w, "last %d days (per 30 days: customer transactions, end-of-day balance; --json lists every day)\n", len(days))
	for lo := 0; lo < len(days); lo += 30 {
		hi := min(lo+30, len(days))
		n := int32(0)
		for _, d := range days[lo:hi] {
			n += d.Transactions
		}
		last := days[hi-1]
		fmt.Fprintf(w, "  %s … %s  %4d  %s %s\n", days[lo].Date, last.Date, n, orDash(last.Balance), last.Currency)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- status and wait ----

var statusServices = []string{"ingester", "rules", "alerts"}

type partitionJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Clock     string `json:"clock,omitempty"`
}

type consumerJSON struct {
	Group      string          `json:"group"`
	TotalLag   int64           `json:"totalLag"`
	Idle       bool            `json:"idle"`
	Partitions []partitionJSON `json:"partitions"`
}

type serviceStatusJSON struct {
	Service   string         `json:"service"`
	Address   string         `json:"address"`
	Reachable bool           `json:"reachable"`
	Error     string         `json:"error,omitempty"`
	Ready     bool           `json:"ready"`
	Version   string         `json:"version,omitempty"`
	Consumers []consumerJSON `json:"consumers"`
}

// serviceStatus asks one service; an unreachable one is reported as such,
// not as an error.
func serviceStatus(ctx context.Context, env *Env, service string) serviceStatusJSON {
	out := serviceStatusJSON{Service: service, Address: env.Addr(service), Consumers: []consumerJSON{}}
	conn, err := env.Dial(service)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cwv1.NewStatusServiceClient(conn).GetStatus(cctx, &cwv1.GetStatusRequest{})
	if err != nil {
		var ee *ExitError
		if errors.As(RPCError(service, err), &ee) {
			out.Error = ee.Err.Error()
		}
		return out
	}
	out.Reachable, out.Ready, out.Version = true, resp.GetReady(), resp.GetVersion()
	for _, c := range resp.GetConsumers() {
		cj := consumerJSON{Group: c.GetGroup(), TotalLag: c.GetTotalLag(), Idle: c.GetIdle(), Partitions: []partitionJSON{}}
		for _, p := range c.GetPartitions() {
			cj.Partitions = append(cj.Partitions, partitionJSON{Topic: p.GetTopic(), Partition: p.GetPartition(),
				Committed: p.GetCommittedOffset(), End: p.GetEndOffset(), Lag: p.GetLag(), Clock: ts(p.GetClock())})
		}
		sort.Slice(cj.Partitions, func(i, j int) bool { return cj.Partitions[i].Partition < cj.Partitions[j].Partition })
		out.Consumers = append(out.Consumers, cj)
	}
	return out
}

func statusCmd(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "status")
	asJSON := fs.Bool("json", false, "one JSON object per service")
	if pos, err := Parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return Usagef("status takes no arguments")
	}
	down := 0
	for _, svc := range statusServices {
		st := serviceStatus(ctx, env, svc)
		if !st.Reachable {
			down++
		}
		if *asJSON {
			if err := env.JSON(st); err != nil {
				return err
			}
			continue
		}
		printStatus(env, st)
	}
	if down == len(statusServices) {
		return &ExitError{Code: ExitFailure, Err: errors.New("no service reachable (set CHURNWATCH_*_ADDR, or source DIR/dev.env)")}
	}
	return nil
}

func printStatus(env *Env, st serviceStatusJSON) {
	w := env.Stdout
	if !st.Reachable {
		fmt.Fprintf(w, "%-8s %s  UNREACHABLE  %s\n", st.Service, st.Address, st.Error)
		return
	}
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "%-8s %s  %s  %s\n", st.Service, st.Address, ready, st.Version)
	for _, c := range st.Consumers {
		idle := "busy"
		if c.Idle {
			idle = "idle"
		}
		fmt.Fprintf(w, "  group %s  lag %d  %s\n", c.Group, c.TotalLag, idle)
		for _, p := range c.Partitions {
			fmt.Fprintf(w, "    %s/%d  committed %d  end %d  lag %d", p.Topic, p.Partition, p.Committed, p.End, p.Lag)
			if p.Clock != "" {
				fmt.Fprintf(w, "  clock %s", p.Clock)
			}
			fmt.Fprintln(w)
		}
	}
}

// caughtUp reports whether every consumer group of rules and alerts has
// lag 0 and is idle, and why not.
func caughtUp(ctx context.Context, env *Env) (bool, string) {
	for _, svc := range []string{"rules", "alerts"} {
		st := serviceStatus(ctx, env, svc)
		switch {
		case !st.Reachable:
			return false, svc + " unreachable: " + st.Error
		case !st.Ready:
			return false, svc + " not ready"
		}
		for _, c := range st.Consumers {
			if c.TotalLag != 0 || !c.Idle {
				return false, fmt.Sprintf("%s group %s: lag %d, idle %v", svc, c.Group, c.TotalLag, c.Idle)
			}
		}
	}
	return true, ""
}

func waitCmd(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "wait")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long (exit 4)")
	interval := fs.Duration("interval", 250*time.Millisecond, "between checks")
	if pos, err := Parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return Usagef("wait takes no arguments")
	}
	return WaitCaughtUp(ctx, env, *timeout, *interval)
}

// WaitCaughtUp polls the rules and alerts StatusService until every consumer
// group has lag 0 and is idle, twice in a row, or returns an ExitError with
// ExitNotCaughtUp after timeout. `churnctl wait`, the demo, the benchmark
// and the end-to-end tests all wait this way.
func WaitCaughtUp(ctx context.Context, env *Env, timeout, interval time.Duration) error {
	deadline := time.Now().Add(timeout)
	streak, why := 0, ""
	for {
		var ok bool
		ok, why = caughtUp(ctx, env)
		if ok {
			streak++
			// Twice in a row: a batch fetched just after the first look
			// would show as busy or lagging in the second.
			if streak == 2 {
				return nil
			}
		} else {
			streak = 0
		}
		if time.Now().After(deadline) {
			return &ExitError{Code: ExitNotCaughtUp, Err: fmt.Errorf("not caught up after %s: %s", timeout, why)}
		}
		select {
		case <-ctx.Done():
			return &ExitError{Code: ExitNotCaughtUp, Err: ctx.Err()}
		case <-time.After(interval):
		}
	}
}
