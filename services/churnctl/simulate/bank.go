package simulate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// bank is one simulation run: the calendar, the planned customers and the
// day loop that steps them all through the timeline.
type bank struct {
	cfg   Config
	p     *Params
	cal   *calendar
	exp   int   // minor-unit digits of the currency
	unit  int64 // minor units per major unit
	org   organisation
	custs []*customer
}

func newBank(cfg Config) (*bank, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := DefaultParams()
	if cfg.Params != nil {
		p = *cfg.Params
	}
	s := &bank{cfg: cfg, p: &p, cal: newCalendar(cfg.Start, cfg.Months)}
	s.exp = currencyExponent(cfg.Currency)
	s.unit = 1
	for range s.exp {
		s.unit *= 10
	}
	s.org = newOrganisation(cfg.Customers, &p)
	width := max(6, len(strconv.Itoa(cfg.Customers)))
	s.custs = make([]*customer, cfg.Customers)
	for i := range s.custs {
		s.custs[i] = s.planCustomer(i, width)
	}
	return s, nil
}

// Salts separating the random streams of one customer.
const (
	streamBehaviour = 0x6a09e667f3bcc909
	streamOrg       = 0xbb67ae8584caa73b
	streamSilent    = 0x3c6ef372fe94f82b
)

// customerRand returns the random stream of customer i: a PCG seeded from
// the run seed and the customer index, so that a customer's draws depend on
// nothing else.
func customerRand(seed int64, i int, salt uint64) *rand.Rand {
	x := uint64(i) + salt
	// splitmix64 finaliser spreads consecutive indexes over the state space.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return rand.New(rand.NewPCG(uint64(seed)^salt, x))
}

// cents converts an amount in cents of the major unit to minor units.
func (s *bank) cents(v int64) int64 { return v * s.unit / 100 }

func (s *bank) customerRecords() []Customer {
	out := make([]Customer, len(s.custs))
	for i, c := range s.custs {
		out[i] = Customer{
			CustomerID:  c.id,
			Tier:        tierNames[c.tier],
			ManagerID:   c.manager,
			BranchID:    c.branch,
			DisplayName: c.name,
		}
	}
	return out
}

func (s *bank) labels() []Label {
	out := make([]Label, len(s.custs))
	for i, c := range s.custs {
		l := Label{CustomerID: c.id, Archetype: archetypeNames[c.arch]}
		if c.arch != archStable {
			l.Churned = true
			l.ChurnDate = s.cal.days[c.churnDay].date
		}
		out[i] = l
	}
	return out
}

// estimatedEvents sizes the event slice of Generate from the customers'
// expected monthly counts, a few per cent above what they come to.
func (s *bank) estimatedEvents() int {
	total := 0.0
	for _, c := range s.custs {
		tp := c.tp
		perMonth := float64((tp.CardPerMonth+tp.ATMPerMonth+tp.DepositPerMonth+tp.LoginPerMonth+tp.MiscOutPerMonth+tp.MiscInPerMonth)*c.level) + 4 + float64(2*len(c.accts))
		total += perMonth
	}
	months := float64(len(s.cal.days)) / 30.44
	return int(total*months) + 1024
}

// rawEvent is an event before its strings are rendered. It holds no
// pointers, so that a whole simulation's worth costs the garbage collector
// nothing to scan.
type rawEvent struct {
	amount    int64
	balance   int64
	day       int32
	sec       int32
	cust      int32
	seq       int32
	sentiment int16 // hundredths
	acct      int8
	typ       eventType
	bank      bankRef
	channel   channel
	money     bool
	hasSent   bool
}

// Sort keys pack (second of the day, customer, index in the day) into a
// uint64; within a customer and day the index follows the sequence number,
// so key order is event-id order.
const (
	keyIndexBits = 27
	keyCustBits  = 20
	maxSeq       = 999_999 // event ids carry a 6-digit sequence
)

// simulate steps every customer through every day and hands each day's
// events to fn sorted by time, then customer, then sequence: the order of
// their ids. fn must not keep the slice.
func (s *bank) simulate(fn func(day []rawEvent) error) error {
	var day, sorted []rawEvent
	var keys []uint64
	for d := range s.cal.days {
		day = day[:0]
		for _, c := range s.custs {
			day = c.step(s, d, day)
		}
		keys = keys[:0]
		for i := range day {
			e := &day[i]
			if e.seq > maxSeq {
				return fmt.Errorf("customer %s: more than %d events", s.custs[e.cust].id, maxSeq)
			}
			keys = append(keys, uint64(e.sec)<<(keyCustBits+keyIndexBits)|uint64(e.cust)<<keyIndexBits|uint64(i))
		}
		slices.Sort(keys)
		sorted = sorted[:0]
		for _, k := range keys {
			sorted = append(sorted, day[k&(1<<keyIndexBits-1)])
		}
		if err := fn(sorted); err != nil {
			return err
		}
	}
	return nil
}

// render fills dst[i] from raws[i]. All the strings it creates are views
// of one builder's buffer, which is only ever appended to.
func (s *bank) render(raws []rawEvent, dst []Event) {
	size := 0
	for i := range raws {
		size += len(s.custs[raws[i].cust].eventPrefix) + 6 + 20
		if raws[i].money {
			size += 24
		}
	}
	var sb strings.Builder
	sb.Grow(size)
	scratch := make([]byte, 0, 64)
	write := func(b []byte) string {
		from := sb.Len()
		sb.Write(b)
		return sb.String()[from:]
	}
	for i := range raws {
		e := &raws[i]
		c := s.custs[e.cust]
		scratch = append(scratch[:0], c.eventPrefix...)
		id := write(appendPadded(scratch, int(e.seq), 6))
		scratch = append(scratch[:0], s.cal.days[e.day].prefix...)
		ev := Event{
			EventID:    id,
			CustomerID: c.id,
			AccountID:  c.accts[e.acct].id,
			OccurredAt: write(appendClock(scratch, int(e.sec))),
			Type:       eventTypeNames[e.typ],
			Channel:    channelNames[e.channel],
		}
		if e.money {
			ev.Amount = write(appendMinor(scratch[:0], e.amount, s.exp))
			ev.BalanceAfter = write(appendMinor(scratch[:0], e.balance, s.exp))
			ev.Currency = s.cfg.Currency
			switch {
			case e.bank == homeBank:
				ev.CounterpartyBank = s.cfg.HomeBank
			case e.bank >= firstOtherBank:
				ev.CounterpartyBank = otherBanks[e.bank-firstOtherBank]
			}
		}
		if e.hasSent {
			v := float64(e.sentiment) / 100
			ev.Sentiment = &v
		}
		dst[i] = ev
	}
}

func appendPadded(dst []byte, v, width int) []byte {
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(b); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, b...)
}

// appendClock appends "HH:MM:SSZ" for sec seconds after midnight.
func appendClock(dst []byte, sec int) []byte {
	h, m, s := sec/3600, sec/60%60, sec%60
	return append(dst,
		byte('0'+h/10), byte('0'+h%10), ':',
		byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+s/10), byte('0'+s%10), 'Z')
}
