package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// Four-eyes proposal errors.
var (
	// ErrNoProposal: no proposal has the id.
	ErrNoProposal = errors.New("no such threshold proposal")
	// ErrNotPending: the proposal was already approved, rejected or expired.
	ErrNotPending = errors.New("threshold proposal is not pending")
	// ErrSelfDecision: the proposer tried to approve or reject its own
	// proposal.
	ErrSelfDecision = errors.New("a threshold proposal is decided by a second principal, not by its proposer")
	// ErrStaleProposal: the set in force moved past the proposal's base
	// version; the change must be proposed again on top of the current set.
	ErrStaleProposal = errors.New("threshold proposal made against an older version")
)

// Proposal states. Expired is never stored: a pending proposal past its
// expiry reads as expired.
const (
	ProposalPending  = "PENDING"
	ProposalApproved = "APPROVED"
	ProposalRejected = "REJECTED"
	ProposalExpired  = "EXPIRED"
)

const (
	proposalsKey   = "cw:{th}:proposals" // hash id → Proposal JSON
	proposalSeqKey = "cw:{th}:proposal-seq"
)

// MaxProposals bounds the proposals kept; the oldest decided or expired
// ones go first (their outcome stays in the audit trail when approved). A
// variable so that a test can lower it.
var MaxProposals = 1000

// Setting is one key and value as proposed.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Proposal is a four-eyes threshold change.
type Proposal struct {
	ID          string          `json:"id"`
	State       string          `json:"state"`
	BaseVersion int64           `json:"base_version"`
	Settings    []Setting       `json:"settings"`
	Changes     []SettingChange `json:"changes"`
	Proposer    string          `json:"proposer"`
	Reason      string          `json:"reason"`
	ProposedAt  time.Time       `json:"proposed_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	// Backtest is the client's back-test (protobuf ThresholdBacktest),
	// opaque to the store.
	Backtest       []byte    `json:"backtest,omitempty"`
	DecidedBy      string    `json:"decided_by,omitempty"`
	DecidedAt      time.Time `json:"decided_at,omitzero"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	AppliedVersion int64     `json:"applied_version,omitempty"`
}

// at returns p with State as of now: a pending proposal past its expiry is
// expired.
func (p Proposal) at(now time.Time) Proposal {
	if p.State == ProposalPending && !now.Before(p.ExpiresAt) {
		p.State = ProposalExpired
	}
	return p
}

// seq is the number in the proposal's id ("tp-12" → 12).
func (p Proposal) seq() int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(p.ID, "tp-"), 10, 64)
	return n
}

func decodeProposal(raw string) (Proposal, error) {
	var p Proposal
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return Proposal{}, fmt.Errorf("%w: threshold proposal: %v", ErrCorrupt, err)
	}
	return p, nil
}

// Propose records a pending proposal of settings against version expected,
// valid for ttl. modify applies the settings to a copy of the set in force
// and validates them (as for Update), so the proposal lists each key's move
// from the base version's value; nothing goes live.
func (s *Store) Propose(ctx context.Context, expected int64, settings []Setting, proposer, reason string, backtest []byte,
	now time.Time, ttl time.Duration, modify func(th *engine.Thresholds) error) (Proposal, error) {
	cur, err := s.Thresholds(ctx)
	if err != nil {
		return Proposal{}, err
	}
	if cur.Values.Version != expected {
		return Proposal{}, fmt.Errorf("%w: current version is %d, expected %d", ErrStaleVersion, cur.Values.Version, expected)
	}
	next := cur.Values
	if err := modify(&next); err != nil {
		return Proposal{}, err
	}
	n, err := s.rdb.Incr(ctx, proposalSeqKey).Result()
	if err != nil {
		return Proposal{}, fmt.Errorf("number the proposal: %w", err)
	}
	p := Proposal{ID: "tp-" + strconv.FormatInt(n, 10), State: ProposalPending, BaseVersion: expected,
		Settings: settings, Changes: Diff(Settings(&cur.Values), Settings(&next)), Proposer: proposer, Reason: reason,
		ProposedAt: now.UTC(), ExpiresAt: now.UTC().Add(ttl), Backtest: backtest}
	raw, err := json.Marshal(p)
	if err != nil {
		return Proposal{}, err
	}
	if err := s.rdb.HSet(ctx, proposalsKey, p.ID, raw).Err(); err != nil {
		return Proposal{}, fmt.Errorf("store the proposal: %w", err)
	}
	if err := s.trimProposals(ctx, now); err != nil {
		return Proposal{}, err
	}
	return p, nil
}

// trimProposals drops the oldest decided or expired proposals beyond
// MaxProposals. Pending ones stay: they expire within their ttl.
func (s *Store) trimProposals(ctx context.Context, now time.Time) error {
	n, err := s.rdb.HLen(ctx, proposalsKey).Result()
	if err != nil || n <= int64(MaxProposals) {
		return err
	}
	all, err := s.Proposals(ctx, now)
	if err != nil {
		return err
	}
	var drop []string
	for i := len(all) - 1; i >= 0 && int(n)-len(drop) > MaxProposals; i-- { // oldest first
		if all[i].State != ProposalPending {
			drop = append(drop, all[i].ID)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	return s.rdb.HDel(ctx, proposalsKey, drop...).Err()
}

// Proposals returns every stored proposal as of now, newest first.
func (s *Store) Proposals(ctx context.Context, now time.Time) ([]Proposal, error) {
	raws, err := s.rdb.HGetAll(ctx, proposalsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("load threshold proposals: %w", err)
	}
	out := make([]Proposal, 0, len(raws))
	for _, r := range raws {
		p, err := decodeProposal(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p.at(now))
	}
	slices.SortFunc(out, func(a, b Proposal) int { return cmp.Compare(b.seq(), a.seq()) })
	return out, nil
}

// Proposal returns one proposal as of now.
func (s *Store) Proposal(ctx context.Context, id string, now time.Time) (Proposal, error) {
	raw, err := s.rdb.HGet(ctx, proposalsKey, id).Result()
	if errors.Is(err, redis.Nil) {
		return Proposal{}, fmt.Errorf("%w: %s", ErrNoProposal, id)
	}
	if err != nil {
		return Proposal{}, fmt.Errorf("load threshold proposal: %w", err)
	}
	p, err := decodeProposal(raw)
	return p.at(now), err
}

// decidable loads a proposal inside tx and checks that by may decide it now.
func decidable(ctx context.Context, tx *redis.Tx, id, by string, now time.Time) (Proposal, error) {
	raw, err := tx.HGet(ctx, proposalsKey, id).Result()
	if errors.Is(err, redis.Nil) {
		return Proposal{}, fmt.Errorf("%w: %s", ErrNoProposal, id)
	}
	if err != nil {
		return Proposal{}, fmt.Errorf("load threshold proposal: %w", err)
	}
	p, err := decodeProposal(raw)
	if err != nil {
		return Proposal{}, err
	}
	p = p.at(now)
	switch {
	case p.State == ProposalExpired:
		return p, fmt.Errorf("%w: %s expired at %s undecided; propose the change again", ErrNotPending, id, p.ExpiresAt.Format(time.RFC3339))
	case p.State != ProposalPending:
		return p, fmt.Errorf("%w: %s was already %s by %s", ErrNotPending, id, strings.ToLower(p.State), p.DecidedBy)
	case p.Proposer == by:
		return p, fmt.Errorf("%w: %s proposed %s", ErrSelfDecision, by, id)
	}
	return p, nil
}

// Approve puts a pending proposal live: by (not its proposer) approves it,
// its settings are applied by modify on top of the set in force, which must
// still be the proposal's base version, and the new version, an audit entry
// naming proposer and approver, and the decided proposal are written in one
// MULTI. The backtest is copied into the audit entry.
func (s *Store) Approve(ctx context.Context, id, by, note string, now time.Time,
	modify func(p Proposal, th *engine.Thresholds) error) (ThresholdSet, ThresholdChange, Proposal, error) {
	var set ThresholdSet
	var change ThresholdChange
	var prop Proposal
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		p, err := decidable(ctx, tx, id, by, now)
		if err != nil {
			prop = p
			return err
		}
		meta := ThresholdChange{Actor: by, Reason: p.Reason, Kind: KindProposal, ProposalID: p.ID, Proposer: p.Proposer,
			Approver: by, ApprovalReason: note, Backtest: p.Backtest}
		set, change, err = s.applyTx(ctx, tx, p.BaseVersion, meta, now, func(th *engine.Thresholds) error { return modify(p, th) },
			func(pl redis.Pipeliner, change ThresholdChange) error {
				p.State, p.DecidedBy, p.DecidedAt, p.DecisionReason, p.AppliedVersion = ProposalApproved, by, now.UTC(), note, change.Version
				raw, err := json.Marshal(p)
				if err != nil {
					return err
				}
				pl.HSet(ctx, proposalsKey, p.ID, raw)
				prop = p
				return nil
			})
		if errors.Is(err, ErrStaleVersion) {
			cur, _ := currentTx(ctx, tx)
			return fmt.Errorf("%w: %s was made against version %d, the set in force is version %d; propose the change again on top of it",
				ErrStaleProposal, id, p.BaseVersion, cur.Values.Version)
		}
		return err
	}, thresholdsKey, proposalsKey)
	if errors.Is(err, redis.TxFailedErr) {
		return ThresholdSet{}, ThresholdChange{}, Proposal{}, ErrConflict
	}
	if err != nil {
		return ThresholdSet{}, ThresholdChange{}, prop, err
	}
	return set, change, prop, nil
}

// Reject closes a pending proposal: by (not its proposer) rejects it with
// reason.
func (s *Store) Reject(ctx context.Context, id, by, reason string, now time.Time) (Proposal, error) {
	var prop Proposal
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		p, err := decidable(ctx, tx, id, by, now)
		prop = p
		if err != nil {
			return err
		}
		p.State, p.DecidedBy, p.DecidedAt, p.DecisionReason = ProposalRejected, by, now.UTC(), reason
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(pl redis.Pipeliner) error {
			pl.HSet(ctx, proposalsKey, p.ID, raw)
			return nil
		})
		prop = p
		return err
	}, proposalsKey)
	if errors.Is(err, redis.TxFailedErr) {
		return Proposal{}, ErrConflict
	}
	return prop, err
}
