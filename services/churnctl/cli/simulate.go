package cli

import (
	"context"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
)

func init() {
	Register(&Command{Name: "simulate", Args: "--customers N --months M --seed S [--silent-share 0.15] --out DIR",
		Summary: "write a deterministic synthetic bank: customers.ndjson, events.ndjson, labels.ndjson", Run: simulateCmd})
}

func simulateCmd(_ context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "simulate")
	n := fs.Int("customers", 1000, "customers")
	months := fs.Int("months", 12, "months of events")
	seed := fs.Int64("seed", 1, "seed: the same seed gives byte-identical files")
	start := fs.String("start", "2025-01-01", "first day (YYYY-MM-DD)")
	out := fs.String("out", "", "output directory (created)")
	silent := fs.Float64("silent-share", simulate.DefaultParams().Churn.SilentShare, "share of churners who leave with no warning sign (labelled archetype silent)")
	if _, err := Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return Usagef("--out DIR is required")
	}
	if *n <= 0 || *months <= 0 {
		return Usagef("--customers and --months must be positive")
	}
	day, err := time.Parse("2006-01-02", *start)
	if err != nil {
		return Usagef("--start: %v", err)
	}
	if *silent < 0 || *silent > 1 {
		return Usagef("--silent-share %g: a share within 0 … 1", *silent)
	}
	params := simulate.DefaultParams()
	params.Churn.SilentShare = *silent
	bank, err := simulate.Generate(simulate.Config{Customers: *n, Months: *months, Seed: *seed, Start: day, Params: &params})
	if err != nil {
		return err
	}
	if err := bank.WriteDir(*out); err != nil {
		return err
	}
	churners := 0
	for _, l := range bank.Labels {
		if l.Churned {
			churners++
		}
	}
	return env.JSON(map[string]any{"dir": *out, "customers": len(bank.Customers), "events": len(bank.Events), "churners": churners,
		"from": bank.Events[0].OccurredAt[:10], "to": bank.Events[len(bank.Events)-1].OccurredAt[:10], "seed": *seed})
}
