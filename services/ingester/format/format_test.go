package format_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

func all[T any](t testing.TB, r format.Reader[T]) ([]format.Record[T], error) {
	t.Helper()
	var out []format.Record[T]
	for i := 0; i < 1_000_000; i++ {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
	t.Fatal("reader never ends")
	return nil, nil
}

func TestNDJSONEvents(t *testing.T) {
	in := "\xef\xbb\xbf" + `{"eventId":"t-1","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","amount":12500.50,"currency":"EUR"}` + "\r\n" +
		"\n   \n" +
		`{"eventId":"t-2","amount":{"x":1}}` + "\n" +
		`not json` + "\n" +
		`{"eventId":"t-\u00e9\"3","sentiment":null,"channel":"ATM"}`
	recs, err := all(t, format.Events(format.NDJSON, strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r.Line != 1 || r.Index != 0 || r.Err != nil || r.Value.Amount != "12500.50" || r.Value.EventId != "t-1" || r.Value.Type != "DEPOSIT" {
		t.Fatalf("record 0: %+v", r)
	}
	if r := recs[1]; r.Line != 4 || r.Index != 1 || r.Err == nil || r.Err.Error() != "amount: must be a string" || r.Value.EventId != "t-2" {
		t.Fatalf("record 1: %+v %v", r, r.Err)
	}
	if r := recs[2]; r.Line != 5 || r.Err == nil || !strings.Contains(r.Err.Error(), "not valid JSON") || validate.CodeOf(r.Err) != validate.CodeDecode {
		t.Fatalf("record 2: %+v", r)
	}
	if r := recs[3]; r.Line != 6 || r.Err != nil || r.Value.EventId != "t-é\"3" || r.Value.Channel != "ATM" || r.Value.Sentiment != "" {
		t.Fatalf("record 3: %+v %v", r, r.Err)
	}
}

func TestNDJSONLineTooLong(t *testing.T) {
	long := `{"eventId":"` + strings.Repeat("x", format.MaxLine) + `"}`
	recs, err := all(t, format.Events(format.NDJSON, strings.NewReader(long+"\n"+`{"eventId":"ok"}`+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Err == nil || recs[0].Line != 1 || recs[1].Line != 2 || recs[1].Value.EventId != "ok" {
		t.Fatalf("%+v", recs)
	}
}

func TestJSONArrayEvents(t *testing.T) {
	recs, err := all(t, format.Events(format.JSONArray, strings.NewReader(` [ {"eventId":"a"}, "x", {"eventId":"b","amount":"1.00"} ] `)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Value.EventId != "a" || recs[1].Err == nil || recs[2].Value.Amount != "1.00" || recs[2].Index != 2 {
		t.Fatalf("%+v", recs)
	}
	for _, bad := range []string{``, `{}`, `[{"a":1}`, `[1,]`, `[] []`, `"x"`} {
		if _, err := all(t, format.Events(format.JSONArray, strings.NewReader(bad))); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCSVEvents(t *testing.T) {
	in := "event_id,customer_id,account_id,occurred_at,type,amount,currency,counterparty_bank,balance_after,channel,sentiment\r\n" +
		"t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,12500.00,EUR,OTHERBANK,300.00,MOBILE,\r\n" +
		"\n" +
		`t-2,C1,A1,2025-03-01T09:31:00Z,COMPLAINT,,,,,"PHONE",-0.7` + "\n" +
		"t-3,C1,A1\n" +
		`t-4,"C""1",A1,2025-03-01T09:31:00Z,LOGIN,,,,,,` + "\n" +
		`t-5,C"1,A1,2025-03-01T09:31:00Z,LOGIN,,,,,,` + "\n" +
		` t-6 , C1 ,A1,2025-03-01T09:31:00Z,LOGIN,,,,,,`
	recs, err := all(t, format.Events(format.CSV, strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 {
		t.Fatalf("%d records", len(recs))
	}
	want := &cwv1.IncomingEvent{EventId: "t-1", CustomerId: "C1", AccountId: "A1", OccurredAt: "2025-03-01T09:30:00Z", Type: "TRANSFER_OUT",
		Amount: "12500.00", Currency: "EUR", CounterpartyBank: "OTHERBANK", BalanceAfter: "300.00", Channel: "MOBILE"}
	if r := recs[0]; r.Line != 2 || r.Err != nil || r.Value.String() != want.String() {
		t.Fatalf("line 2: %+v", r)
	}
	if r := recs[1]; r.Line != 4 || r.Err != nil || r.Value.Channel != "PHONE" || r.Value.Sentiment != "-0.7" {
		t.Fatalf("line 4: %+v %v", r, r.Err)
	}
	if r := recs[2]; r.Line != 5 || r.Err == nil || r.Err.Error() != "3 fields, the header has 11" || r.Value.EventId != "t-3" {
		t.Fatalf("line 5: %+v %v", r, r.Err)
	}
	if r := recs[3]; r.Err != nil || r.Value.CustomerId != `C"1` {
		t.Fatalf("line 6: %+v %v", r, r.Err)
	}
	if r := recs[4]; r.Line != 7 || r.Err == nil || !strings.Contains(r.Err.Error(), "quote inside an unquoted field") {
		t.Fatalf("line 7: %+v %v", r, r.Err)
	}
	if r := recs[5]; r.Err != nil || r.Value.EventId != "t-6" || r.Value.CustomerId != "C1" {
		t.Fatalf("line 8: %+v %v", r, r.Err)
	}
}

func TestCSVHeader(t *testing.T) {
	recs, err := all(t, format.Events(format.CSV, strings.NewReader("type,occurred_at,account_id,customer_id,event_id\nLOGIN,2025-03-01T09:30:00Z,A1,C1,t-1\n")))
	if err != nil || len(recs) != 1 || recs[0].Value.EventId != "t-1" || recs[0].Value.Type != "LOGIN" {
		t.Fatalf("reordered header: %+v %v", recs, err)
	}
	for _, h := range []string{"", "event_id,customer_id\n", "event_id,customer_id,account_id,occurred_at,type,colour\n", "event_id,event_id,customer_id,account_id,occurred_at,type\n"} {
		if _, err := all(t, format.Events(format.CSV, strings.NewReader(h))); !errors.Is(err, format.ErrCSVHeader) {
			t.Errorf("header %q: %v", h, err)
		}
	}
}

func TestCustomers(t *testing.T) {
	recs, err := all(t, format.Customers(format.NDJSON, strings.NewReader(`{"customerId":"C1001","tier":"HIGH_NET_WORTH","managerId":"rm-001","branchId":"br-01","displayName":"Wang L.","managerEmail":"rm-001@bank.example"}`+"\n")))
	if err != nil || len(recs) != 1 || recs[0].Value.DisplayName != "Wang L." || recs[0].Value.Tier != "HIGH_NET_WORTH" || recs[0].Value.ManagerEmail != "rm-001@bank.example" {
		t.Fatalf("%+v %v", recs, err)
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name, head string
		want       format.Kind
	}{
		{"x.csv", "{", format.CSV}, {"x.ndjson", "event_id", format.NDJSON}, {"x.jsonl", "", format.NDJSON},
		{"-", "\n  {\"a\":1}", format.NDJSON}, {"x.json", " [", format.JSONArray}, {"-", "event_id,customer_id", format.CSV},
		{"x.txt", "\xef\xbb\xbf{", format.NDJSON}, {"-", "", format.NDJSON},
	} {
		if got := format.Detect(c.name, bufio.NewReader(strings.NewReader(c.head))); got != c.want {
			t.Errorf("%s %q: %v, want %v", c.name, c.head, got, c.want)
		}
	}
}

// The seed files in testdata are also the fuzz corpora's starting points.
func TestSeedFilesDecode(t *testing.T) {
	for name, kind := range map[string]format.Kind{"events.ndjson": format.NDJSON, "events.csv": format.CSV, "events.json": format.JSONArray} {
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := all(t, format.Events(kind, f))
		f.Close()
		if err != nil || len(recs) < 3 {
			t.Fatalf("%s: %d records, %v", name, len(recs), err)
		}
	}
}
