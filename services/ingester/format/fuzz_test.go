package format_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"

	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

func seed(f *testing.F, files ...string) {
	f.Helper()
	for _, name := range files {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		// Each line alone too, so that mutations start from single records.
		for _, l := range bytes.Split(b, []byte("\n")) {
			f.Add(l)
		}
	}
}

// drain reads everything and checks what every decoder promises: it ends,
// records are numbered in order, values are never nil and always encodable
// (valid UTF-8), and validation copes with whatever came out.
func drain[T proto.Message](t *testing.T, r format.Reader[T], check func(T)) {
	lastLine, lastIndex := 0, -1
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("reader does not end")
		}
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			if _, again := r.Next(); again == nil {
				t.Fatalf("reader went on after %v", err)
			}
			return
		}
		if rec.Index != lastIndex+1 || (rec.Line != 0 && rec.Line <= lastLine) {
			t.Fatalf("record %d at line %d after %d at line %d", rec.Index, rec.Line, lastIndex, lastLine)
		}
		lastIndex, lastLine = rec.Index, rec.Line
		if _, err := proto.Marshal(rec.Value); err != nil {
			t.Fatalf("record %d not encodable: %v", rec.Index, err)
		}
		check(rec.Value)
	}
}

var now = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func FuzzDecodeNDJSON(f *testing.F) {
	seed(f, "events.ndjson")
	f.Fuzz(func(t *testing.T, b []byte) {
		drain(t, format.Events(format.NDJSON, bytes.NewReader(b)), func(ev *cwv1.IncomingEvent) {
			if out, verr := validate.Event(ev, now); (out == nil) == (verr == nil) {
				t.Fatalf("validate: %v %v", out, verr)
			}
		})
	})
}

func FuzzDecodeJSONArray(f *testing.F) {
	seed(f, "events.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		drain(t, format.Events(format.JSONArray, bytes.NewReader(b)), func(ev *cwv1.IncomingEvent) {
			_, _ = validate.Event(ev, now)
		})
	})
}

func FuzzDecodeCSV(f *testing.F) {
	seed(f, "events.csv")
	f.Fuzz(func(t *testing.T, b []byte) {
		drain(t, format.Events(format.CSV, bytes.NewReader(b)), func(ev *cwv1.IncomingEvent) {
			_, _ = validate.Event(ev, now)
		})
	})
}

func FuzzDecodeCustomers(f *testing.F) {
	seed(f, "customers.ndjson")
	f.Fuzz(func(t *testing.T, b []byte) {
		drain(t, format.Customers(format.NDJSON, bytes.NewReader(b)), func(c *cwv1.IncomingCustomer) {
			if out, verr := validate.Customer(c, now); (out == nil) == (verr == nil) {
				t.Fatalf("validate: %v %v", out, verr)
			}
		})
	})
}
