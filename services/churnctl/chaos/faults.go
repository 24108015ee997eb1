package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// faultKind is what a fault kills.
type faultKind int

const (
	faultService faultKind = iota
	faultBroker
	faultRedis
	// faultScale removes a rules or alerts instance gracefully (its group
	// rebalances to the other) and adds it back a few seconds later.
	faultScale
)

// fault is one planned kill: before ingest call number batch, either right
// away (between calls) or after delay with the call in flight.
type fault struct {
	kind  faultKind
	batch int
	delay time.Duration // 0: between calls
}

// injector kills and restarts what the plan says, at the ingest progress
// the plan names; a service is picked at random among those running when
// the fault fires.
type injector struct {
	rng      *rand.Rand
	mu       sync.Mutex // guards rng and plan
	plan     []fault
	services []*service
	redis    *process
	kafka    cluster
	logf     func(string, ...any)

	kills, brokerKills, redisKills, scaleEvents atomic.Int64
	wg                                          sync.WaitGroup
	errMu                                       sync.Mutex
	errs                                        []error
}

// planFaults spreads kills service kills, one broker kill (when the cluster
// has brokers that may be killed) and one Redis kill over batches ingest
// calls. About half the service kills land while a call is in flight.
func planFaults(rng *rand.Rand, batches, kills int, broker bool) []fault {
	var plan []fault
	if batches < 2 {
		batches = 2
	}
	for range kills {
		f := fault{kind: faultService, batch: 1 + rng.IntN(batches-1)}
		if rng.IntN(2) == 0 {
			f.delay = time.Duration(5+rng.IntN(150)) * time.Millisecond
		}
		plan = append(plan, f)
	}
	if broker {
		plan = append(plan, fault{kind: faultBroker, batch: batches/5 + rng.IntN(max(1, batches/4)), delay: time.Duration(rng.IntN(100)) * time.Millisecond})
	}
	plan = append(plan, fault{kind: faultRedis, batch: batches/2 + rng.IntN(max(1, batches/4)), delay: time.Duration(rng.IntN(100)) * time.Millisecond})
	for range 2 {
		plan = append(plan, fault{kind: faultScale, batch: 1 + rng.IntN(batches-1)})
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].batch < plan[j].batch })
	return plan
}

// before is called by the feeder before ingest call number batch.
func (in *injector) before(ctx context.Context, batch int) {
	in.mu.Lock()
	var now []fault
	for len(in.plan) > 0 && in.plan[0].batch <= batch {
		now = append(now, in.plan[0])
		in.plan = in.plan[1:]
	}
	in.mu.Unlock()
	for _, f := range now {
		if f.delay == 0 {
			in.fire(ctx, f)
			continue
		}
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(f.delay):
			}
			in.fire(ctx, f)
		}()
	}
}

// rest fires whatever the plan still holds (a plan longer than the ingest).
func (in *injector) rest(ctx context.Context) {
	in.before(ctx, int(^uint(0)>>1))
}

func (in *injector) pause(lo, hi time.Duration) time.Duration {
	in.mu.Lock()
	defer in.mu.Unlock()
	return lo + time.Duration(in.rng.Int64N(int64(hi-lo)))
}

func (in *injector) fail(err error) {
	in.errMu.Lock()
	in.errs = append(in.errs, err)
	in.errMu.Unlock()
	in.logf("fault injector: %v", err)
}

func (in *injector) fire(ctx context.Context, f fault) {
	switch f.kind {
	case faultService:
		var up []*service
		for _, s := range in.services {
			if s.running() {
				up = append(up, s)
			}
		}
		if len(up) == 0 {
			// Everything is down at once: wait for a restart rather than
			// dropping the kill.
			time.Sleep(500 * time.Millisecond)
			in.fire(ctx, f)
			return
		}
		in.mu.Lock()
		s := up[in.rng.IntN(len(up))]
		in.mu.Unlock()
		if err := s.kill(); err != nil {
			in.fail(err)
			return
		}
		n := in.kills.Add(1)
		d := in.pause(200*time.Millisecond, 2500*time.Millisecond)
		in.logf("kill %d: SIGKILL %s; restart in %s", n, s.name, d.Round(time.Millisecond))
		in.restartAfter(ctx, d, s.name, func() error { return s.startReady(ctx) })
	case faultScale:
		// Remove one of two running instances of a kind: a scale-down, not
		// an outage. When no kind has two up, wait for a restart.
		byKind := map[string][]*service{}
		for _, s := range in.services {
			if s.running() && s.kind != "ingester" {
				byKind[s.kind] = append(byKind[s.kind], s)
			}
		}
		var pick []*service
		for _, k := range []string{"rules", "alerts"} {
			if len(byKind[k]) >= 2 {
				pick = append(pick, byKind[k]...)
			}
		}
		if len(pick) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
				in.fire(ctx, f)
			}
			return
		}
		in.mu.Lock()
		s := pick[in.rng.IntN(len(pick))]
		in.mu.Unlock()
		if err := s.remove(); err != nil {
			in.fail(err)
			return
		}
		n := in.scaleEvents.Add(1)
		d := in.pause(3*time.Second, 6*time.Second)
		in.logf("scale %d: %s removed (SIGTERM); added back in %s", n, s.name, d.Round(time.Millisecond))
		in.restartAfter(ctx, d, s.name, func() error { return s.startReady(ctx) })
	case faultBroker:
		in.mu.Lock()
		node := 1 + in.rng.IntN(in.kafka.Nodes())
		in.mu.Unlock()
		if err := in.kafka.Kill(ctx, node); err != nil {
			in.fail(err)
			return
		}
		in.brokerKills.Add(1)
		d := in.pause(3*time.Second, 8*time.Second)
		in.logf("SIGKILL Kafka broker %d; restart in %s", node, d.Round(time.Millisecond))
		in.restartAfter(ctx, d, fmt.Sprintf("broker %d", node), func() error { return in.kafka.Restart(ctx, node) })
	case faultRedis:
		if err := in.redis.kill(); err != nil {
			in.fail(err)
			return
		}
		in.redisKills.Add(1)
		d := in.pause(time.Second, 3*time.Second)
		in.logf("SIGKILL Redis; restart on the same AOF directory in %s", d.Round(time.Millisecond))
		in.restartAfter(ctx, d, "redis", func() error { return in.redis.startReady(ctx) })
	}
}

func (in *injector) restartAfter(ctx context.Context, d time.Duration, what string, restart func() error) {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if err := restart(); err != nil {
			in.fail(fmt.Errorf("restart %s: %w", what, err))
			return
		}
		in.logf("%s back", what)
	}()
}

// wait returns when every fault fired and every restart finished.
func (in *injector) wait() error {
	in.wg.Wait()
	in.errMu.Lock()
	defer in.errMu.Unlock()
	if len(in.errs) > 0 {
		return fmt.Errorf("fault injector: %v", in.errs)
	}
	return nil
}
