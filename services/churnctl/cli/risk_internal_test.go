package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPrintDaily: the risk command's summary of the daily series sums each
// 30-day period's transactions and shows the balance at its end.
func TestPrintDaily(t *testing.T) {
	day0 := time.Date(2026, 4, 4, 0, 0, 0, 0, time.UTC)
	var days []dayJSON
	for i := range 180 {
		d := dayJSON{Date: day0.AddDate(0, 0, i).Format(time.DateOnly), Transactions: int32(i % 3)}
		if i >= 40 {
			d.Balance, d.Currency = fmt.Sprintf("%d.00", 1000+i), "EUR"
		}
		days = append(days, d)
	}
	var b bytes.Buffer
	printDaily(&b, days)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "last 180 days") {
		t.Fatalf("summary:\n%s", b.String())
	}
	// 30 days of 0,1,2,… = 30 transactions; the first period has no balance yet.
	if f := strings.Fields(lines[1]); f[0] != "2026-04-04" || f[2] != "2026-05-03" || f[3] != "30" || f[4] != "-" {
		t.Fatalf("first period %q", lines[1])
	}
	if f := strings.Fields(lines[6]); f[2] != "2026-09-30" || f[3] != "30" || f[4] != "1179.00" || f[5] != "EUR" {
		t.Fatalf("last period %q", lines[6])
	}
	b.Reset()
	if printDaily(&b, nil); b.Len() != 0 {
		t.Fatalf("no days printed %q", b.String())
	}
}
