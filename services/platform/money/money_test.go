package money

import (
	"errors"
	"testing"
)

func TestParseMinor(t *testing.T) {
	cases := []struct {
		in, cur string
		want    int64
		err     error
	}{
		{"12500.00", "EUR", 1250000, nil},
		{"12500", "EUR", 1250000, nil},
		{"0.5", "EUR", 50, nil},
		{"-3.5", "EUR", -350, nil},
		{"100", "JPY", 100, nil},
		{"1.5", "JPY", 0, ErrTooManyDecimals},
		{"1.234", "BHD", 1234, nil},
		{"1.001", "EUR", 0, ErrTooManyDecimals},
		{"1e5", "EUR", 0, ErrBadDecimal},
		{"1,000.00", "EUR", 0, ErrBadDecimal},
		{".5", "EUR", 0, ErrBadDecimal},
		{"5.", "EUR", 0, ErrBadDecimal},
		{"", "EUR", 0, ErrBadDecimal},
		{"10", "XXX", 0, ErrUnknownCurrency},
		{"99999999999999999999", "EUR", 0, ErrOutOfRange},
	}
	for _, c := range cases {
		got, err := ParseMinor(c.in, c.cur)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("ParseMinor(%q,%s) err=%v, want %v", c.in, c.cur, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseMinor(%q,%s)=%d,%v want %d", c.in, c.cur, got, err, c.want)
		}
	}
}

func TestFormatMinor(t *testing.T) {
	for _, c := range []struct {
		v    int64
		cur  string
		want string
	}{{1250000, "EUR", "12500.00"}, {5, "EUR", "0.05"}, {-350, "EUR", "-3.50"}, {100, "JPY", "100"}, {1234, "BHD", "1.234"}} {
		if got := FormatMinor(c.v, c.cur); got != c.want {
			t.Errorf("FormatMinor(%d,%s)=%q want %q", c.v, c.cur, got, c.want)
		}
	}
}

func FuzzParseScaled(f *testing.F) {
	for _, s := range []string{"1.00", "-0.5", "abc", "1..2", "+3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseScaled(s, 2)
		if err == nil {
			if back, err2 := ParseScaled(FormatScaled(v, 2), 2); err2 != nil || back != v {
				t.Fatalf("round trip %q → %d → %v", s, v, err2)
			}
		}
	})
}
