package scoring

import (
	"math/rand/v2"
	"sort"
	"testing"
)

// TestDueHeapOrder: pops come out by deadline, then customer id, whatever
// the order of pushes, interleaved with pops.
func TestDueHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	custs := make([]*customer, 50)
	for i := range custs {
		custs[i] = &customer{id: string(rune('A'+i%26)) + string(rune('a'+i/26))}
	}
	for round := range 200 {
		var h dueHeap
		var all, got []dueEntry
		for range rng.IntN(300) {
			e := dueEntry{at: int64(rng.IntN(20)), c: custs[rng.IntN(len(custs))]}
			h.push(e)
			all = append(all, e)
			if rng.IntN(4) == 0 {
				// A pop in between must return the least entry pushed so far.
				min := 0
				for i := range all {
					if all[i].before(all[min]) {
						min = i
					}
				}
				p := h.pop()
				if p.at != all[min].at || p.c.id != all[min].c.id {
					t.Fatalf("round %d: popped %d/%s, least is %d/%s", round, p.at, p.c.id, all[min].at, all[min].c.id)
				}
				all = append(all[:min], all[min+1:]...)
			}
		}
		for len(h) > 0 {
			got = append(got, h.pop())
		}
		sort.Slice(all, func(i, j int) bool { return all[i].before(all[j]) })
		if len(got) != len(all) {
			t.Fatalf("round %d: %d popped, %d pushed", round, len(got), len(all))
		}
		for i := range got {
			if got[i].at != all[i].at || got[i].c.id != all[i].c.id {
				t.Fatalf("round %d: pop %d is %d/%s, want %d/%s", round, i, got[i].at, got[i].c.id, all[i].at, all[i].c.id)
			}
		}
	}
}
