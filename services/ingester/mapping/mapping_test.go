package mapping

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

func loadShipped(t testing.TB) *Mapping {
	t.Helper()
	src, err := os.ReadFile("../../../deploy/mappings/pkdd99-czech.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func eventLine(e *cwv1.IncomingEvent) string {
	return strings.Join([]string{e.EventId, e.CustomerId, e.AccountId, e.OccurredAt, e.Type, e.Amount, e.Currency,
		e.CounterpartyBank, e.BalanceAfter, e.Channel}, " ")
}

// TestPKDD99Rows: one real row of every code combination in trans.asc
// (testdata/pkdd99 holds them with their accounts and dispositions) through
// the shipped mapping.
func TestPKDD99Rows(t *testing.T) {
	m := loadShipped(t)
	out, err := m.Convert(dirOpener("testdata/pkdd99"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"pkdd99-t695247 C2873 A2378 1993-01-01T12:00:00+01:00 DEPOSIT 700.00 CZK  700.00 BRANCH",
		"pkdd99-t637742 C2636 A2177 1993-01-05T12:00:00+01:00 SALARY 5123.00 CZK YZ 5923.00 ",
		"pkdd99-t232961 C950 A793 1993-01-05T12:00:00+01:00 TRANSFER_IN 3401.00 CZK IJ 4201.00 ",
		"pkdd99-t695560 C2873 A2378 1993-01-31T12:00:00+01:00 WITHDRAWAL 34700.00 CZK  59453.70 ",
		"pkdd99-t3591421 C2236 A1844 1993-01-31T12:00:00+01:00 INTEREST 12.60 CZK  3754.60 ",
		"pkdd99-t695340 C2873 A2378 1993-02-07T12:00:00+01:00 TRANSFER_OUT 9612.00 CZK EF 80033.70 ",
		"pkdd99-t695490 C2873 A2378 1993-02-28T12:00:00+01:00 FEE 14.60 CZK  71437.80 ",
		"pkdd99-t144776 C583 A485 1993-03-06T12:00:00+01:00 TRANSFER_OUT 1591.00 CZK WX 49952.90 ",
		"pkdd99-t144848 C583 A485 1993-03-07T12:00:00+01:00 TRANSFER_OUT 3572.00 CZK AB 46380.90 ",
		"pkdd99-t144918 C583 A485 1993-03-26T12:00:00+01:00 WITHDRAWAL 5166.00 CZK  88602.90 ",
		"pkdd99-t1450116 C5965 A4937 1993-04-24T12:00:00+02:00 WITHDRAWAL 5400.00 CZK  45384.20 ",
		"pkdd99-t989868 C4080 A3374 1993-05-07T12:00:00+02:00 WITHDRAWAL 8000.00 CZK  89944.10 ",
		"pkdd99-t233109 C950 A793 1993-05-07T12:00:00+02:00 TRANSFER_OUT 204.00 CZK OP 17668.70 ",
		"pkdd99-t989796 C4080 A3374 1993-05-10T12:00:00+02:00 WITHDRAWAL 4700.00 CZK  85244.10 ",
		"pkdd99-t3452675 C6944 A5740 1993-06-30T12:00:00+02:00 FEE 2.50 CZK  6770.10 ",
		"pkdd99-t527534 C2181 A1801 1993-07-12T12:00:00+02:00 TRANSFER_OUT 4610.00 CZK OP 43431.90 ",
		"pkdd99-t2349940 C9593 A7753 1994-01-03T12:00:00+01:00 WITHDRAWAL 3600.00 CZK  61068.10 ATM",
	}
	if len(out.Events) != len(want) {
		t.Fatalf("%d events, want %d", len(out.Events), len(want))
	}
	for i, r := range out.Events {
		if r.Err != nil {
			t.Errorf("line %d: %v", r.Line, r.Err)
			continue
		}
		if got := eventLine(r.Value); got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", r.Line, got, want[i])
		}
		if r.Line != i+2 || r.File != "trans.asc" {
			t.Errorf("record %d at %s line %d, want trans.asc line %d", i, r.File, r.Line, i+2)
		}
		if _, verr := validate.Event(r.Value, time.Now()); verr != nil {
			t.Errorf("line %d: the ingester would reject it: %v", r.Line, verr)
		}
	}
	// owners only (account 793's DISPONENT 951 is not a customer), branch =
	// the account's district, tier from the average balance of the rows here
	got := map[string]string{}
	for _, c := range out.Customers {
		if c.Err != nil {
			t.Fatalf("customer line %d: %v", c.Line, c.Err)
		}
		got[c.Value.CustomerId] = c.Value.Tier + " " + c.Value.BranchId + " " + c.Value.DisplayName
	}
	wantC := map[string]string{
		"C2873": "POTENTIAL D16 client 2873", // (700 + 59453.70 + 80033.70 + 71437.80) / 4 = 52,906
		"C950":  "BASIC D47 client 950",      // (4201 + 17668.70) / 2
		"C583":  "HIGH_NET_WORTH D6 client 583",
		"C2236": "BASIC D44 client 2236",
		"C2181": "POTENTIAL D46 client 2181",
		"C9593": "HIGH_NET_WORTH D74 client 9593",
	}
	if len(got) != 10 {
		t.Errorf("%d customers, want the 10 owners: %v", len(got), got)
	}
	for id, w := range wantC {
		if got[id] != w {
			t.Errorf("customer %s: got %q, want %q", id, got[id], w)
		}
	}
	if _, ok := got["C951"]; ok {
		t.Error("a DISPONENT became a customer")
	}
}

// memFiles opens files from a map, for mappings written in a test.
func memFiles(files map[string]string) Opener {
	return func(p string) (io.ReadCloser, error) {
		s, ok := files[p]
		if !ok {
			return nil, fmt.Errorf("open %s: %w", p, os.ErrNotExist)
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

const generic = `mapping: 1
currency: EUR
files:
  tx: {path: tx.csv, delimiter: "|", quote: "'"}
events:
  file: tx
  id: "x-{ref}"
  customer: "{cust}"
  account: "{cust}-01"
  occurred_at: {column: when, format: "DD.MM.YYYY hh:mm"}
  amount: {column: amt, sign: abs}
  number: {decimal: ",", thousands: ". "}
  currency: "{ccy}"
  types:
    - {when: {code: "10", amt: {not: ""}}, type: DEPOSIT}
    - {when: {code: ["20", "21"], bank: {empty: false}}, type: TRANSFER_OUT, counterparty_bank: "{bank}"}
    - {when: {code: ["20", "21"]}, type: WITHDRAWAL}
    - {when: {code: "99"}, reject: "reversal of an earlier booking"}
`

// TestGenericFormats: another delimiter and quote, European numbers,
// a date with a time, currency from a column, a sign dropped, conditions
// on two columns, a reject rule and an unmatched code.
func TestGenericFormats(t *testing.T) {
	m, err := Load([]byte(generic))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Convert(memFiles(map[string]string{"tx.csv": "ref|cust|when|code|amt|ccy|bank\n" +
		"1|C1|01.03.2025 09:30|10|1.234,50||\n" +
		"2|C1|02.03.2025 10:00|20|-12 500,00|czk|'OTHER|BANK'\n" +
		"3|C1|02.03.2025 11:00|21|-7,5|EUR|\n" +
		"4|C1|03.03.2025 11:00|99|5|EUR|\n" +
		"5|C1|03.03.2025 11:00|55|5|EUR|\n" +
		"6|C1|2025-03-03|10|5|EUR|\n" +
		"7|C1|03.03.2025 11:00|10|5,5,5|EUR|\n"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"x-1 C1 C1-01 2025-03-01T09:30:00Z DEPOSIT 1234.50 EUR   ",
		"x-2 C1 C1-01 2025-03-02T10:00:00Z TRANSFER_OUT 12500.00 CZK OTHER|BANK  ",
		"x-3 C1 C1-01 2025-03-02T11:00:00Z WITHDRAWAL 7.5 EUR   ",
		"reversal of an earlier booking",
		`no events.types rule matches (code="55" amt="5" bank="")`,
		`date "2025-03-03" does not match`,
		`amount "5,5,5" is not a number`,
	}
	for i, r := range out.Events {
		got := ""
		if r.Err != nil {
			got = r.Err.Error()
			if !errors.Is(r.Err, ErrRow) {
				t.Errorf("line %d: %v does not wrap ErrRow", r.Line, r.Err)
			}
			if !strings.Contains(got, want[i]) {
				t.Errorf("line %d: %q, want it to say %q", r.Line, got, want[i])
			}
			continue
		}
		if got = eventLine(r.Value); got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", r.Line, got, want[i])
		}
	}
}

// TestValidationErrorsHaveLines: each broken mapping reports the line of
// the problem and says what to do.
func TestValidationErrorsHaveLines(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
		line             int
	}{
		{"unknown key", `  id: "x-{ref}"` + "\n  colour: red", `unknown key "colour"`, 8},
		{"bad type", `type: DEPOSIT}`, `type "DEPOSITS" is not a SPEC §2 type`, 15},
		{"type and reject", `reject: "reversal of an earlier booking"}`, "type and reject both set", 18},
		{"unknown file", "  file: tx\n  id", `file "tz" is not under files`, 6},
		{"bad date format", `DD.MM.YYYY hh:mm`, `unknown token`, 10},
		{"unknown lookup", `"{cust}-01"`, `no lookup "acct"`, 9},
		{"bad delimiter", `delimiter: "|"`, `delimiter "||"`, 4},
		{"no version", "mapping: 1", "mapping: 1 is required", 1},
		{"yaml syntax", "    - {when: {code: \"99\"}", "did not find expected", 0},
		{"bad channel", `type: WITHDRAWAL}`, `channel "CAR"`, 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := generic
			switch tc.name {
			case "unknown key":
				src = strings.Replace(src, `  id: "x-{ref}"`, tc.edit, 1)
			case "bad type":
				src = strings.Replace(src, tc.edit, `type: DEPOSITS}`, 1)
			case "type and reject":
				src = strings.Replace(src, tc.edit, `reject: "reversal", type: FEE}`, 1)
			case "unknown file":
				src = strings.Replace(src, tc.edit, "  file: tz\n  id", 1)
			case "bad date format":
				src = strings.Replace(src, tc.edit, "DD.MM.YYYY hh:mm QQ", 1)
			case "unknown lookup":
				src = strings.Replace(src, tc.edit, `"{acct.no}"`, 1)
			case "bad delimiter":
				src = strings.Replace(src, tc.edit, `delimiter: "||"`, 1)
			case "no version":
				src = strings.Replace(src, tc.edit, "name: x", 1)
			case "yaml syntax":
				src = strings.Replace(src, tc.edit, "    - {when: {code: \"99\"", 1)
			case "bad channel":
				src = strings.Replace(src, tc.edit, `type: WITHDRAWAL, channel: CAR}`, 1)
			}
			_, err := Load([]byte(src))
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load: %v, want an *InvalidError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want it to say %q", err, tc.want)
			}
			if tc.line > 0 && !strings.Contains(err.Error(), fmt.Sprintf("mapping line %d: ", tc.line)) {
				t.Fatalf("%v, want it at mapping line %d", err, tc.line)
			}
		})
	}
}

// TestRunTimeFileProblems: a column the file lacks fails the whole
// conversion, naming the mapping line and the file's columns.
func TestRunTimeFileProblems(t *testing.T) {
	m, err := Load([]byte(generic))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Convert(memFiles(map[string]string{"tx.csv": "ref|cust|when|code|amt|ccy\n1|C1|01.03.2025 09:30|10|1|EUR\n"}))
	if err == nil || !strings.Contains(err.Error(), `column "bank" is not in tx.csv`) || !strings.Contains(err.Error(), "mapping line 16") {
		t.Fatalf("missing column: %v", err)
	}
	_, err = m.Convert(memFiles(nil))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzConvert: any bytes as the transaction file of the shipped mapping
// never panic; every record is converted or rejected with a reason, with a
// line inside the input, and converted ones have the required ids.
func FuzzConvert(f *testing.F) {
	m := loadShipped(f)
	fixture, _ := os.ReadFile(filepath.Join("testdata/pkdd99", "trans.asc"))
	disp, _ := os.ReadFile(filepath.Join("testdata/pkdd99", "disp.asc"))
	acct, _ := os.ReadFile(filepath.Join("testdata/pkdd99", "account.asc"))
	f.Add(fixture)
	f.Add([]byte("\"trans_id\";\"account_id\";\"date\";\"type\";\"operation\";\"amount\";\"balance\";\"k_symbol\";\"bank\";\"account\"\n1;2378;939999;\"PRIJEM\";\"VKLAD\";-1;x;\"\";;\n"))
	f.Add([]byte("\"trans_id\";\"account_id\";\"date\";\"type\";\"operation\";\"amount\";\"balance\";\"k_symbol\";\"bank\";\"account\"\n1;2378;930101;\"PRI\"JEM\";\"VKLAD\";1;1;\"\";;\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := m.Convert(memFiles(map[string]string{"trans.asc": string(b), "disp.asc": string(disp), "account.asc": string(acct)}))
		if err != nil {
			return
		}
		lines := strings.Count(string(b), "\n") + 1
		for _, r := range out.Events {
			if r.Line < 2 || r.Line > lines {
				t.Fatalf("record at line %d of %d", r.Line, lines)
			}
			if r.Err != nil {
				if r.Err.Error() == "" {
					t.Fatal("empty reason")
				}
				continue
			}
			if r.Value.EventId == "" || r.Value.CustomerId == "" || r.Value.Type == "" || r.Value.OccurredAt == "" {
				t.Fatalf("incomplete event %v", r.Value)
			}
		}
	})
}

// FuzzLoad: any mapping text loads or fails with problems, never panics.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(generic))
	src, _ := os.ReadFile("../../../deploy/mappings/pkdd99-czech.yaml")
	f.Add(src)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Load(b)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || len(ie.Problems) == 0 {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		_, _ = m.Convert(memFiles(map[string]string{}))
	})
}
