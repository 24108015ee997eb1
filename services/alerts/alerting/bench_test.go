package alerting_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

// BenchmarkSignalMerge is the per-signal work of the consumer's hot path:
// merge into an open alert with a recomputed action.
func BenchmarkSignalMerge(b *testing.B) {
	e := engine()
	c := customer()
	rulesCycle := []string{"outflow.large", "complaints", "salary.stopped", "activity.drop"}
	sigs := make([]string, 1024)
	for i := range sigs {
		sigs[i] = fmt.Sprintf("s%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%1024 == 0 {
			c.Seen = nil // keep the dedupe set small like the bounded store
		}
		e.Signal(c, signal(sigs[i%1024], rulesCycle[i%4], int32(40+i%50), "1"), t0.Add(time.Duration(i)*time.Second))
	}
}

var _ = alerting.SeverityOf
