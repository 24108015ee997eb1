package backtest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
)

func benchBank(b *testing.B) *simulate.Bank {
	b.Helper()
	bank, err := simulate.Generate(simulate.Config{Customers: 200, Months: 12, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	return bank
}

// BenchmarkRun is the whole offline pipeline (validation, conversion,
// engine, alert merge) over 200 customers × 12 months (~90,000 events).
func BenchmarkRun(b *testing.B) {
	in, _ := FromBank(benchBank(b))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Run(in, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(in.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadEvents is decoding an events.ndjson file, the other half of
// `churnctl backtest`.
func BenchmarkReadEvents(b *testing.B) {
	bank := benchBank(b)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range bank.Events {
		if err := enc.Encode(&bank.Events[i]); err != nil {
			b.Fatal(err)
		}
	}
	data := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		recs, err := ReadEvents("events.ndjson", bytes.NewReader(data))
		if err != nil || len(recs) != len(bank.Events) {
			b.Fatalf("%d records, %v", len(recs), err)
		}
	}
	b.ReportMetric(float64(len(bank.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
