package engine

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// stateVersion is the first byte of a marshalled State. Bump it when the
// layout changes and keep decoding the old one.
const stateVersion = 1

const (
	flagInit = 1 << iota
	flagActivity
	flagDeclFired
	flagChurnFired
	flagDropFired
	flagDrainFired
	flagSalary
	flagSalaryFired
	flagBalHistory
	flagNext
	flagPruned
)

const (
	bucketTxns = 1 << iota
	bucketOut
	bucketBal
)

const (
	liveHolding = 1 << iota
	liveUnknown
	liveRawID
)

// Decoder bounds: a blob claiming more than this is corrupt.
const (
	maxString      = 1024
	maxBuckets     = keepCountDays + 64
	maxObs         = keepObsDays + 8
	maxComplaints  = 4 * maxComplaintCount
	maxSalaryStore = 4 * maxSalaryCredits
	maxTimeSec     = 1 << 33 // about 272 years either side of 1970
)

// MarshalBinary encodes the state compactly: varints, days and times
// relative to the customer's clock, balances as deltas.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.EncodedSizeHint()))
}

// EncodedSizeHint is about how many bytes the encoded state takes.
func (s *State) EncodedSizeHint() int {
	return 256 + len(s.buckets)*6 + len(s.seen)*10 + len(s.live)*160
}

// AppendBinary appends MarshalBinary's encoding to b.
func (s *State) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateVersion)
	var flags uint64
	for bit, on := range [...]bool{s.init, s.hasActivity, s.declFired, s.churnFired, s.dropFired,
		s.drainFired, s.hasSalary, s.salaryFired, s.hasBalHistory, s.next != 0, s.pruned} {
		if on {
			flags |= 1 << bit
		}
	}
	b = binary.AppendUvarint(b, flags)
	if !s.init {
		return b, nil
	}
	b = appendString(b, s.customerID)
	b = appendString(b, s.currency)
	b = binary.AppendVarint(b, s.clock)
	today := dayOf(s.clock)
	b = s.appendTime(b, s.firstSeen)
	if s.hasActivity {
		b = s.appendTime(b, s.lastActivity)
		b = appendString(b, s.lastActivityID)
	}
	b = binary.AppendUvarint(b, uint64(s.stage))
	b = binary.AppendVarint(b, int64(s.dropDay-today))
	if s.hasSalary {
		b = s.appendTime(b, s.lastSalary)
		b = appendString(b, s.lastSalaryID)
	}
	if s.next != 0 {
		b = s.appendTime(b, s.next)
	}
	if s.pruned {
		b = binary.AppendVarint(b, int64(s.prunedDay-today))
	}
	b = binary.AppendUvarint(b, uint64(len(s.salaryDays)))
	prev := today
	for _, d := range s.salaryDays {
		b = binary.AppendVarint(b, int64(d-prev))
		prev = d
	}
	b = binary.AppendUvarint(b, uint64(len(s.complaints)))
	for _, c := range s.complaints {
		b = s.appendTime(b, c.at)
		b = appendString(b, c.id)
	}
	if s.hasBalHistory {
		b = binary.AppendVarint(b, int64(s.balSince-today))
	}
	b = binary.AppendUvarint(b, uint64(len(s.buckets)))
	prev = today
	var prevBal int64
	for _, k := range s.buckets {
		b = binary.AppendVarint(b, int64(k.day-prev))
		prev = k.day
		var f uint64
		if k.txns != 0 {
			f |= bucketTxns
		}
		if k.extOut != 0 {
			f |= bucketOut
		}
		if k.hasBal {
			f |= bucketBal
		}
		b = binary.AppendUvarint(b, f)
		if k.txns != 0 {
			b = binary.AppendVarint(b, int64(k.txns))
		}
		if k.extOut != 0 {
			b = binary.AppendVarint(b, k.extOut)
		}
		if k.hasBal {
			b = binary.AppendVarint(b, k.bal-prevBal)
			prevBal = k.bal
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.accounts)))
	for _, a := range s.accounts {
		b = appendString(b, a.id)
		b = appendString(b, a.currency)
		b = binary.AppendUvarint(b, uint64(len(a.obs)))
		var prevBal int64
		for _, o := range a.obs {
			b = s.appendTime(b, o.at)
			b = binary.AppendVarint(b, o.bal-prevBal)
			prevBal = o.bal
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.seen)))
	for _, e := range s.seen {
		b = binary.AppendVarint(b, int64(e.day-today))
		b = binary.LittleEndian.AppendUint64(b, e.hash)
	}
	b = binary.AppendUvarint(b, uint64(len(s.live)))
	for _, l := range s.live {
		b = append(b, byte(l.rule))
		b = s.appendTime(b, l.at)
		var f uint64
		if l.holding {
			f |= liveHolding
		}
		if l.sig.UnknownCustomer {
			f |= liveUnknown
		}
		var raw [16]byte
		if rawID(&raw, l.sig.ID) {
			f |= liveRawID
		}
		b = binary.AppendUvarint(b, f)
		if !l.holding {
			b = s.appendTime(b, l.heldTo)
		}
		if f&liveRawID != 0 {
			b = append(b, raw[:]...)
		} else {
			b = appendString(b, l.sig.ID)
		}
		b = appendString(b, l.sig.Observed)
		b = appendString(b, l.sig.Threshold)
		b = appendString(b, l.sig.Unit)
		b = binary.AppendVarint(b, l.sig.ThresholdVersion)
		b = binary.AppendUvarint(b, uint64(len(l.sig.EventIDs)))
		for _, id := range l.sig.EventIDs {
			b = appendString(b, id)
		}
		b = append(b, byte(l.sig.Stage), byte(l.sig.Score), byte(l.sig.Severity), byte(l.sig.Tier))
		b = appendString(b, l.sig.Detail)
	}
	return b, nil
}

// rawID decodes a signal id of 32 lower-case hex digits (what signalID
// makes) into raw; other ids are stored as strings.
func rawID(raw *[16]byte, id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < 32; i++ {
		c := id[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			return false
		}
		raw[i/2] = raw[i/2]<<4 | v
	}
	return true
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTime writes t as seconds relative to the clock and nanoseconds.
func (s *State) appendTime(b []byte, t int64) []byte {
	sec, nsec := splitTime(t)
	csec, _ := splitTime(s.clock)
	b = binary.AppendVarint(b, sec-csec)
	return binary.AppendUvarint(b, uint64(nsec))
}

func splitTime(t int64) (sec, nsec int64) {
	sec, nsec = t/1e9, t%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return sec, nsec
}

// decoder reads a blob, remembering the first error. It moves an offset
// rather than reslicing, which keeps pointer writes (and GC write
// barriers) out of the hot loop.
type decoder struct {
	b   []byte
	str string // the same bytes: decoded strings are substrings of one copy
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorruptState, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(what)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) count(limit int, what string) int {
	n := d.uvarint(what)
	if n > uint64(limit) {
		d.fail(what + " count")
		return 0
	}
	return int(n)
}

func (d *decoder) string(what string) string {
	n := d.count(maxString, what)
	start := d.off
	if d.bytes(n, what) == nil {
		return ""
	}
	return d.str[start : start+n]
}

func (d *decoder) byteVal(limit int, what string) int {
	v := d.bytes(1, what)
	if v == nil {
		return 0
	}
	if int(v[0]) >= limit {
		d.fail(what)
		return 0
	}
	return int(v[0])
}

func (d *decoder) time(clock int64, what string) int64 {
	rel := d.varint(what)
	nsec := d.uvarint(what)
	csec, _ := splitTime(clock)
	// keep times (and deadlines years after them) inside int64 nanoseconds
	if sec := csec + rel; nsec >= 1e9 || rel < -maxTimeSec || rel > maxTimeSec || sec < -maxTimeSec || sec > maxTimeSec {
		d.fail(what)
		return 0
	}
	return (csec+rel)*1e9 + int64(nsec)
}

func (d *decoder) day(base int32, what string) int32 {
	v := d.varint(what)
	if v < -1<<24 || v > 1<<24 {
		d.fail(what)
		return 0
	}
	return base + int32(v)
}

// UnmarshalBinary replaces s with a state encoded by MarshalBinary. It
// rejects corrupt or truncated input with ErrCorruptState and never panics.
func (s *State) UnmarshalBinary(data []byte) error {
	var n State
	d := &decoder{b: data, str: string(data)}
	if v := d.bytes(1, "version"); v == nil || v[0] != stateVersion {
		return fmt.Errorf("%w: unsupported version", ErrCorruptState)
	}
	flags := d.uvarint("flags")
	if flags >= 1<<11 {
		d.fail("flags")
	}
	n.init = flags&flagInit != 0
	if d.err == nil && n.init {
		n.hasActivity = flags&flagActivity != 0
		n.declFired = flags&flagDeclFired != 0
		n.churnFired = flags&flagChurnFired != 0
		n.dropFired = flags&flagDropFired != 0
		n.drainFired = flags&flagDrainFired != 0
		n.hasSalary = flags&flagSalary != 0
		n.salaryFired = flags&flagSalaryFired != 0
		n.hasBalHistory = flags&flagBalHistory != 0
		n.pruned = flags&flagPruned != 0
		d.decodeBody(&n, flags&flagNext != 0)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	*s = n
	return nil
}

func (d *decoder) decodeBody(n *State, hasNext bool) {
	n.customerID = d.string("customer id")
	n.currency = d.string("currency")
	n.clock = d.varint("clock")
	if n.clock < -maxTimeSec*1e9 || n.clock > maxTimeSec*1e9 {
		d.fail("clock")
		return
	}
	today := dayOf(n.clock)
	n.firstSeen = d.time(n.clock, "first seen")
	if n.hasActivity {
		n.lastActivity = d.time(n.clock, "last activity")
		n.lastActivityID = d.string("last activity id")
	}
	n.stage = Stage(d.count(int(numStages)-1, "stage"))
	n.dropDay = d.day(today, "drop day")
	if n.hasSalary {
		n.lastSalary = d.time(n.clock, "last salary")
		n.lastSalaryID = d.string("last salary id")
	}
	if hasNext {
		n.next = d.time(n.clock, "next deadline")
		if n.next == 0 {
			d.fail("next deadline")
		}
	}
	if n.pruned {
		n.prunedDay = d.day(today, "pruned day")
	}
	if c := d.count(maxSalaryStore, "salary days"); c > 0 {
		n.salaryDays = make([]int32, c)
		prev := today
		for i := range n.salaryDays {
			n.salaryDays[i] = d.day(prev, "salary day")
			if i > 0 && n.salaryDays[i] <= prev {
				d.fail("salary days order")
			}
			prev = n.salaryDays[i]
		}
	}
	if c := d.count(maxComplaints, "complaints"); c > 0 {
		n.complaints = make([]complaint, c)
		for i := range n.complaints {
			n.complaints[i] = complaint{at: d.time(n.clock, "complaint"), id: d.string("complaint id")}
			if i > 0 && n.complaints[i].at < n.complaints[i-1].at {
				d.fail("complaints order")
			}
		}
	}
	if n.hasBalHistory {
		n.balSince = d.day(today, "balance since")
	}
	if c := d.count(maxBuckets, "buckets"); c > 0 {
		n.buckets = make([]bucket, c)
		prev := today
		var prevBal int64
		for i := range n.buckets {
			k := &n.buckets[i]
			k.day = d.day(prev, "bucket day")
			if i > 0 && k.day <= prev {
				d.fail("bucket order")
			}
			prev = k.day
			f := d.uvarint("bucket flags")
			if f == 0 || f >= 1<<3 {
				d.fail("bucket flags")
			}
			if f&bucketTxns != 0 {
				t := d.varint("bucket txns")
				if t <= 0 || t > 1<<30 {
					d.fail("bucket txns")
				}
				k.txns = int32(t)
			}
			if f&bucketOut != 0 {
				k.extOut = d.varint("bucket outflow")
			}
			if f&bucketBal != 0 {
				k.hasBal, k.bal = true, prevBal+d.varint("bucket balance")
				prevBal = k.bal
			}
		}
	}
	n.derive()
	if c := d.count(maxAccounts, "accounts"); c > 0 {
		n.accounts = make([]account, c)
		for i := range n.accounts {
			a := &n.accounts[i]
			a.id = d.string("account id")
			a.currency = d.string("account currency")
			if c := d.count(maxObs, "observations"); c > 0 {
				a.obs = make([]balanceObs, c)
				var prevBal int64
				for j := range a.obs {
					a.obs[j].at = d.time(n.clock, "observation")
					a.obs[j].bal = prevBal + d.varint("observation balance")
					prevBal = a.obs[j].bal
					if j > 0 && a.obs[j].at <= a.obs[j-1].at {
						d.fail("observation order")
					}
				}
			}
		}
	}
	if c := d.count(maxSeen, "seen"); c > 0 {
		n.seen = make([]seenID, c)
		for i := range n.seen {
			n.seen[i].day = d.day(today, "seen day")
			if h := d.bytes(8, "seen hash"); h != nil {
				n.seen[i].hash = binary.LittleEndian.Uint64(h)
			}
		}
	}
	if c := d.count(int(numRules), "live signals"); c > 0 {
		n.live = make([]liveSignal, c)
		for i := range n.live {
			d.decodeLive(n, &n.live[i])
			if i > 0 && n.live[i].rule <= n.live[i-1].rule {
				d.fail("live signal order")
			}
		}
	}
}

func (d *decoder) decodeLive(n *State, l *liveSignal) {
	l.rule = rule(d.byteVal(int(numRules), "live rule"))
	l.at = d.time(n.clock, "live time")
	f := d.uvarint("live flags")
	if f >= 1<<3 {
		d.fail("live flags")
	}
	l.holding = f&liveHolding != 0
	if !l.holding {
		l.heldTo = d.time(n.clock, "live held to")
	}
	sig := &l.sig
	if f&liveRawID != 0 {
		sig.ID = hex.EncodeToString(d.bytes(16, "signal id"))
	} else {
		sig.ID = d.string("signal id")
	}
	sig.CustomerID = n.customerID
	sig.Rule = ruleIDs[l.rule]
	sig.Time = toTime(l.at)
	sig.UnknownCustomer = f&liveUnknown != 0
	sig.Observed = d.string("observed")
	sig.Threshold = d.string("threshold")
	sig.Unit = d.string("unit")
	sig.ThresholdVersion = d.varint("threshold version")
	if c := d.count(MaxSignalEvents, "signal events"); c > 0 {
		sig.EventIDs = make([]string, c)
		for j := range sig.EventIDs {
			sig.EventIDs[j] = d.string("signal event id")
		}
	}
	sig.Stage = Stage(d.byteVal(int(numStages), "signal stage"))
	sig.Score = d.byteVal(101, "signal score")
	sig.Severity = Severity(d.byteVal(int(numSeverities), "signal severity"))
	sig.Tier = Tier(d.byteVal(int(numTiers), "signal tier"))
	sig.Detail = d.string("detail")
}
