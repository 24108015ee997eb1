package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/report"
)

func init() {
	Register(&Command{Name: "report", Args: "--month YYYY-MM [--branch B] [--format html|md|csv] [--out FILE] [--json]",
		Summary: "the monthly relationship-maintenance report (SPEC §9)",
		Help: `The retention KPIs of the month with the change on the previous month: customers
by stage, churn and retention (monthly and quarter to date), win-backs, balances
held, alerts raised / acknowledged within the SLA / escalated / resolved by
outcome; the tiers and branches whose churn rose; the top reasons behind the
month's alerts; time to acknowledge per RM and tier against the SLA; overdue
alerts by RM; precision per rule. Every figure comes from KpiService.GetKpis on
the rules service (CHURNWATCH_RULES_ADDR), the same the console shows.
Branch heads get their own branch; ops and admin the bank or --branch.
HTML is one self-contained file (inline CSS, no scripts); CSV is long:
section,row,column,value. --json prints the RPC's answer itself (the month and
the one before) as one JSON object. Definitions: docs/kpis.md.`,
		Run: reportCmd})
}

func reportCmd(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "report")
	month := fs.String("month", "", "the month, YYYY-MM (event time, UTC); required")
	branch := fs.String("branch", "", "only this branch (a branch head always gets their own)")
	format := fs.String("format", "html", "html, md or csv")
	out := fs.String("out", "", "write to FILE instead of stdout")
	asJSON := fs.Bool("json", false, "print KpiService.GetKpis's answer as one JSON object instead of the report")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("report takes no arguments (got %q): use --month YYYY-MM", strings.Join(pos, " "))
	}
	if _, err := time.Parse("2006-01", *month); err != nil {
		return Usagef("--month %q: want YYYY-MM, e.g. --month 2025-03", *month)
	}
	known := false
	for _, f := range report.Formats {
		known = known || f == *format
	}
	if !known {
		return Usagef("--format %q: want one of %s", *format, strings.Join(report.Formats, ", "))
	}
	conn, err := env.Dial("rules")
	if err != nil {
		return err
	}
	defer conn.Close()
	// Two months: the month and the one before, for the changes.
	resp, err := cwv1.NewKpiServiceClient(conn).GetKpis(ctx, &cwv1.GetKpisRequest{Month: *month, BranchId: *branch, MonthsBack: 2})
	if err != nil {
		return RPCError("rules", err)
	}
	if *asJSON {
		return writeProtoLine(env.Stdout, resp)
	}
	r, err := report.Build(resp)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	var b bytes.Buffer
	if err := report.Render(&b, r, *format); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	if *out == "" {
		_, err = env.Stdout.Write(b.Bytes())
		return err
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("write the report: %w (check that the directory exists and is writable)", err)}
	}
	return nil
}
