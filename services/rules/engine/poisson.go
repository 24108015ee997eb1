package engine

import "math"

// poissonLowerTail is P(N ≤ k) for N ~ Poisson(lambda): how likely a count
// this low is for a customer whose own rate is lambda per window. It sums
// the terms in log space (term_i = e^-λ λ^i / i!), scaled by the largest,
// so a large rate does not underflow e^-λ to a tail of zero. Pure float64
// arithmetic in a fixed order: the live service and back-test, running
// the same code, get the same bits.
func poissonLowerTail(k int64, lambda float64) float64 {
	switch {
	case k < 0:
		return 0
	case lambda <= 0 || math.IsNaN(lambda):
		return 1
	case math.IsInf(lambda, 1):
		return 0
	}
	// the terms rise up to i = floor(λ) and fall after: the largest of
	// 0…k is at min(k, floor(λ)).
	top := min(k, int64(lambda))
	lnL := math.Log(lambda)
	lg, _ := math.Lgamma(float64(top) + 1)
	lmax := -lambda + float64(top)*lnL - lg
	// walk down from top and up to k, multiplying by the term ratios
	sum := 1.0
	t := 1.0
	for i := top; i > 0; i-- {
		t *= float64(i) / lambda
		sum += t
		if t < 1e-18*sum {
			break
		}
	}
	t = 1.0
	for i := top + 1; i <= k; i++ {
		t *= lambda / float64(i)
		sum += t
		if t < 1e-18*sum {
			break
		}
	}
	p := math.Exp(lmax + math.Log(sum))
	return min(p, 1)
}

// dropUnlikely: the last 30 days' count is at most p likely under the
// customer's own baseline rate λ = base × 30 / baseDays.
func dropUnlikely(recent, base, baseDays int64, p Decimal) bool {
	if baseDays <= 0 {
		return false
	}
	lambda := float64(base) * 30 / float64(baseDays)
	return poissonLowerTail(recent, lambda) <= float64(p)/decimalOne
}
