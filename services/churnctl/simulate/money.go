package simulate

import "strconv"

// currencyExponent returns the ISO 4217 minor-unit digits of code: the
// codes without or with three minor digits are listed, every other code has
// two. The package stays on the standard library, hence its own short table.
func currencyExponent(code string) int {
	switch code {
	case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
		"RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF":
		return 0
	case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
		return 3
	}
	return 2
}

func isCurrencyCode(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}

// appendMinor appends v minor units as a decimal with exp digits after the
// point, for example 1250000 with exp 2 → "12500.00".
func appendMinor(dst []byte, v int64, exp int) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	if exp == 0 {
		return strconv.AppendInt(dst, v, 10)
	}
	var unit int64 = 1
	for range exp {
		unit *= 10
	}
	dst = strconv.AppendInt(dst, v/unit, 10)
	dst = append(dst, '.')
	frac := v % unit
	for u := unit / 10; u > 0; u /= 10 {
		dst = append(dst, byte('0'+frac/u))
		frac %= u
	}
	return dst
}
