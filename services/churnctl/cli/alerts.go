package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

func init() {
	Register(&Command{Name: "alerts list", Args: "[--state open,…] [--customer ID] [--severity X] [--tier T] [--rule R] [--limit N] [--json]",
		Summary: "list the alerts routed to you", Run: alertsList})
	Register(&Command{Name: "alerts get", Args: "ID [--json]", Summary: "show one alert with its history", Run: alertsGet})
	Register(&Command{Name: "alerts ack", Args: "ID [--note TEXT]", Summary: "acknowledge an alert", Run: alertsAck})
	Register(&Command{Name: "alerts resolve", Args: "ID --outcome retained|churned|unreachable|false_alarm --note TEXT",
		Summary: "resolve an alert with its outcome", Run: alertsResolve})
	Register(&Command{Name: "alerts snooze", Args: "ID --until RFC3339|DURATION [--note TEXT]", Summary: "quiet an alert until a time", Run: alertsSnooze})
	Register(&Command{Name: "alerts reassign", Args: "ID --to MANAGER --note TEXT",
		Summary: "move an open alert to another manager (branch heads, ops, admin)", Run: alertsReassign})
	Register(&Command{Name: "alerts precision", Args: "[--json]", Summary: "outcomes of resolved alerts per rule", Run: alertsPrecision})
	Register(&Command{Name: "watch", Args: "[--json] [--cursor-file F]", Summary: "live alert stream for the caller, resumable", Run: alertsWatch})
}

// ProtoJSONLine renders m as one line of protojson with camelCase names,
// the shape `alerts list --json` and `watch --json` print (and the offline
// back-test prints for its alerts).
func ProtoJSONLine(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	// protojson output is deliberately unstable in whitespace: compact it.
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func writeProtoLine(w io.Writer, m proto.Message) error {
	b, err := ProtoJSONLine(m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// enumValue parses a user's spelling of an enum value ("open", "HIGH",
// "false_alarm", "hnw") with its prefix.
func alertEnumValue(values map[string]int32, prefix, s string) (int32, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "HNW" && prefix == "TIER_" {
		s = "HIGH_NET_WORTH"
	}
	v, ok := values[prefix+strings.TrimPrefix(s, prefix)]
	return v, ok && v != 0
}

func alertsClient(env *Env) (cwv1.AlertServiceClient, func(), error) {
	conn, err := env.Dial("alerts")
	if err != nil {
		return nil, nil, err
	}
	return cwv1.NewAlertServiceClient(conn), func() { conn.Close() }, nil
}

func alertsList(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts list")
	states := fs.String("state", "", "comma list: open, acknowledged, snoozed, escalated, resolved")
	customer := fs.String("customer", "", "customer id")
	severities := fs.String("severity", "", "comma list: low, medium, high, critical")
	tiers := fs.String("tier", "", "comma list: hnw, potential, mass, basic")
	rule := fs.String("rule", "", "rule id, e.g. outflow.large")
	manager := fs.String("manager", "", "only alerts routed to this manager id")
	overdue := fs.Bool("overdue", false, "only alerts not acknowledged by their deadline")
	sortBy := fs.String("sort", "", "severity (most severe first) or due (earliest deadline first); default newest first")
	limit := fs.Int("limit", 0, "stop after N alerts (0 = all)")
	asJSON := fs.Bool("json", false, "one JSON object (cwv1.Alert) per line")
	if _, err := Parse(fs, args); err != nil {
		return err
	}
	req := &cwv1.ListAlertsRequest{CustomerId: *customer, RuleId: *rule, ManagerId: *manager, Overdue: *overdue, PageSize: 200}
	switch *sortBy {
	case "":
	case "severity":
		req.Sort = cwv1.ListAlertsSort_LIST_ALERTS_SORT_SEVERITY
	case "due":
		req.Sort = cwv1.ListAlertsSort_LIST_ALERTS_SORT_DUE
	default:
		return Usagef("unknown sort %q: want severity or due", *sortBy)
	}
	for _, s := range alertSplitList(*states) {
		v, ok := alertEnumValue(cwv1.AlertState_value, "ALERT_STATE_", s)
		if !ok {
			return Usagef("unknown state %q", s)
		}
		req.States = append(req.States, cwv1.AlertState(v))
	}
	for _, s := range alertSplitList(*severities) {
		v, ok := alertEnumValue(cwv1.Severity_value, "SEVERITY_", s)
		if !ok {
			return Usagef("unknown severity %q", s)
		}
		req.Severities = append(req.Severities, cwv1.Severity(v))
	}
	for _, s := range alertSplitList(*tiers) {
		v, ok := alertEnumValue(cwv1.Tier_value, "TIER_", s)
		if !ok {
			return Usagef("unknown tier %q", s)
		}
		req.Tiers = append(req.Tiers, cwv1.Tier(v))
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	n := 0
	if !*asJSON {
		fmt.Fprintf(env.Stdout, "%-28s %-13s %-9s %-15s %-12s %-10s %s\n", "ALERT", "STATE", "SEVERITY", "TIER", "CUSTOMER", "MANAGER", "RULES")
	}
	for {
		resp, err := cl.ListAlerts(ctx, req)
		if err != nil {
			return RPCError("alerts", err)
		}
		for _, a := range resp.Alerts {
			if *asJSON {
				err = writeProtoLine(env.Stdout, a)
			} else {
				_, err = fmt.Fprintf(env.Stdout, "%-28s %-13s %-9s %-15s %-12s %-10s %s\n", a.AlertId, alertShort(a.State.String(), "ALERT_STATE_"),
					alertShort(a.Severity.String(), "SEVERITY_"), alertShort(a.Tier.String(), "TIER_"), a.CustomerId, alertDash(a.ManagerId), strings.Join(alertRuleIDs(a), ","))
			}
			if err != nil {
				return err
			}
			if n++; *limit > 0 && n >= *limit {
				return nil
			}
		}
		if resp.NextPageToken == "" {
			return nil
		}
		req.PageToken = resp.NextPageToken
	}
}

func alertSplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func alertShort(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func alertDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func alertRuleIDs(a *cwv1.Alert) []string {
	var out []string
	for _, r := range a.Reasons {
		out = append(out, r.RuleId)
	}
	return out
}

func alertIDArg(pos []string, name string) (string, error) {
	if len(pos) != 1 {
		return "", Usagef("%s needs exactly one alert id", name)
	}
	return pos[0], nil
}

func alertsGet(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts get")
	asJSON := fs.Bool("json", false, "print the alert as one JSON object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := alertIDArg(pos, "alerts get")
	if err != nil {
		return err
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: id})
	if err != nil {
		return RPCError("alerts", err)
	}
	if *asJSON {
		return writeProtoLine(env.Stdout, resp.Alert)
	}
	printAlertText(env.Stdout, resp.Alert, "")
	for _, h := range resp.Alert.History {
		fmt.Fprintf(env.Stdout, "  v%-3d %s %-15s by %-10s %s %s\n", h.Version, h.At.AsTime().Local().Format(time.DateTime),
			alertShort(h.Change.String(), "ALERT_CHANGE_"), h.Actor, alertShort(h.State.String(), "ALERT_STATE_"), h.Note)
	}
	return nil
}

// printAlertText is the readable rendering: headline, reasons with observed vs
// threshold, recommended action.
func printAlertText(w io.Writer, a *cwv1.Alert, headline string) {
	fmt.Fprintf(w, "%s%-8s %s  customer %s  tier %s  score %d  stage %s  %s\n", headline, alertShort(a.Severity.String(), "SEVERITY_"),
		a.AlertId, a.CustomerId, alertShort(a.Tier.String(), "TIER_"), a.Score, alertShort(a.Stage.String(), "STAGE_"), alertShort(a.State.String(), "ALERT_STATE_"))
	fmt.Fprintf(w, "  manager %s  branch %s", alertDash(a.ManagerId), alertDash(a.BranchId))
	if a.AckDueAt != nil {
		fmt.Fprintf(w, "  ack due %s", a.AckDueAt.AsTime().Local().Format(time.DateTime))
	}
	fmt.Fprintln(w)
	for _, r := range a.Reasons {
		fmt.Fprintf(w, "  • %s: observed %s vs threshold %s %s", r.RuleId, r.Observed, r.Threshold, r.Unit)
		if r.Detail != "" {
			fmt.Fprintf(w, " — %s", r.Detail)
		}
		fmt.Fprintln(w)
	}
	if a.RecommendedAction != "" {
		fmt.Fprintf(w, "  → %s\n", a.RecommendedAction)
	}
}

func alertsAck(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts ack")
	note := fs.String("note", "", "note for the history")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := alertIDArg(pos, "alerts ack")
	if err != nil {
		return err
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.AcknowledgeAlert(ctx, &cwv1.AcknowledgeAlertRequest{AlertId: id, Note: *note})
	if err != nil {
		return RPCError("alerts", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "%s %s (v%d)\n", id, alertShort(resp.Alert.State.String(), "ALERT_STATE_"), resp.Alert.Version)
	return err
}

func alertsReassign(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts reassign")
	to := fs.String("to", "", "the manager (principal id, e.g. rm-002) who takes the alert")
	note := fs.String("note", "", "why, for the alert's history")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := alertIDArg(pos, "alerts reassign")
	if err != nil {
		return err
	}
	if *to == "" {
		return Usagef("--to MANAGER is required")
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.ReassignAlert(ctx, &cwv1.ReassignAlertRequest{AlertId: id, ManagerId: *to, Note: *note})
	if err != nil {
		return RPCError("alerts", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "%s reassigned to %s (v%d)\n", id, resp.Alert.GetManagerId(), resp.Alert.GetVersion())
	return err
}

func alertsResolve(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts resolve")
	outcome := fs.String("outcome", "", "retained, churned, unreachable or false_alarm")
	note := fs.String("note", "", "what happened")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := alertIDArg(pos, "alerts resolve")
	if err != nil {
		return err
	}
	v, ok := alertEnumValue(cwv1.Outcome_value, "OUTCOME_", *outcome)
	if !ok {
		return Usagef("--outcome must be retained, churned, unreachable or false_alarm")
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: id, Outcome: cwv1.Outcome(v), Note: *note})
	if err != nil {
		return RPCError("alerts", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "%s RESOLVED %s (v%d)\n", id, alertShort(resp.Alert.Outcome.String(), "OUTCOME_"), resp.Alert.Version)
	return err
}

// parseSnoozeUntil accepts RFC 3339 or a duration from now ("48h", "90m").
func parseSnoozeUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--until %q: want RFC 3339 (2025-03-01T09:00:00Z) or a duration (48h)", s)
}

func alertsSnooze(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts snooze")
	until := fs.String("until", "", "RFC 3339 time or a duration from now, e.g. 48h")
	note := fs.String("note", "", "why")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := alertIDArg(pos, "alerts snooze")
	if err != nil {
		return err
	}
	t, err := parseSnoozeUntil(*until, time.Now())
	if err != nil {
		return Usagef("%v", err)
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.SnoozeAlert(ctx, &cwv1.SnoozeAlertRequest{AlertId: id, Until: timestamppb.New(t), Note: *note})
	if err != nil {
		return RPCError("alerts", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "%s SNOOZED until %s (v%d)\n", id, resp.Alert.SnoozedUntil.AsTime().Local().Format(time.RFC3339), resp.Alert.Version)
	return err
}

func alertsPrecision(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "alerts precision")
	asJSON := fs.Bool("json", false, "one JSON object per rule")
	if _, err := Parse(fs, args); err != nil {
		return err
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := cl.GetRulePrecision(ctx, &cwv1.GetRulePrecisionRequest{})
	if err != nil {
		return RPCError("alerts", err)
	}
	if !*asJSON {
		fmt.Fprintf(env.Stdout, "%-20s %9s %8s %12s %12s %9s\n", "RULE", "RETAINED", "CHURNED", "UNREACHABLE", "FALSE_ALARM", "PRECISION")
	}
	for _, r := range resp.Rules {
		if *asJSON {
			err = writeProtoLine(env.Stdout, r)
		} else {
			_, err = fmt.Fprintf(env.Stdout, "%-20s %9d %8d %12d %12d %9.2f\n", r.RuleId, r.Retained, r.Churned, r.Unreachable, r.FalseAlarm, r.Precision)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// watchTokenSubject reads the sub claim of a JWT without verifying it: only to
// name the default cursor file.
func watchTokenSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "anonymous"
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "anonymous"
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(b, &c) != nil || c.Sub == "" {
		return "anonymous"
	}
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, c.Sub)
}

func watchCursorFile(env *Env) string {
	dir := env.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home := env.Getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "churnwatch", "watch-"+watchTokenSubject(env.Token())+".cursor")
}

// saveWatchCursor replaces the cursor file atomically, so a crash never leaves
// half a cursor.
func saveWatchCursor(path, c string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(c+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// alertsWatch follows the caller's alert stream: reconnects with backoff, keeps
// its cursor in a file so that a restart resumes where it stopped, and
// drops repeats by (alert id, version) since delivery is at-least-once.
func alertsWatch(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "watch")
	asJSON := fs.Bool("json", false, "one JSON object (cwv1.AlertUpdate) per line (also when stdout is not a terminal)")
	cursorFile := fs.String("cursor-file", "", "where the resume cursor is kept (default ~/.cache/churnwatch/watch-SUBJECT.cursor)")
	if _, err := Parse(fs, args); err != nil {
		return err
	}
	if *cursorFile == "" {
		*cursorFile = watchCursorFile(env)
	}
	jsonOut := *asJSON || !env.IsTerminal
	cur := ""
	if b, err := os.ReadFile(*cursorFile); err == nil {
		cur = strings.TrimSpace(string(b))
	}
	cl, closeConn, err := alertsClient(env)
	if err != nil {
		return err
	}
	defer closeConn()
	seen := map[string]int64{}
	backoff := 500 * time.Millisecond
	for {
		err := watchOnce(ctx, env, cl, &cur, *cursorFile, seen, jsonOut, func() { backoff = 500 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied:
			return RPCError("alerts", err)
		case codes.InvalidArgument:
			if cur != "" {
				// A cursor from another principal or a garbled file: start over.
				fmt.Fprintf(env.Stderr, "churnctl watch: cursor refused (%s); starting from the open alerts\n", status.Convert(err).Message())
				cur = ""
				continue
			}
			return RPCError("alerts", err)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(env.Stderr, "churnctl watch: %s; reconnecting in %s\n", status.Convert(err).Message(), backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func watchOnce(ctx context.Context, env *Env, cl cwv1.AlertServiceClient, cur *string, cursorFile string, seen map[string]int64, jsonOut bool, connected func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cl.Subscribe(sctx, &cwv1.SubscribeRequest{Cursor: *cur})
	if err != nil {
		return err
	}
	first := true
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if first {
			connected()
			first = false
		}
		u := resp.GetUpdate()
		a := u.GetAlert()
		if v, ok := seen[a.GetAlertId()]; !ok || a.GetVersion() > v {
			seen[a.GetAlertId()] = a.GetVersion()
			if jsonOut {
				err = writeProtoLine(env.Stdout, u)
			} else {
				bell := ""
				if u.Notify {
					bell = "! "
				}
				printAlertText(env.Stdout, a, fmt.Sprintf("%s %s%-16s ", u.GetAt().AsTime().Local().Format(time.TimeOnly), bell, alertShort(u.Change.String(), "ALERT_CHANGE_")))
			}
			if err != nil {
				return err
			}
		}
		if u.Cursor != "" {
			*cur = u.Cursor
			if err := saveWatchCursor(cursorFile, u.Cursor); err != nil {
				fmt.Fprintf(env.Stderr, "churnctl watch: cannot keep the cursor in %s: %v\n", cursorFile, err)
			}
		}
	}
}
