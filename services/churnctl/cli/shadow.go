package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

func init() {
	Register(&Command{Name: "thresholds shadow", Args: "RULE.FIELD[.TIER]=VALUE … --name NAME --reason \"…\" | --stop NAME | --purge NAME | --list [--json]",
		Summary: "run a proposed threshold set live beside the one in force, notifying no one (ops/admin); shadow report compares them", Run: thresholdsShadow})
	Register(&Command{Name: "shadow report", Args: "[--name NAME] [--json]",
		Summary: "per threshold set (live and each shadow set): alerts by rule, severity and tier, customers only one set alerted, precision from outcomes so far", Run: shadowReport})
}

func shadowClient(env *Env) (cwv1.ShadowServiceClient, func(), error) {
	conn, err := env.Dial("rules")
	if err != nil {
		return nil, nil, err
	}
	return cwv1.NewShadowServiceClient(conn), func() { conn.Close() }, nil
}

type shadowSetJSON struct {
	Name        string            `json:"name"`
	Settings    map[string]string `json:"settings"`
	Reason      string            `json:"reason"`
	Actor       string            `json:"actor"`
	StartedAt   string            `json:"startedAt"`
	StoppedAt   string            `json:"stoppedAt,omitempty"`
	PurgedAt    string            `json:"purgedAt,omitempty"`
	BaseVersion int64             `json:"baseVersion"`
}

func shadowJSON(s *cwv1.ShadowSet) shadowSetJSON {
	out := shadowSetJSON{Name: s.GetName(), Settings: map[string]string{}, Reason: s.GetReason(), Actor: s.GetActor(),
		StartedAt: ts(s.GetStartedAt()), BaseVersion: s.GetBaseVersion()}
	if s.GetStoppedAt() != nil {
		out.StoppedAt = ts(s.GetStoppedAt())
	}
	if s.GetPurgedAt() != nil {
		out.PurgedAt = ts(s.GetPurgedAt())
	}
	for _, kv := range s.GetSettings() {
		out.Settings[kv.GetKey()] = kv.GetValue()
	}
	return out
}

func printShadow(env *Env, s shadowSetJSON) {
	state := "running"
	if s.StoppedAt != "" {
		state = "stopped " + s.StoppedAt
	}
	if s.PurgedAt != "" {
		state += ", purged " + s.PurgedAt
	}
	fmt.Fprintf(env.Stdout, "%s  %s  started %s by %s from live version %d: %s\n", s.Name, state, s.StartedAt, s.Actor, s.BaseVersion, s.Reason)
	keys := make([]string, 0, len(s.Settings))
	for k := range s.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(env.Stdout, "  %-46s %s\n", k, s.Settings[k])
	}
}

func thresholdsShadow(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds shadow")
	name := fs.String("name", "", "name of the new shadow set: a-z, 0-9, '-' (required to start one)")
	reason := fs.String("reason", "", "why (required to start one)")
	stop := fs.String("stop", "", "stop the shadow set of this name (its report stays readable)")
	purge := fs.String("purge", "", "delete what the stopped shadow set of this name keeps in Redis (its customer states and alerts; from 5 minutes after the stop); it stays listed, without a report")
	list := fs.Bool("list", false, "list the shadow sets, running and stopped")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	c, done, err := shadowClient(env)
	if err != nil {
		return err
	}
	defer done()
	switch {
	case *list:
		if len(pos) > 0 || *stop != "" {
			return Usagef("--list takes no settings and no --stop")
		}
		resp, err := c.ListShadows(ctx, &cwv1.ListShadowsRequest{})
		if err != nil {
			return RPCError("rules", err)
		}
		out := []shadowSetJSON{}
		for _, s := range resp.GetShadows() {
			out = append(out, shadowJSON(s))
		}
		if *asJSON {
			return env.JSON(out)
		}
		if len(out) == 0 {
			fmt.Fprintln(env.Stdout, "no shadow sets (start one: churnctl thresholds shadow KEY=VALUE … --name NAME --reason \"…\")")
		}
		for _, s := range out {
			printShadow(env, s)
		}
		return nil
	case *purge != "":
		if len(pos) > 0 || *stop != "" {
			return Usagef("--purge takes no settings and no --stop")
		}
		resp, err := c.PurgeShadow(ctx, &cwv1.PurgeShadowRequest{Name: *purge})
		if err != nil {
			return RPCError("rules", err)
		}
		if *asJSON {
			return env.JSON(map[string]any{"shadow": shadowJSON(resp.GetShadow()), "customers": resp.GetCustomers()})
		}
		printShadow(env, shadowJSON(resp.GetShadow()))
		fmt.Fprintf(env.Stdout, "deleted its state and alerts from %d customers\n", resp.GetCustomers())
		return nil
	case *stop != "":
		if len(pos) > 0 {
			return Usagef("--stop takes no settings")
		}
		resp, err := c.StopShadow(ctx, &cwv1.StopShadowRequest{Name: *stop})
		if err != nil {
			return RPCError("rules", err)
		}
		if *asJSON {
			return env.JSON(shadowJSON(resp.GetShadow()))
		}
		printShadow(env, shadowJSON(resp.GetShadow()))
		return nil
	}
	if *name == "" {
		return Usagef("--name is required to start a shadow set (or give --stop NAME, --purge NAME or --list)")
	}
	settings, err := parseChange(pos, *reason)
	if err != nil {
		return err
	}
	resp, err := c.StartShadow(ctx, &cwv1.StartShadowRequest{Name: *name, Settings: settings, Reason: *reason})
	if err != nil {
		return RPCError("rules", err)
	}
	if *asJSON {
		return env.JSON(shadowJSON(resp.GetShadow()))
	}
	printShadow(env, shadowJSON(resp.GetShadow()))
	fmt.Fprintf(env.Stdout, "scoring every new event with it beside the live set; nothing is notified. See: churnctl shadow report --name %s\n", *name)
	return nil
}

type shadowAlertJSON struct {
	CustomerID    string   `json:"customerId"`
	Rules         []string `json:"rules"`
	Severity      string   `json:"severity,omitempty"`
	Tier          string   `json:"tier"`
	FirstSignalAt string   `json:"firstSignalAt,omitempty"`
	Outcome       string   `json:"outcome,omitempty"`
}

type shadowReportSetJSON struct {
	Name        string            `json:"name"`
	Live        bool              `json:"live"`
	Shadow      *shadowSetJSON    `json:"shadow,omitempty"`
	Alerts      int               `json:"alerts"`
	ByRule      map[string]int    `json:"byRule"`
	BySeverity  map[string]int    `json:"bySeverity"`
	ByTier      map[string]int    `json:"byTier"`
	Judged      int32             `json:"judged"`
	Correct     int32             `json:"correct"`
	Precision   *float64          `json:"precision"` // null until an alert is judged
	OnlyThisSet []string          `json:"onlyThisSet"`
	List        []shadowAlertJSON `json:"list"`
}

func shadowReport(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "shadow report")
	name := fs.String("name", "", "only this shadow set (the live set is always shown)")
	asJSON := fs.Bool("json", false, "a JSON array: one object per set, with every alert")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("shadow report takes no arguments (use --name NAME)")
	}
	c, done, err := shadowClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GetShadowReport(ctx, &cwv1.GetShadowReportRequest{Name: *name})
	if err != nil {
		return RPCError("rules", err)
	}
	var out []shadowReportSetJSON
	for _, r := range resp.GetSets() {
		s := shadowReportSetJSON{Name: r.GetName(), Live: r.GetLive(), Alerts: len(r.GetAlerts()), ByRule: map[string]int{}, BySeverity: map[string]int{},
			ByTier: map[string]int{}, Judged: r.GetJudged(), Correct: r.GetCorrect(), OnlyThisSet: append([]string{}, r.GetOnlyThisSet()...), List: []shadowAlertJSON{}}
		if r.GetShadow() != nil {
			sj := shadowJSON(r.GetShadow())
			s.Shadow = &sj
		}
		if s.Judged > 0 {
			p := float64(s.Correct) / float64(s.Judged)
			s.Precision = &p
		}
		for _, a := range r.GetAlerts() {
			aj := shadowAlertJSON{CustomerID: a.GetCustomerId(), Rules: a.GetRuleIds(), Tier: enumName(a.GetTier().String(), "TIER_")}
			if a.GetSeverity() != cwv1.Severity_SEVERITY_UNSPECIFIED {
				aj.Severity = enumName(a.GetSeverity().String(), "SEVERITY_")
				s.BySeverity[aj.Severity]++
			}
			if a.GetFirstSignalAt() != nil {
				aj.FirstSignalAt = ts(a.GetFirstSignalAt())
			}
			if a.GetOutcome() != cwv1.Outcome_OUTCOME_UNSPECIFIED {
				aj.Outcome = enumName(a.GetOutcome().String(), "OUTCOME_")
			}
			for _, rule := range a.GetRuleIds() {
				s.ByRule[rule]++
			}
			s.ByTier[aj.Tier]++
			s.List = append(s.List, aj)
		}
		out = append(out, s)
	}
	if *asJSON {
		return env.JSON(out)
	}
	for _, s := range out {
		prec := "no outcome recorded yet"
		if s.Precision != nil {
			prec = fmt.Sprintf("%.2f (%d of %d judged)", *s.Precision, s.Correct, s.Judged)
		}
		fmt.Fprintf(env.Stdout, "%s: %d alerts, precision %s\n", s.Name, s.Alerts, prec)
		for _, g := range []struct {
			what string
			m    map[string]int
		}{{"rule", s.ByRule}, {"severity", s.BySeverity}, {"tier", s.ByTier}} {
			if len(g.m) == 0 {
				continue
			}
			keys := make([]string, 0, len(g.m))
			for k := range g.m {
				keys = append(keys, fmt.Sprintf("%s %d", k, g.m[k]))
			}
			sort.Strings(keys)
			fmt.Fprintf(env.Stdout, "  by %-8s %s\n", g.what, strings.Join(keys, ", "))
		}
		if len(s.OnlyThisSet) > 0 {
			fmt.Fprintf(env.Stdout, "  only this set alerted: %d customers (%s)\n", len(s.OnlyThisSet), strings.Join(s.OnlyThisSet[:min(10, len(s.OnlyThisSet))], ", "))
		}
	}
	fmt.Fprintln(env.Stdout, "(live severities are not kept in the KPI facts; the live alerts themselves: churnctl alerts list)")
	return nil
}
