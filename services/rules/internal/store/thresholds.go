package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// Threshold store errors.
var (
	// ErrStaleVersion: the update was based on a version that is no longer
	// current.
	ErrStaleVersion = errors.New("threshold set changed since the expected version")
	// ErrConflict: another update committed between the read and the write.
	ErrConflict = errors.New("concurrent threshold update")
)

const (
	thresholdsKey = "cw:{th}:current"
	changesKey    = "cw:{th}:log"
	// MaxChanges bounds the audit list kept in Redis.
	MaxChanges = 10000
)

// ThresholdSet is a stored threshold set.
type ThresholdSet struct {
	Values    engine.Thresholds // Values.Version is the set's version
	UpdatedAt time.Time
	UpdatedBy string
	Reason    string
}

// SettingChange is one key's old and new value.
type SettingChange struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// ThresholdChange is one audited update.
type ThresholdChange struct {
	Version         int64           `json:"version"`
	PreviousVersion int64           `json:"previous_version"`
	Actor           string          `json:"actor"`
	ChangedAt       time.Time       `json:"changed_at"`
	Reason          string          `json:"reason"`
	Changes         []SettingChange `json:"changes"`
	// Kind is KindDirect or KindProposal; entries written before four-eyes
	// have none and were direct.
	Kind string `json:"kind,omitempty"`
	// For KindProposal: the proposal, its proposer, the approver (= Actor)
	// and the approver's note; Reason is the proposer's. Backtest is the
	// proposal's back-test as its client sent it (opaque here).
	ProposalID     string `json:"proposal_id,omitempty"`
	Proposer       string `json:"proposer,omitempty"`
	Approver       string `json:"approver,omitempty"`
	ApprovalReason string `json:"approval_reason,omitempty"`
	Backtest       []byte `json:"backtest,omitempty"`
}

// Kinds of threshold change.
const (
	KindDirect   = "direct"
	KindProposal = "proposal"
)

type storedSet struct {
	Version   int64             `json:"version"`
	Settings  map[string]string `json:"settings"`
	UpdatedAt time.Time         `json:"updated_at"`
	UpdatedBy string            `json:"updated_by"`
	Reason    string            `json:"reason"`
}

// Settings returns every key of th with its value, sorted by key.
func Settings(th *engine.Thresholds) []SettingChange {
	keys := th.Keys()
	out := make([]SettingChange, 0, len(keys))
	for _, k := range keys {
		v, err := th.Get(k)
		if err != nil {
			continue // Keys() lists only per-tier keys, which Get always resolves
		}
		out = append(out, SettingChange{Key: k, New: v})
	}
	return out
}

// Diff lists the keys whose value differs between two Settings lists, by
// key: per-currency amounts make the key lists of two sets differ (a key
// only in one side has "" on the other).
func Diff(before, after []SettingChange) []SettingChange {
	old := make(map[string]string, len(before))
	for _, kv := range before {
		old[kv.Key] = kv.New
	}
	var out []SettingChange
	for _, kv := range after {
		if o, ok := old[kv.Key]; !ok || o != kv.New {
			out = append(out, SettingChange{Key: kv.Key, Old: o, New: kv.New})
		}
		delete(old, kv.Key)
	}
	for _, kv := range before {
		if _, gone := old[kv.Key]; gone {
			out = append(out, SettingChange{Key: kv.Key, Old: kv.New})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Thresholds reads the current set; the SPEC defaults as version 1 when
// none was ever stored. Every key is stored, so a later change of the
// engine's defaults never silently alters a stored version.
func (s *Store) Thresholds(ctx context.Context) (ThresholdSet, error) {
	raw, err := s.rdb.Get(ctx, thresholdsKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return ThresholdSet{Values: engine.DefaultThresholds(), Reason: "SPEC defaults"}, nil
	}
	if err != nil {
		return ThresholdSet{}, fmt.Errorf("load thresholds: %w", err)
	}
	return decodeSet(raw)
}

func decodeSet(raw []byte) (ThresholdSet, error) {
	var ss storedSet
	if err := json.Unmarshal(raw, &ss); err != nil {
		return ThresholdSet{}, fmt.Errorf("%w: thresholds: %v", ErrCorrupt, err)
	}
	th := engine.DefaultThresholds()
	keys := make([]string, 0, len(ss.Settings))
	for k := range ss.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := th.Set(k, ss.Settings[k]); err != nil {
			return ThresholdSet{}, fmt.Errorf("%w: thresholds: %v", ErrCorrupt, err)
		}
	}
	th.Version = ss.Version
	return ThresholdSet{Values: th, UpdatedAt: ss.UpdatedAt, UpdatedBy: ss.UpdatedBy, Reason: ss.Reason}, nil
}

func encodeSet(set ThresholdSet) ([]byte, error) {
	ss := storedSet{Version: set.Values.Version, Settings: map[string]string{}, UpdatedAt: set.UpdatedAt, UpdatedBy: set.UpdatedBy, Reason: set.Reason}
	for _, kv := range Settings(&set.Values) {
		ss.Settings[kv.Key] = kv.New
	}
	return json.Marshal(ss)
}

// Update applies modify to the current set when its version is expected,
// stores the result as version expected+1 with an audit entry, atomically
// (WATCH/MULTI). modify validates and returns an error to refuse.
func (s *Store) Update(ctx context.Context, expected int64, actor, reason string, now time.Time,
	modify func(th *engine.Thresholds) error) (ThresholdSet, ThresholdChange, error) {
	var set ThresholdSet
	var change ThresholdChange
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		var err error
		set, change, err = s.applyTx(ctx, tx, expected,
			ThresholdChange{Actor: actor, Reason: reason, Kind: KindDirect}, now, modify, nil)
		return err
	}, thresholdsKey)
	if errors.Is(err, redis.TxFailedErr) {
		return ThresholdSet{}, ThresholdChange{}, ErrConflict
	}
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	return set, change, nil
}

// currentTx reads the set in force inside a transaction.
func currentTx(ctx context.Context, tx *redis.Tx) (ThresholdSet, error) {
	raw, err := tx.Get(ctx, thresholdsKey).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return ThresholdSet{Values: engine.DefaultThresholds()}, nil
	case err != nil:
		return ThresholdSet{}, fmt.Errorf("load thresholds: %w", err)
	}
	return decodeSet(raw)
}

// applyTx is Update's body inside a WATCH of thresholdsKey (and whatever
// else the caller watches): it checks expected, applies modify, and queues
// the new set, the audit entry meta completed, and extra's writes in one
// MULTI.
func (s *Store) applyTx(ctx context.Context, tx *redis.Tx, expected int64, meta ThresholdChange, now time.Time,
	modify func(th *engine.Thresholds) error, extra func(p redis.Pipeliner, change ThresholdChange) error) (ThresholdSet, ThresholdChange, error) {
	cur, err := currentTx(ctx, tx)
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	if cur.Values.Version != expected {
		return ThresholdSet{}, ThresholdChange{}, fmt.Errorf("%w: current version is %d, expected %d", ErrStaleVersion, cur.Values.Version, expected)
	}
	next := cur.Values
	if err := modify(&next); err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	next.Version = cur.Values.Version + 1
	change := meta
	change.Version, change.PreviousVersion, change.ChangedAt = next.Version, cur.Values.Version, now.UTC()
	change.Changes = Diff(Settings(&cur.Values), Settings(&next))
	set := ThresholdSet{Values: next, UpdatedAt: now.UTC(), UpdatedBy: meta.Actor, Reason: meta.Reason}
	setJSON, err := encodeSet(set)
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	changeJSON, err := json.Marshal(change)
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, thresholdsKey, setJSON, 0)
		p.LPush(ctx, changesKey, changeJSON)
		p.LTrim(ctx, changesKey, 0, MaxChanges-1)
		if extra != nil {
			return extra(p, change)
		}
		return nil
	})
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, err
	}
	return set, change, nil
}

// Changes returns up to limit audit entries, newest first.
func (s *Store) Changes(ctx context.Context, limit int) ([]ThresholdChange, error) {
	raws, err := s.rdb.LRange(ctx, changesKey, 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("load threshold changes: %w", err)
	}
	out := make([]ThresholdChange, 0, len(raws))
	for _, r := range raws {
		var c ThresholdChange
		if err := json.Unmarshal([]byte(r), &c); err != nil {
			return nil, fmt.Errorf("%w: threshold change: %v", ErrCorrupt, err)
		}
		out = append(out, c)
	}
	return out, nil
}
