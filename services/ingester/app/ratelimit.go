package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// errRateLimited means a principal sent more events than its rate allows.
var errRateLimited = errors.New("rate limit exceeded")

// rateLimited carries how long the caller should wait.
type rateLimited struct{ retryAfter time.Duration }

func (e *rateLimited) Error() string {
	return fmt.Sprintf("%v: retry in %s", errRateLimited, e.retryAfter.Round(time.Millisecond))
}
func (e *rateLimited) Unwrap() error { return errRateLimited }

// limiter holds one token bucket per principal, counted in events. One
// noisy core-banking feed cannot starve the others.
type limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	by    map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{limit: rate.Limit(perSecond), burst: burst, by: map[string]*rate.Limiter{}}
}

func (l *limiter) bucket(principal string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.by[principal]
	if !ok {
		// Principals are the bank's feeds and operators, a short list; the
		// bound only guards against a flood of distinct subjects.
		if len(l.by) >= 10000 {
			clear(l.by)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.by[principal] = b
	}
	return b
}

// allow takes n events now or reports how long to wait.
func (l *limiter) allow(principal string, n int) error {
	return l.wait(context.Background(), principal, n, 0)
}

// wait takes n events, waiting at most maxWait for them: streams are
// slowed down (back-pressure) rather than failed, unary calls are told to
// come back.
func (l *limiter) wait(ctx context.Context, principal string, n int, maxWait time.Duration) error {
	if l == nil || n == 0 {
		return nil
	}
	now := time.Now()
	r := l.bucket(principal).ReserveN(now, n)
	if !r.OK() {
		return &rateLimited{retryAfter: time.Second}
	}
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if d > maxWait {
		r.CancelAt(now)
		return &rateLimited{retryAfter: d}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}
