// Package store owns the rules service's Redis layout: one hash per customer
// (engine state with its offset watermark, and the customer profile), the
// event-time clock of every events partition, one deadline index per
// partition for the absence-rule sweep, and the versioned threshold set with
// its audit trail.
//
// Keys:
//
//	cw:{c:ID}                 hash  s = state envelope, w = stamp of the write that stored s, p = profile (tier, manager, branch)
//	cw:rules:clocks           zset  member = partition, score = clock (unix ms); only moves forward (ZADD GT)
//	cw:rules:due:{p:N}        zset  member = customer id, score = next absence deadline (unix ms, floored)
//	cw:{th}:current           string JSON of the current threshold set
//	cw:{th}:log               list  JSON of each change, newest first
//	cw:rules:kpi:…            the KPI facts (kpi.go)
//
// Every customer key has its own hash tag so that a Redis Cluster spreads
// customers over slots; the clocks, each deadline index and the threshold
// keys ({th}: the WATCH/MULTI of Update spans both) are one slot each. No
// key changed for Redis Cluster: a batch write that spans slots is ordered
// instead of transactional there (see Apply). Only Redis 7.0 commands are
// used, and no script is loaded (the one script, the KPI counts', is sent
// whole with EVAL), so that a restarted Redis (whose script cache is empty)
// needs nothing reloaded.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// ErrCorrupt is returned for a stored value this version cannot read.
var ErrCorrupt = errors.New("corrupt stored value")

const (
	fieldState   = "s"
	fieldStamp   = "w"
	fieldProfile = "p"
	clocksKey    = "cw:rules:clocks"
)

// CustomerKey is the hash of one customer.
func CustomerKey(id string) string { return "cw:{c:" + id + "}" }

// DueKey is the deadline index of one events partition.
func DueKey(partition int32) string {
	return "cw:rules:due:{p:" + strconv.Itoa(int(partition)) + "}"
}

// Store reads and writes the rules service's Redis state.
type Store struct {
	rdb redis.UniversalClient
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Envelope is what is stored for a customer besides the engine's own state:
// the events partition the customer was last scored from and the offset of
// the last record applied there. A redelivered record at or below the
// watermark is skipped, which makes the whole batch write idempotent.
type Envelope struct {
	Partition int32
	Offset    int64 // -1: nothing applied yet
	State     []byte
}

const envelopeVersion = 1

// MarshalEnvelope encodes e: a version byte, the partition and offset as
// varints, then the engine state.
func MarshalEnvelope(e Envelope) []byte {
	b := AppendEnvelopeHeader(make([]byte, 0, 1+2*binary.MaxVarintLen64+len(e.State)), e.Partition, e.Offset)
	return append(b, e.State...)
}

// AppendEnvelopeHeader appends what MarshalEnvelope puts before the state.
func AppendEnvelopeHeader(b []byte, partition int32, offset int64) []byte {
	b = append(b, envelopeVersion)
	b = binary.AppendVarint(b, int64(partition))
	return binary.AppendVarint(b, offset)
}

// UnmarshalEnvelope decodes MarshalEnvelope's output.
func UnmarshalEnvelope(b []byte) (Envelope, error) {
	if len(b) < 1 || b[0] != envelopeVersion {
		return Envelope{}, fmt.Errorf("%w: envelope version", ErrCorrupt)
	}
	b = b[1:]
	p, n := binary.Varint(b)
	if n <= 0 || p < 0 || p > math.MaxInt32 {
		return Envelope{}, fmt.Errorf("%w: envelope partition", ErrCorrupt)
	}
	b = b[n:]
	off, n := binary.Varint(b)
	if n <= 0 {
		return Envelope{}, fmt.Errorf("%w: envelope offset", ErrCorrupt)
	}
	return Envelope{Partition: int32(p), Offset: off, State: b[n:]}, nil
}

// Profile is what the rules service keeps of a customer record. Tier is
// the SPEC name (HIGH_NET_WORTH …); Manager and Branch serve the access
// check of GetCustomerRisk.
type Profile struct {
	Tier, Manager, Branch string
}

const profileSep = "\x1f"

func (p Profile) encode() string { return p.Tier + profileSep + p.Manager + profileSep + p.Branch }

func decodeProfile(s string) Profile {
	parts := strings.SplitN(s, profileSep, 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return Profile{Tier: parts[0], Manager: parts[1], Branch: parts[2]}
}

// Customer is one customer as loaded: raw envelope bytes (nil if none, or
// if only the profile was asked for), the stamp of the write that stored the
// state ("" if none), and the profile (Known false if no customer record
// arrived yet).
type Customer struct {
	Envelope []byte
	Stamp    string
	Profile  Profile
	Known    bool
	// FromLive: a shadow set's load (ShadowLoader) found no state of the
	// set and Envelope is the live state, which the set starts from.
	FromLive bool
}

// Due is one entry of a partition's deadline index.
type Due struct {
	CustomerID string
	DeadlineMs int64
}

// Loaded is the result of Load.
type Loaded struct {
	Customers map[string]Customer
	Clocks    map[int32]int64 // unix ms; absent = never moved
	Due       map[int32][]Due
	// KPIApplied is the KPI watermark of each partition of
	// Query.KPIPartitions (-1 = none yet).
	KPIApplied map[int32]int64
}

// Query is what Load reads.
type Query struct {
	// Customers are read whole (state, stamp and profile) unless Held
	// reports that the caller holds their state already: then only the
	// stamp and the profile are read, so that the caller can tell whether
	// the state it holds is still the stored one.
	Customers []string
	Held      func(id string) bool
	// DueUntil asks, per partition, for the deadline entries at or before
	// this time (unix ms).
	DueUntil map[int32]int64
	// KPIPartitions asks for the KPI watermark of these partitions.
	KPIPartitions []int32
}

// Load reads in one round trip the customers of q, every partition clock and
// the due deadline entries.
func (s *Store) Load(ctx context.Context, q Query) (Loaded, error) {
	pipe := s.rdb.Pipeline()
	hm := queueCustomers(ctx, pipe, q.Customers, q.Held)
	clocks := pipe.ZRangeWithScores(ctx, clocksKey, 0, -1)
	due := make(map[int32]*redis.ZSliceCmd, len(q.DueUntil))
	for p, until := range q.DueUntil {
		due[p] = pipe.ZRangeByScoreWithScores(ctx, DueKey(p), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(until, 10)})
	}
	applied := queueKPIApplied(ctx, pipe, q.KPIPartitions)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Loaded{}, fmt.Errorf("load batch state: %w", err)
	}
	out := Loaded{Customers: make(map[string]Customer, len(q.Customers)), Clocks: map[int32]int64{}, Due: map[int32][]Due{}}
	for i, id := range q.Customers {
		out.Customers[id] = hm[i].customer()
	}
	cl, err := parseClocks(clocks.Val())
	if err != nil {
		return Loaded{}, err
	}
	out.Clocks = cl
	if out.KPIApplied, err = kpiApplied(applied); err != nil {
		return Loaded{}, err
	}
	for p, cmd := range due {
		for _, z := range cmd.Val() {
			id, _ := z.Member.(string)
			out.Due[p] = append(out.Due[p], Due{CustomerID: id, DeadlineMs: int64(z.Score)})
		}
	}
	return out, nil
}

// customerCmd is one queued customer read.
type customerCmd struct {
	cmd   *redis.SliceCmd
	whole bool // fields s, w, p; else w, p
}

func queueCustomers(ctx context.Context, pipe redis.Pipeliner, ids []string, held func(string) bool) []customerCmd {
	out := make([]customerCmd, len(ids))
	for i, id := range ids {
		if held != nil && held(id) {
			out[i] = customerCmd{cmd: pipe.HMGet(ctx, CustomerKey(id), fieldStamp, fieldProfile)}
		} else {
			out[i] = customerCmd{cmd: pipe.HMGet(ctx, CustomerKey(id), fieldState, fieldStamp, fieldProfile), whole: true}
		}
	}
	return out
}

func (c customerCmd) customer() Customer {
	v := c.cmd.Val()
	if c.whole {
		var env []byte
		if len(v) > 0 {
			if s, ok := v[0].(string); ok {
				env = []byte(s)
			}
			v = v[1:]
		}
		cu := customerFrom(v)
		cu.Envelope = env
		return cu
	}
	return customerFrom(v)
}

// chunk bounds one pipeline of LoadCustomers, so that a day on which many
// customers become due does not build one enormous reply.
const chunk = 5000

// LoadCustomers reads customers (the due ones that had no record in the
// batch, or held states found stale), a pipeline per chunk; held is as in
// Query.
func (s *Store) LoadCustomers(ctx context.Context, ids []string, held func(string) bool) (map[string]Customer, error) {
	out := make(map[string]Customer, len(ids))
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		pipe := s.rdb.Pipeline()
		hm := queueCustomers(ctx, pipe, part, held)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("load due customers: %w", err)
		}
		for i, id := range part {
			out[id] = hm[i].customer()
		}
	}
	return out, nil
}

// Customer reads one customer.
func (s *Store) Customer(ctx context.Context, id string) (Customer, error) {
	pipe := s.rdb.Pipeline()
	hm := queueCustomers(ctx, pipe, []string{id}, nil)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Customer{}, fmt.Errorf("load customer: %w", err)
	}
	return hm[0].customer(), nil
}

// customerFrom reads the stamp and profile fields of an HMGET reply.
func customerFrom(v []any) Customer {
	var c Customer
	if len(v) > 0 {
		c.Stamp, _ = v[0].(string)
	}
	if len(v) > 1 {
		if s, ok := v[1].(string); ok {
			c.Profile, c.Known = decodeProfile(s), true
		}
	}
	return c
}

func parseClocks(zs []redis.Z) (map[int32]int64, error) {
	out := make(map[int32]int64, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		p, err := strconv.Atoi(m)
		if err != nil {
			return nil, fmt.Errorf("%w: clock member %q", ErrCorrupt, m)
		}
		out[int32(p)] = int64(z.Score)
	}
	return out, nil
}

// Clocks returns every partition clock (unix ms).
func (s *Store) Clocks(ctx context.Context) (map[int32]int64, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, clocksKey, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load partition clocks: %w", err)
	}
	return parseClocks(zs)
}

// Write is everything one batch changes.
type Write struct {
	States    map[string][]byte          // customer → new envelope
	Stamp     string                     // identifies this write; stored beside each state (field w)
	Deadlines map[int32]map[string]int64 // partition → customer → deadline ms; -1 removes the entry
	Clocks    map[int32]int64            // partition → clock ms (only moves forward)
	// Profiles are customer records that arrived in event order (profile
	// records on the events topic); each goes with its customer's state.
	Profiles map[string]Profile
	// KPI is each partition's KPI counts and watermark.
	KPI map[int32]KPIWrite
	// Shadow is each running shadow set's part (shadow.go).
	Shadow map[string]ShadowWrite
}

// Apply writes w in one round trip, atomically (MULTI/EXEC) on one node or
// Sentinel. Every part is idempotent (whole blobs, index entries, clocks
// that only move forward), so retrying after an error is safe.
//
// On a Redis Cluster the customers, deadline indexes and clocks of a batch
// live in many slots and no transaction spans them, so Apply writes in three
// ordered pipelines (each split by slot owner): deadline index entries,
// then states, then clocks. Cut off between any two, a redelivered batch
// still ends right: records whose state landed are skipped by the
// watermark and their deadline entries are in already; records whose state
// did not land are applied again and rewrite their entries; a clock that
// did not move is moved by the next record.
func (s *Store) Apply(ctx context.Context, w Write) error {
	if len(w.States) == 0 && len(w.Deadlines) == 0 && len(w.Clocks) == 0 && len(w.KPI) == 0 && len(w.Shadow) == 0 {
		return nil
	}
	var err error
	if redisx.IsCluster(s.rdb) {
		// The KPI counts first, each partition's in one transaction with
		// its watermark (one slot; a MULTI may not span slots, even on one
		// node): cut off after them, the redelivered records are applied
		// again but not counted again.
		for part, kw := range w.KPI {
			one := Write{KPI: map[int32]KPIWrite{part: kw}}
			if _, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { queueKPI(ctx, p, one); return nil }); err != nil {
				break
			}
		}
		for _, queue := range []func(context.Context, redis.Pipeliner, Write){queueDeadlines, queueStates, queueClocks, queueShadows} {
			if err != nil {
				break
			}
			if _, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { queue(ctx, p, w); return nil }); err != nil {
				break
			}
		}
	} else {
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			queueDeadlines(ctx, p, w)
			queueStates(ctx, p, w)
			queueClocks(ctx, p, w)
			queueKPI(ctx, p, w)
			queueShadows(ctx, p, w)
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("write batch state: %w", err)
	}
	return nil
}

func queueStates(ctx context.Context, p redis.Pipeliner, w Write) {
	for id, b := range w.States {
		if prof, ok := w.Profiles[id]; ok {
			p.HSet(ctx, CustomerKey(id), fieldState, b, fieldStamp, w.Stamp, fieldProfile, prof.encode())
		} else {
			p.HSet(ctx, CustomerKey(id), fieldState, b, fieldStamp, w.Stamp)
		}
	}
}

func queueDeadlines(ctx context.Context, p redis.Pipeliner, w Write) {
	queueDeadlineIndex(ctx, p, w.Deadlines, DueKey)
}

// queueDeadlineIndex writes deadline entries into the index key names for
// each partition (the live one, or a shadow set's).
func queueDeadlineIndex(ctx context.Context, p redis.Pipeliner, deadlines map[int32]map[string]int64, key func(int32) string) {
	for part, m := range deadlines {
		var add []redis.Z
		var rem []any
		for id, ms := range m {
			if ms < 0 {
				rem = append(rem, id)
			} else {
				add = append(add, redis.Z{Score: float64(ms), Member: id})
			}
		}
		if len(add) > 0 {
			p.ZAdd(ctx, key(part), add...)
		}
		if len(rem) > 0 {
			p.ZRem(ctx, key(part), rem...)
		}
	}
}

func queueClocks(ctx context.Context, p redis.Pipeliner, w Write) {
	for part, ms := range w.Clocks {
		p.ZAddGT(ctx, clocksKey, redis.Z{Score: float64(ms), Member: strconv.Itoa(int(part))})
	}
}
