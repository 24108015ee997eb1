package outbox

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
)

// ErrKilled is returned by a test hook to stop a reader as kill -9 would:
// no position update, no lease release, no renewal.
var ErrKilled = errors.New("outbox reader killed (test)")

// hold runs work whenever this instance holds l, until ctx ends: it
// stands by while another instance holds it, renews it while work runs,
// cancels work when the lease is lost, and releases it on shutdown. Work
// returning ErrKilled ends the loop without releasing, as kill -9 does.
func hold(ctx context.Context, l *store.Lease, log *slog.Logger, what string, work func(context.Context) error) {
	for {
		ok, err := l.Acquire(ctx)
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, what+" lease: acquire failed", "err", err)
		}
		if ok {
			log.InfoContext(ctx, what+" lease taken: this instance now delivers", "lease_ttl", l.TTL().String())
			hctx, cancel := context.WithCancel(ctx)
			renewed := make(chan struct{})
			go func() {
				defer close(renewed)
				renewLoop(hctx, l, log, what, cancel)
			}()
			err := work(hctx)
			cancel()
			<-renewed
			if errors.Is(err, ErrKilled) {
				<-ctx.Done()
				return
			}
			if err == nil && ctx.Err() == nil {
				err = store.ErrLeaseLost
			}
			if ctx.Err() != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				if err := l.Release(rctx); err != nil {
					log.WarnContext(rctx, what+" lease: release failed; a peer takes over when it expires", "err", err)
				}
				cancel()
				return
			}
			log.WarnContext(ctx, what+" lease lost: standing by", "err", err)
		}
		if !sleep(ctx, l.Renew()) {
			return
		}
	}
}

// renewLoop extends l every renew period and calls lost when it is gone.
func renewLoop(ctx context.Context, l *store.Lease, log *slog.Logger, what string, lost context.CancelFunc) {
	t := time.NewTicker(l.Renew())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.Renew())
		ok, err := l.Extend(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, what+" lease: renew failed", "err", err)
			if _, valid := l.Valid(); valid {
				continue
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return
			}
			l.Drop()
			lost()
			return
		}
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
