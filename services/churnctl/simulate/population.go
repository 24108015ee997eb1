package simulate

import (
	"fmt"
	"math/rand/v2"
)

type tier int

const (
	tierHNW tier = iota
	tierPotential
	tierMass
	tierBasic
)

var tierNames = [...]string{TierHighNetWorth, TierPotential, TierMass, TierBasic}

type archetype int

const (
	archStable archetype = iota
	archGradualDecline
	archSuddenDrain
	archSalaryMoved
	archComplaintThenLeave
	archAccountClosure
	archChurnedWonBack
	// archSilent leaves with no warning sign: full activity up to the
	// churn date, then nothing. Not in Mix: a share of every churner draw.
	archSilent
)

var archetypeNames = [...]string{
	ArchetypeStable, ArchetypeGradualDecline, ArchetypeSuddenDrain, ArchetypeSalaryMoved,
	ArchetypeComplaintThenLeave, ArchetypeAccountClosure, ArchetypeChurnedWonBack, ArchetypeSilent,
}

// otherBanks are the counterparties of external transfers.
var otherBanks = [...]string{"OTHERBANK1", "OTHERBANK2", "OTHERBANK3", "NEOBANK"}

// Synthetic display names in the SPEC's "Wang L." style: a surname and an
// initial, drawn from short lists. They resemble no real customer.
var surnames = [...]string{
	"Wang", "Smith", "Müller", "Garcia", "Rossi", "Dubois", "Nowak", "Silva",
	"Jansen", "Novak", "Kowalski", "Andersen", "Papadopoulos", "Horvat", "Popescu",
	"Ivanova", "Virtanen", "Larsen", "Murphy", "Costa", "Fischer", "Weber",
	"Martin", "Bernard", "Moreau", "Romano", "Ricci", "Schmidt", "Meyer", "Lopez",
	"Sanchez", "Kim", "Nguyen", "Yilmaz", "Kaya", "Haddad", "Okafor", "Mensah",
	"Tanaka", "Sato", "Chen", "Li", "Singh", "Patel", "Khan", "Ali", "Berg", "Lind",
}

// organisation is the bank's network of managers and branches.
type organisation struct {
	managers int
	perBr    int
}

func newOrganisation(customers int, p *Params) organisation {
	m := max(1, (customers+p.CustomersPerManager/2)/p.CustomersPerManager)
	return organisation{managers: m, perBr: p.ManagersPerBranch}
}

func (o organisation) branches() int { return (o.managers + o.perBr - 1) / o.perBr }

func managerID(i int) string { return fmt.Sprintf("rm-%03d", i+1) }
func branchID(i int) string  { return fmt.Sprintf("br-%02d", i+1) }

// assign gives a customer a manager and branch; unassigned customers keep a
// branch, whose head then receives their alerts.
func (o organisation) assign(r *rand.Rand, unassignedRate float64) (manager, branch string) {
	if r.Float64() < unassignedRate {
		return "", branchID(r.IntN(o.branches()))
	}
	m := r.IntN(o.managers)
	return managerID(m), branchID(m / o.perBr)
}

func displayName(r *rand.Rand) string {
	return surnames[r.IntN(len(surnames))] + " " + string(rune('A'+r.IntN(26))) + "."
}

// pick returns an index drawn with the given weights.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	u := r.Float64() * total
	for i, w := range weights {
		if u < w {
			return i
		}
		u -= w
	}
	return len(weights) - 1
}

// bankRef names a counterparty bank in a raw event: none, the home bank or
// one of otherBanks.
type bankRef uint8

const (
	noBank bankRef = iota
	homeBank
	firstOtherBank
)

func otherBank(i int) bankRef { return firstOtherBank + bankRef(i) }

type channel uint8

const (
	chNone channel = iota
	chBranch
	chMobile
	chOnline
	chATM
	chPhone
)

var channelNames = [...]string{"", "BRANCH", "MOBILE", "ONLINE", "ATM", "PHONE"}
