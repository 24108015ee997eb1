package store

import (
	"context"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
)

// TestAlertFactsKeepTheNewestVersion checks that a redelivered (older)
// alert update does not replace a newer fact, that a fact is kept in every
// month the alert spans, and that resolving it takes it out of the open set.
func TestAlertFactsKeepTheNewestVersion(t *testing.T) {
	ctx := context.Background()
	st := New(testkit.RedisUnderTest(t).Client(t))
	created := time.Date(2025, 3, 30, 10, 0, 0, 0, time.UTC)
	v1 := kpi.AlertFact{ID: "a-1", Version: 1, Tier: "MASS", Manager: "rm-1", Created: created.Unix(), AckDue: created.Add(24 * time.Hour).Unix()}
	v2 := v1
	v2.Version, v2.Acknowledged = 2, created.Add(2*time.Hour).Unix()
	v3 := v2
	v3.Version, v3.Resolved, v3.Outcome = 3, time.Date(2025, 5, 2, 0, 0, 0, 0, time.UTC).Unix(), "RETAINED"

	if err := st.WriteAlertFacts(ctx, []kpi.AlertFact{v1, v2}, []time.Time{created, created.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	by, open, err := st.AlertFacts(ctx, []string{"2025-03", "2025-04"})
	if err != nil {
		t.Fatal(err)
	}
	if len(by["2025-03"]) != 1 || by["2025-03"][0].Version != 2 || len(by["2025-04"]) != 0 || len(open) != 1 || open[0].Version != 2 {
		t.Fatalf("after v1 and v2: %v open %v", by, open)
	}
	// Resolved in May: kept in March, April and May; no longer open.
	if err := st.WriteAlertFacts(ctx, []kpi.AlertFact{v3}, []time.Time{time.Unix(v3.Resolved, 0)}); err != nil {
		t.Fatal(err)
	}
	// Redelivered: v1 and v2 again.
	if err := st.WriteAlertFacts(ctx, []kpi.AlertFact{v1}, []time.Time{created}); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteAlertFacts(ctx, []kpi.AlertFact{v2}, []time.Time{created}); err != nil {
		t.Fatal(err)
	}
	by, open, err = st.AlertFacts(ctx, []string{"2025-03", "2025-04", "2025-05", "2025-06"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"2025-03", "2025-04", "2025-05"} {
		if len(by[m]) != 1 || by[m][0].Version != 3 || by[m][0].Outcome != "RETAINED" {
			t.Errorf("%s: %v, want the resolved version 3", m, by[m])
		}
	}
	if len(by["2025-06"]) != 0 || len(open) != 0 {
		t.Errorf("June %v, open %v: want none", by["2025-06"], open)
	}
}
