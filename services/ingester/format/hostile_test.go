package format_test

import (
	"strings"
	"testing"

	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

const goodEvent = `"customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","currency":"EUR"`

// Issue 14: {"amount":"5.00","amount":"999999.00"} was published as
// 999,999.00. A key given twice is refused, whatever its spelling.
func TestJSONDuplicateKeyIsRejected(t *testing.T) {
	for name, c := range map[string]struct {
		line, field, id string
	}{
		"amount twice":         {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","amount":"999999.00"}`, "amount", "t-1"},
		"number then string":   {`{"eventId":"t-1",` + goodEvent + `,"amount":5.00 , "amount" : "999999.00"}`, "amount", "t-1"},
		"other case":           {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","AMOUNT":"999999.00"}`, "AMOUNT", "t-1"},
		"escaped key":          {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","amo\u0075nt":"999999.00"}`, "amount", "t-1"},
		"kelvin sign":          {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","counterpartyBank":"A","counterpartyBan\u212a":"B"}`, `"counterpartyBan\u212a"`, "t-1"},
		"eventId twice":        {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","eventId":"t-2"}`, "eventId", ""},
		"unknown key twice":    {`{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","note":1,"note":2}`, "note", "t-1"},
		"null then value":      {`{"eventId":"t-1",` + goodEvent + `,"amount":null,"amount":"5.00"}`, "amount", "t-1"},
		"after a nested value": {`{"eventId":"t-1",` + goodEvent + `,"x":{"a":[1,"}",{"b":2}]},"amount":"5.00","amount":"6.00"}`, "amount", "t-1"},
	} {
		recs, err := all(t, format.Events(format.NDJSON, strings.NewReader(c.line)))
		if err != nil || len(recs) != 1 {
			t.Fatalf("%s: %v %v", name, recs, err)
		}
		r := recs[0]
		if r.Err == nil || validate.CodeOf(r.Err) != validate.CodeDuplicateKey || !strings.HasPrefix(r.Err.Error(), c.field+": key given twice") || r.Value.EventId != c.id {
			t.Errorf("%s: %v (%s), id %q; want %s on %s, id %q", name, r.Err, validate.CodeOf(r.Err), r.Value.EventId, validate.CodeDuplicateKey, c.field, c.id)
		}
	}
	// The same key in a nested object, or in two records, is no duplicate.
	for name, line := range map[string]string{
		"nested":  `{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","x":{"amount":1,"amount":2}}`,
		"in text": `{"eventId":"t-\"amount\":1",` + goodEvent + `,"amount":"5.00"}`,
	} {
		recs, err := all(t, format.Events(format.NDJSON, strings.NewReader(line)))
		if err != nil || len(recs) != 1 || recs[0].Err != nil {
			t.Errorf("%s: %v %v", name, recs, err)
		}
	}
	// JSON arrays and customer profiles too.
	recs, err := all(t, format.Events(format.JSONArray, strings.NewReader(`[{"eventId":"t-1",`+goodEvent+`,"amount":"5.00","amount":"9.00"}]`)))
	if err != nil || len(recs) != 1 || validate.CodeOf(recs[0].Err) != validate.CodeDuplicateKey {
		t.Fatalf("array: %v %v", recs, err)
	}
	cs, err := all(t, format.Customers(format.NDJSON, strings.NewReader(`{"customerId":"C1","tier":"MASS","managerId":"rm-1","managerId":"rm-2"}`)))
	if err != nil || len(cs) != 1 || validate.CodeOf(cs[0].Err) != validate.CodeDuplicateKey ||
		!strings.HasPrefix(cs[0].Err.Error(), "managerId: ") || cs[0].Value.CustomerId != "C1" {
		t.Fatalf("customers: %v %v", cs, err)
	}
}

// A control character in a duplicated key must not reach the message raw.
func TestJSONDuplicateKeyMessageIsQuoted(t *testing.T) {
	recs, _ := all(t, format.Events(format.NDJSON, strings.NewReader(`{"a\u202eb":1,"a\u202eb":2}`)))
	if len(recs) != 1 || recs[0].Err == nil || strings.ContainsRune(recs[0].Err.Error(), '\u202e') {
		t.Fatalf("%v", recs)
	}
}

// Issue 14: CSV text fields starting with = + - or @ are refused (CSV
// formula injection, SPEC §2); numbers keep their minus sign.
func TestCSVFormulaIsRejected(t *testing.T) {
	head := strings.Join(format.CSVColumns, ",") + "\n"
	for name, c := range map[string]struct{ line, field string }{
		"= bank":         {`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,"=HYPERLINK(""http://x"",""y"")",,,`, "counterparty_bank"},
		"@ bank":         {`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,@SUM(A1),,,`, "counterparty_bank"},
		"+ bank":         {`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,+cmd,,,`, "counterparty_bank"},
		"- bank":         {`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,-2+3,,,`, "counterparty_bank"},
		"quoted, spaces": {`t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,"  =1+1",,,`, "counterparty_bank"},
		"event id":       {`=t-1,C1,A1,2025-03-01T09:30:00Z,LOGIN,,,,,,`, "event_id"},
		"customer id":    {`t-1,-C1,A1,2025-03-01T09:30:00Z,LOGIN,,,,,,`, "customer_id"},
		"channel":        {`t-1,C1,A1,2025-03-01T09:30:00Z,LOGIN,,,,,@MOBILE,`, "channel"},
		"currency":       {`t-1,C1,A1,2025-03-01T09:30:00Z,DEPOSIT,1.00,=EUR,,,,`, "currency"},
	} {
		recs, err := all(t, format.Events(format.CSV, strings.NewReader(head+c.line)))
		if err != nil || len(recs) != 1 {
			t.Fatalf("%s: %v %v", name, recs, err)
		}
		if e := recs[0].Err; e == nil || validate.CodeOf(e) != validate.CodeCSVFormula || !strings.HasPrefix(e.Error(), c.field+": starts with") {
			t.Errorf("%s: %v, want %s on %s", name, e, validate.CodeCSVFormula, c.field)
		}
	}
	ok := head + `t-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,10.00,EUR,OTHER-BANK,-300.00,MOBILE,` + "\n" +
		`t-2,C1,A1,2025-03-01T09:30:00Z,COMPLAINT,,,,,PHONE,-0.8` + "\n"
	recs, err := all(t, format.Events(format.CSV, strings.NewReader(ok)))
	if err != nil || len(recs) != 2 || recs[0].Err != nil || recs[1].Err != nil || recs[0].Value.BalanceAfter != "-300.00" {
		t.Fatalf("negative numbers: %v %v", recs, err)
	}
}

// Invalid UTF-8 in a JSON or CSV record is refused by validation, naming
// the field (the decoders carry it as U+FFFD).
func TestInvalidUTF8IsRejectedPerRecord(t *testing.T) {
	in := `{"eventId":"t-1",` + goodEvent + `,"amount":"5.00","counterpartyBank":"OTHER` + "\xff" + `"}` + "\n" +
		`{"eventId":"t-2",` + goodEvent + `,"amount":"5.00"}` + "\n"
	recs, err := all(t, format.Events(format.NDJSON, strings.NewReader(in)))
	if err != nil || len(recs) != 2 {
		t.Fatal(recs, err)
	}
	if _, verr := validate.Event(recs[0].Value, now); verr == nil || verr.Code != validate.CodeBadUTF8 || verr.Field != "counterpartyBank" {
		t.Fatalf("record 0: %v", verr)
	}
	if _, verr := validate.Event(recs[1].Value, now); verr != nil {
		t.Fatalf("record 1: %v", verr)
	}
	csv := strings.Join(format.CSVColumns, ",") + "\n" + "t-1,C\xfe1,A1,2025-03-01T09:30:00Z,LOGIN,,,,,,\n"
	recs, err = all(t, format.Events(format.CSV, strings.NewReader(csv)))
	if err != nil || len(recs) != 1 || recs[0].Err != nil {
		t.Fatal(recs, err)
	}
	if _, verr := validate.Event(recs[0].Value, now); verr == nil || verr.Code != validate.CodeBadUTF8 || verr.Field != "customerId" {
		t.Fatalf("csv: %v", verr)
	}
}
