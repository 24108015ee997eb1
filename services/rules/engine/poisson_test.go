package engine

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// poissonLowerTailsReference is the textbook sum e^-λ Σ_{i≤k} λ^i/i! in
// 256-bit floats, for every k ≤ kmax, with e^λ from its own series (no
// float64 underflow): the oracle of poissonLowerTail.
func poissonLowerTailsReference(kmax int64, lambda float64) []float64 {
	out := make([]float64, kmax+1)
	if lambda <= 0 {
		for i := range out {
			out[i] = 1
		}
		return out
	}
	const prec = 256
	l := new(big.Float).SetPrec(prec).SetFloat64(lambda)
	term := new(big.Float).SetPrec(prec).SetInt64(1)
	total := new(big.Float).SetPrec(prec).SetInt64(1)
	partials := []*big.Float{new(big.Float).SetPrec(prec).SetInt64(1)}
	eps := new(big.Float).SetPrec(prec).SetFloat64(1e-30)
	for i := int64(1); ; i++ {
		term.Mul(term, l)
		term.Quo(term, new(big.Float).SetPrec(prec).SetInt64(i))
		total.Add(total, term)
		if i <= kmax {
			partials = append(partials, new(big.Float).SetPrec(prec).Set(total))
		}
		if float64(i) > lambda && i > kmax {
			if r := new(big.Float).Quo(term, total); r.Cmp(eps) < 0 {
				break
			}
		}
	}
	for k := range out {
		out[k], _ = new(big.Float).Quo(partials[k], total).Float64()
	}
	return out
}

func TestPoissonLowerTailKnownValues(t *testing.T) {
	for _, c := range []struct {
		k      int64
		lambda float64
		want   float64
	}{
		{2, 5, 0.12465201948308113}, // 5 → 2: ordinary for a low-activity customer
		{0, 5, 0.006737946999085467},
		{3, 25, 4.086758947996746e-08}, // 25 → 3: not chance
		{15, 30, 0.0019474797778723067},
		{0, 0.5, 0.6065306597126334},
		{10, 10, 0.5830397501929856},
	} {
		got := poissonLowerTail(c.k, c.lambda)
		if math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("P(N ≤ %d | λ = %g) = %.17g, want %.17g", c.k, c.lambda, got, c.want)
		}
	}
	if p := poissonLowerTail(2, 5); p <= 0.01 {
		t.Errorf("5 → 2 would fire at p 0.01: tail %g", p)
	}
	if p := poissonLowerTail(3, 25); p > 0.01 {
		t.Errorf("25 → 3 would stay quiet at p 0.01: tail %g", p)
	}
}

// TestPoissonLowerTailProperties: within [0, 1], rising in the count,
// falling in the rate, and equal to the reference sum, over random and
// extreme arguments (rates where e^-λ underflows float64 included).
func TestPoissonLowerTailProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 15))
	lambdas := []float64{1e-9, 0.2, 1, 4, 4.5, 30, 99.9, 300, 744, 800, 1200}
	for i := 0; i < 120; i++ {
		lambdas = append(lambdas, rng.Float64()*[]float64{5, 50, 500, 1500}[rng.IntN(4)])
	}
	for _, lambda := range lambdas {
		prev := -1.0
		kmax := min(int64(2*lambda)+3, 5000)
		refs := poissonLowerTailsReference(kmax, lambda)
		for k := int64(0); k <= kmax; k += 1 + k/20 {
			p := poissonLowerTail(k, lambda)
			if p < 0 || p > 1 || math.IsNaN(p) {
				t.Fatalf("P(N ≤ %d | %g) = %g", k, lambda, p)
			}
			if p < prev*(1-1e-10) {
				t.Fatalf("not rising in k at λ %g, k %d: %g < %g", lambda, k, p, prev)
			}
			prev = p
			if q := poissonLowerTail(k, lambda*1.01+0.01); q > p*(1+1e-10) {
				t.Fatalf("not falling in λ at k %d: P(λ=%g) = %g < P(λ=%g) = %g", k, lambda, p, lambda*1.01+0.01, q)
			}
			ref := refs[k]
			if math.Abs(p-ref) > 1e-9*ref+1e-300 {
				t.Fatalf("P(N ≤ %d | %g) = %.17g, reference %.17g", k, lambda, p, ref)
			}
		}
	}
	if poissonLowerTail(-1, 3) != 0 || poissonLowerTail(3, 0) != 1 || poissonLowerTail(3, math.Inf(1)) != 0 {
		t.Fatal("edge cases")
	}
}
