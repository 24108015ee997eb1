// Package outbox owns the readers of the outbox: the all-audience stream
// (store.OutboxStream) that every alert change is appended to in the same
// transaction as the change. Each reader is a Sink run by a Runner: the
// Kafka publisher (churnwatch.alerts.v1) is one, each receiver of
// CHURNWATCH_ALERTS_RECEIVERS (webhook, email, chat) is another. A crash
// anywhere between a change and its delivery loses nothing: the change is
// in the outbox, and the reader's position moves only after the delivery.
//
// One mechanism serves them all:
//   - each reader has its own position and its own lease, so a reader that
//     is down delays nobody else, neither the other readers nor Subscribe
//     streams;
//   - only the holder of a reader's lease delivers, in outbox order (so
//     each alert's versions in order), and moves the position by a CAS on
//     its lease token: one delivery sequence per (reader, change) however
//     many alerts instances run;
//   - a Sink never writes past the lease's validity, so a peer that takes
//     over after a crash cannot overlap it. A holder killed after a
//     delivery but before the position update makes the next holder
//     deliver that change again: the Kafka publisher finds it on the topic
//     (Reconciler) and skips it; receivers send it with the same id
//     (webhook-id, Message-ID), which they dedupe by.
package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
)

// Sink is one reader of the outbox.
type Sink interface {
	// Deliver handles entries (in outbox order, all after the position) and
	// returns how many of them, from the first, are done; the runner then
	// moves the position past them and calls Deliver again with the rest.
	// A Sink must not deliver once lease is no longer valid, nor past its
	// validity. An error other than store.ErrLeaseLost or the end of ctx
	// is retried with backoff, from the position.
	Deliver(ctx context.Context, lease Validity, entries []store.Entry) (done int, err error)
}

// Reconciler is a Sink that can find out what it delivered beyond the
// position: the runner calls Reconcile on taking the lease and after a
// failed Deliver, whose outcome is unknown.
type Reconciler interface {
	Reconcile(ctx context.Context, position string) error
}

// Validity is the lease as a Sink sees it.
type Validity interface {
	// Valid reports whether the holder may still deliver, and until when.
	Valid() (time.Time, bool)
}

// Runner runs one Sink on the outbox while this instance holds its lease.
type Runner struct {
	// Name says which reader in logs: "publisher", "receiver crm".
	Name  string
	Store *store.Store
	Lease *store.Lease
	Sink  Sink
	// Batch is the most entries read per round trip.
	Batch int
	// StartAtEnd places a reader new to this Redis at the outbox's end (it
	// gets the changes from then on); else it starts at the beginning.
	StartAtEnd bool
	Log        *slog.Logger
	// OnTakeover is called each time this instance takes the lease.
	OnTakeover func(context.Context)
	// AfterDeliver (tests) runs after a delivery, before the position
	// update; ErrKilled stops the runner as kill -9 would.
	AfterDeliver func() error

	leader       atomic.Bool
	pendingSince atomic.Int64 // ms of the oldest outbox entry not done; 0 = caught up
}

// Run delivers while this instance holds the lease, until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	hold(ctx, r.Lease, r.Log, r.Name, r.work)
}

// Leader reports whether this instance is the reader's lease holder.
func (r *Runner) Leader() bool { return r.leader.Load() }

// OldestPending is the append time of the oldest entry not yet done, zero
// when caught up (or not the holder).
func (r *Runner) OldestPending() time.Time {
	if ms := r.pendingSince.Load(); ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// EnsurePosition places a reader new to this Redis at the outbox's end.
func (r *Runner) EnsurePosition(ctx context.Context) error {
	end, err := r.Store.OutboxEnd(ctx)
	if err != nil {
		return err
	}
	return r.Lease.StartAt(ctx, end)
}

func (r *Runner) work(ctx context.Context) error {
	if r.OnTakeover != nil {
		r.OnTakeover(ctx)
	}
	r.leader.Store(true)
	defer r.leader.Store(false)
	defer r.pendingSince.Store(0)
	wait := 50 * time.Millisecond
	fail := func(what string, err error) {
		r.Log.WarnContext(ctx, r.Name+": "+what, "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
	rec, _ := r.Sink.(Reconciler)
	reconcile := rec != nil
	for ctx.Err() == nil {
		if _, ok := r.Lease.Valid(); !ok {
			return store.ErrLeaseLost
		}
		pos, ok, err := r.Lease.Position(ctx)
		if err == nil && !ok {
			if r.StartAtEnd {
				if err = r.EnsurePosition(ctx); err == nil {
					continue
				}
			}
			pos = "0-0"
		}
		if err != nil {
			fail("read position", err)
			continue
		}
		if reconcile {
			if err := rec.Reconcile(ctx, pos); err != nil {
				fail("reconcile", err)
				continue
			}
			reconcile = false
		}
		entries, err := r.Store.ReadOutbox(ctx, pos, r.Batch, min(2*time.Second, r.Lease.Renew()))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fail("read stream", err)
			continue
		}
		if len(entries) == 0 {
			r.pendingSince.Store(0)
			wait = 50 * time.Millisecond
			continue
		}
		for len(entries) > 0 {
			if t, ok := store.IDTime(entries[0].ID); ok {
				r.pendingSince.Store(t.UnixMilli())
			}
			done, err := r.Sink.Deliver(ctx, r.Lease, entries)
			if done > 0 {
				if r.AfterDeliver != nil {
					if err := r.AfterDeliver(); err != nil {
						return err
					}
				}
				if err := r.commit(ctx, entries[done-1].ID); err != nil {
					return err
				}
				entries = entries[done:]
				wait = 50 * time.Millisecond
			}
			if errors.Is(err, store.ErrLeaseLost) || (err != nil && ctx.Err() != nil) {
				return err
			}
			if err != nil {
				reconcile = rec != nil // the delivery may have landed or not
				fail("deliver", err)
				break
			}
			if done == 0 {
				break
			}
		}
	}
	return nil
}

// commit moves the position, retrying Redis errors while the lease holds:
// a delivered change whose position update is lost would go out again.
func (r *Runner) commit(ctx context.Context, id string) error {
	wait := 20 * time.Millisecond
	for {
		until, ok := r.Lease.Valid()
		if !ok {
			return store.ErrLeaseLost
		}
		cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), until)
		err := r.Lease.Commit(cctx, id)
		cancel()
		if err == nil || errors.Is(err, store.ErrLeaseLost) {
			return err
		}
		r.Log.WarnContext(ctx, r.Name+": update position", "err", err)
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}
