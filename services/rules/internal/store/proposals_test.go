package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

func set(kvs ...Setting) func(th *engine.Thresholds) error {
	return func(th *engine.Thresholds) error {
		for _, kv := range kvs {
			if err := th.Set(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		return nil
	}
}

func setProposal(p Proposal, th *engine.Thresholds) error { return set(p.Settings...)(th) }

// TestProposalLifecycle on a real redis-server: a proposal changes nothing
// until a second principal approves it; the proposer cannot decide it; it
// expires after its ttl; approving on a moved version is refused with the
// advice to re-propose; the audit entry names both principals; a rejected
// proposal cannot be approved later.
func TestProposalLifecycle(t *testing.T) {
	r := testkit.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	ttl := 7 * 24 * time.Hour
	kv := Setting{Key: "dormancy.declining.days.MASS", Value: "60"}

	if _, err := s.Propose(ctx, 2, []Setting{kv}, "ops-1", "r", []byte("bt"), now, ttl, set(kv)); !errors.Is(err, ErrStaleVersion) {
		t.Fatalf("proposal on a version not in force: %v", err)
	}
	p, err := s.Propose(ctx, 1, []Setting{kv}, "ops-1", "fewer days for MASS", []byte("bt"), now, ttl, set(kv))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "tp-1" || p.State != ProposalPending || len(p.Changes) != 1 || p.Changes[0].Old != "90" || p.Changes[0].New != "60" ||
		!p.ExpiresAt.Equal(now.Add(ttl)) {
		t.Fatalf("proposal %+v", p)
	}
	if cur, _ := s.Thresholds(ctx); cur.Values.Version != 1 {
		t.Fatalf("a proposal changed the set in force: version %d", cur.Values.Version)
	}
	if _, _, _, err := s.Approve(ctx, p.ID, "ops-1", "", now, setProposal); !errors.Is(err, ErrSelfDecision) {
		t.Fatalf("self approval: %v", err)
	}
	if _, err := s.Reject(ctx, p.ID, "ops-1", "no", now); !errors.Is(err, ErrSelfDecision) {
		t.Fatalf("self rejection: %v", err)
	}
	if _, _, _, err := s.Approve(ctx, "tp-99", "ops-2", "", now, setProposal); !errors.Is(err, ErrNoProposal) {
		t.Fatalf("unknown proposal: %v", err)
	}

	// Expiry: undecided at expires_at, it reads as expired and cannot be approved.
	late := now.Add(ttl)
	if got, _ := s.Proposal(ctx, p.ID, late.Add(-time.Second)); got.State != ProposalPending {
		t.Fatalf("a second before expiry: %s", got.State)
	}
	if got, _ := s.Proposal(ctx, p.ID, late); got.State != ProposalExpired {
		t.Fatalf("at expiry: %s", got.State)
	}
	if _, _, _, err := s.Approve(ctx, p.ID, "ops-2", "", late, setProposal); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approval of an expired proposal: %v", err)
	}

	// Stale: another change goes live first; the approval is refused.
	q, err := s.Propose(ctx, 1, []Setting{kv}, "ops-1", "again", []byte("bt"), now, ttl, set(kv))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, 1, "admin-1", "direct", now, set(Setting{"complaints.count.MASS", "3"})); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = s.Approve(ctx, q.ID, "ops-2", "", now, setProposal)
	if !errors.Is(err, ErrStaleProposal) || !contains(err.Error(), "version 1", "version 2", "propose the change again") {
		t.Fatalf("approval on a moved version: %v", err)
	}

	// Approved by a second principal on the version in force: live, audited.
	r2, err := s.Propose(ctx, 2, []Setting{kv}, "admin-1", "third try", []byte("bt-3"), now, ttl, set(kv))
	if err != nil {
		t.Fatal(err)
	}
	th, ch, done, err := s.Approve(ctx, r2.ID, "ops-2", "checked the back-test", now.Add(time.Hour), setProposal)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := th.Values.Get(kv.Key); th.Values.Version != 3 || v != "60" {
		t.Fatalf("set after approval: version %d, %s = %s", th.Values.Version, kv.Key, v)
	}
	if ch.Kind != KindProposal || ch.Proposer != "admin-1" || ch.Approver != "ops-2" || ch.Actor != "ops-2" || ch.Reason != "third try" ||
		ch.ApprovalReason != "checked the back-test" || ch.ProposalID != r2.ID || string(ch.Backtest) != "bt-3" || ch.PreviousVersion != 2 {
		t.Fatalf("audit entry %+v", ch)
	}
	if done.State != ProposalApproved || done.DecidedBy != "ops-2" || done.AppliedVersion != 3 {
		t.Fatalf("approved proposal %+v", done)
	}
	log, err := s.Changes(ctx, 10)
	if err != nil || len(log) != 2 || log[0].Kind != KindProposal || log[1].Kind != KindDirect || log[0].Proposer != "admin-1" {
		t.Fatalf("audit trail %+v %v", log, err)
	}
	if _, _, _, err := s.Approve(ctx, r2.ID, "admin-2", "", now, setProposal); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v", err)
	}

	// Rejected: closed with the reason, never approvable.
	r3, err := s.Propose(ctx, 3, []Setting{{Key: "complaints.count.MASS", Value: "5"}}, "ops-1", "quieter", nil, now, ttl,
		set(Setting{Key: "complaints.count.MASS", Value: "5"}))
	if err != nil {
		t.Fatal(err)
	}
	rej, err := s.Reject(ctx, r3.ID, "ops-2", "too quiet for complaints", now)
	if err != nil || rej.State != ProposalRejected || rej.DecisionReason != "too quiet for complaints" {
		t.Fatalf("reject: %+v %v", rej, err)
	}
	if _, _, _, err := s.Approve(ctx, r3.ID, "admin-1", "", now, setProposal); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approval after rejection: %v", err)
	}
	all, err := s.Proposals(ctx, now)
	if err != nil || len(all) != 4 || all[0].ID != "tp-4" || all[3].ID != "tp-1" {
		t.Fatalf("list %+v %v", all, err)
	}
	if all[3].State != ProposalPending { // tp-1 is still within its ttl at now
		t.Fatalf("tp-1 at now: %s", all[3].State)
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestProposalsAreBounded: beyond MaxProposals the oldest decided or
// expired proposals go; pending ones stay however old.
func TestProposalsAreBounded(t *testing.T) {
	r := testkit.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb)
	ctx := context.Background()
	old := MaxProposals
	MaxProposals = 4
	t.Cleanup(func() { MaxProposals = old })
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	kv := Setting{Key: "complaints.count.MASS", Value: "3"}
	propose := func(ttl time.Duration) Proposal {
		p, err := s.Propose(ctx, 1, []Setting{kv}, "ops-1", "r", nil, now, ttl, set(kv))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	keep := propose(time.Hour) // tp-1: stays pending
	first := propose(time.Hour)
	if _, err := s.Reject(ctx, first.ID, "ops-2", "no", now); err != nil { // tp-2: decided
		t.Fatal(err)
	}
	propose(time.Minute) // tp-3: expired by the time of the next proposals
	now = now.Add(2 * time.Minute)
	for range 3 { // tp-4 … tp-6
		propose(time.Hour)
	}
	all, err := s.Proposals(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range all {
		ids = append(ids, p.ID)
	}
	if got := strings.Join(ids, " "); got != "tp-6 tp-5 tp-4 "+keep.ID {
		t.Fatalf("kept %s, want tp-6 tp-5 tp-4 tp-1 (the decided tp-2 and the expired tp-3 go first)", got)
	}
}
