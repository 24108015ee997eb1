package mapping

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

// realDir is the PKDD'99 export (CHURNWATCH_REALBANK, default the shared
// data folder beside the checkout).
func realDir() string {
	if d := os.Getenv("CHURNWATCH_REALBANK"); d != "" {
		return d
	}
	return "/work/shared/data/realbank"
}

func dirOpener(dir string) Opener {
	return func(p string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, p)) }
}

// TestRealExport converts the whole PKDD'99 export with the shipped mapping
// when the data is present: every transaction is converted, none rejected.
func TestRealExport(t *testing.T) {
	if _, err := os.Stat(filepath.Join(realDir(), "trans.asc")); err != nil {
		t.Skip("no real data here")
	}
	src, err := os.ReadFile("../../../deploy/mappings/pkdd99-czech.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Convert(dirOpener(realDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("types: %v; customers %d", out.Types, len(out.Customers))
	rejected := 0
	for _, r := range out.Events {
		if r.Err != nil {
			rejected++
			if rejected < 5 {
				t.Errorf("%s line %d: %v", r.File, r.Line, r.Err)
			}
		}
	}
	// and the ingester accepts every one of them
	now := time.Now()
	for _, r := range out.Events {
		if r.Err == nil {
			if _, verr := validate.Event(r.Value, now); verr != nil {
				rejected++
				if rejected < 5 {
					t.Errorf("%s line %d: ingester rejects %v: %v", r.File, r.Line, r.Value, verr)
				}
			}
		}
	}
	if len(out.Events) != 49102 || rejected != 0 {
		t.Fatalf("%d events, %d rejected; want 49102, 0", len(out.Events), rejected)
	}
	tiers := map[string]int{}
	for _, c := range out.Customers {
		if c.Err != nil {
			t.Errorf("customer line %d: %v", c.Line, c.Err)
		}
		if _, verr := validate.Customer(c.Value, now); verr != nil {
			t.Errorf("customer line %d: ingester rejects %v: %v", c.Line, c.Value, verr)
		}
		tiers[c.Value.Tier]++
	}
	t.Logf("tiers %v", tiers)
	if len(out.Customers) != 1229 {
		t.Fatalf("%d customers, want 1229 (one owner per account with transactions)", len(out.Customers))
	}
}
