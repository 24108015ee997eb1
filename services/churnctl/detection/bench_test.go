package detection

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
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
	in, _ := simfeed.FromBank(benchBank(b))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := backtest.Run(in, backtest.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(in.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadEvents is decoding, validating and converting an
// events.ndjson file: the other half of `churnctl backtest`.
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
		h := backtest.NewHistory(time.Now())
		// every event accepted and scored (Len counts the scored ones)
		if err := h.ReadEvents("events.ndjson", bytes.NewReader(data)); err != nil || h.Len() != len(bank.Events) {
			b.Fatalf("%d of %d events held, %v", h.Len(), len(bank.Events), err)
		}
	}
	b.ReportMetric(float64(len(bank.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReplay is the engine and the alert merge alone over a validated
// history: what each extra threshold set of a what-if costs.
func BenchmarkReplay(b *testing.B) {
	in, _ := simfeed.FromBank(benchBank(b))
	h := backtest.NewHistory(time.Now())
	for _, r := range in.Customers {
		h.AddCustomer(r)
	}
	for _, r := range in.Events {
		h.AddEvent(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Replay(backtest.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(in.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
