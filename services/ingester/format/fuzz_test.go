package format_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"

	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

// hostile are records of the issue-14 findings, added to every target's
// corpus so that mutations start from them.
var hostile = []string{
	`{"eventId":"t-1","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","amount":"5.00","amount":"999999.00","currency":"EUR"}`,
	`{"eventId":"t-1","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","amount":"5.00","AMOUNT":"9.00","currency":"EUR"}`,
	`{"eventId":"t-1","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","amount":"+10.00","currency":"EUR"}`,
	`{"eventId":"t-1\u202e","customerId":"C1\u2066","accountId":"A1","occurredAt":"0000-01-01T00:00:00Z","type":"LOGIN"}`,
	"{\"eventId\":\"t-\xff\",\"customerId\":\"C1\",\"accountId\":\"A1\",\"occurredAt\":\"1900-01-01T00:00:00Z\",\"type\":\"LOGIN\"}",
	`{"customerId":"C1","tier":"MASS","displayName":"Wang \u202eL.","displayName":"x"}`,
	"event_id,customer_id,account_id,occurred_at,type,amount,currency,counterparty_bank,balance_after,channel,sentiment\n" +
		`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,+10.00,EUR,"=HYPERLINK(""x"")",-5.00,@MOBILE,` + "\n",
}

func seed(f *testing.F, files ...string) {
	f.Helper()
	for _, h := range hostile {
		f.Add([]byte(h))
	}
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

// acceptable checks what validation promises of an accepted event: no
// invisible or replacement characters in any text, a time the publisher
// can carry.
func acceptable(out *cwv1.AccountEvent) bool {
	for _, s := range []string{out.EventId, out.CustomerId, out.AccountId, out.CounterpartyBank} {
		for _, r := range s {
			if r == utf8.RuneError || validate.Invisible(r) || r < 0x20 {
				return false
			}
		}
	}
	return out.GetOccurredAt().IsValid() && !out.GetOccurredAt().AsTime().Before(validate.DefaultEarliest)
}

func FuzzDecodeNDJSON(f *testing.F) {
	seed(f, "events.ndjson")
	f.Fuzz(func(t *testing.T, b []byte) {
		drain(t, format.Events(format.NDJSON, bytes.NewReader(b)), func(ev *cwv1.IncomingEvent) {
			out, verr := validate.Event(ev, now)
			if (out == nil) == (verr == nil) {
				t.Fatalf("validate: %v %v", out, verr)
			}
			if out != nil && !acceptable(out) {
				t.Fatalf("accepted a hostile record: %v", out)
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
			if out, _ := validate.Event(ev, now); out != nil && out.GetOccurredAt().AsTime().Before(validate.DefaultEarliest) {
				t.Fatalf("accepted an event before %s: %v", validate.DefaultEarliest, out)
			}
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
