// Command rebalance-probe measures how long a consumer group takes to be
// stable and consuming again after members are SIGKILLed (no LeaveGroup), on
// the embedded broker (kfake) and on a three-node Apache Kafka cluster
// (scripts/kafka.sh). Members are child processes using
// kafkax.ReaderConfig, as the services do. docs/reliability.md has the
// findings.
//
//	go run ./services/churnctl/cmd/rebalance-probe --kafka embedded|real [--members 2] [--kills 6] [--every 2s]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

const (
	topic      = "probe.events"
	partitions = 3
	group      = "probe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "member" {
		err = member(ctx, strings.Split(os.Args[2], ","))
	} else {
		err = probe(ctx, os.Args[1:])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "rebalance-probe:", err)
		os.Exit(1)
	}
}

// member consumes the topic in the group and prints "p PARTITION SENTNANOS"
// for every record, committing as the services do.
func member(ctx context.Context, brokers []string) error {
	cfg := kafkax.ReaderConfig(kafkax.Plain(brokers), group, topic)
	// The client id names the process, so that the prober can tell the
	// group's live members from the killed ones.
	cfg.Dialer = &kafka.Dialer{ClientID: "probe-" + strconv.Itoa(os.Getpid()), Timeout: 10 * time.Second, DualStack: true}
	r := kafka.NewReader(cfg)
	defer r.Close()
	out := bufio.NewWriter(os.Stdout)
	for {
		batch, err := kafkax.FetchBatch(ctx, r, 500, 5*time.Millisecond)
		for _, m := range batch {
			fmt.Fprintf(out, "p %d %d\n", m.Partition, int64(binary.BigEndian.Uint64(m.Value)))
		}
		_ = out.Flush()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A member lives on through errors, as the services' BatchConsumer
		// does: only SIGKILL ends it.
		if err != nil {
			fmt.Fprintln(os.Stderr, "member: fetch:", err)
			continue
		}
		if err := r.CommitMessages(ctx, batch...); err != nil {
			fmt.Fprintln(os.Stderr, "member: commit:", err)
		}
	}
}

type tracker struct {
	mu   sync.Mutex
	last [partitions]int64 // send time of the newest record consumed per partition
}

func (t *tracker) fresh(within time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now().UnixNano()
	for _, s := range t.last {
		if now-s > int64(within) {
			return false
		}
	}
	return true
}

func probe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalance-probe", flag.ExitOnError)
	mode := fs.String("kafka", "embedded", "embedded (kfake) or real (scripts/kafka.sh, three brokers)")
	members := fs.Int("members", 2, "group members (child processes)")
	kills := fs.Int("kills", 6, "SIGKILLs in the burst; each killed member is restarted at once")
	every := fs.Duration("every", 2*time.Second, "time between kills")
	bursts := fs.Int("bursts", 3, "bursts, one after the other once the group has settled (or after --limit)")
	limit := fs.Duration("limit", 2*time.Minute, "how long to wait for the group to settle after a burst")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var brokers []string
	switch *mode {
	case "embedded":
		k, err := embedded.StartKafka(0, partitions, topic)
		if err != nil {
			return err
		}
		defer k.Close()
		brokers = k.Brokers
	case "real":
		c, err := testkit.StartRealKafka(3)
		if err != nil {
			return err
		}
		defer func() { _ = c.Stop() }()
		brokers = c.Brokers
		if _, err := kafkax.EnsureTopics(ctx, kafkax.Plain(brokers), kafkax.TopicPolicy{}, kafkax.TopicSpec{Name: topic, Partitions: partitions}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--kafka %q: want embedded or real", *mode)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tr := &tracker{}
	start := func() (*exec.Cmd, error) {
		cmd := exec.Command(self, "member", strings.Join(brokers, ","))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 3 {
					continue
				}
				p, _ := strconv.Atoi(f[1])
				s, _ := strconv.ParseInt(f[2], 10, 64)
				tr.mu.Lock()
				if p >= 0 && p < partitions && s > tr.last[p] {
					tr.last[p] = s
				}
				tr.mu.Unlock()
			}
		}()
		return cmd, nil
	}
	procs := make([]*exec.Cmd, *members)
	for i := range procs {
		if procs[i], err = start(); err != nil {
			return err
		}
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()

	// A record per partition every 50 ms carrying its send time.
	w := kafkax.NewWriter(kafkax.Plain(brokers), topic)
	w.Balancer = &kafka.RoundRobin{}
	defer w.Close()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			msgs := make([]kafka.Message, partitions)
			for i := range msgs {
				msgs[i].Value = binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
			}
			_ = w.WriteMessages(pctx, msgs...)
		}
	}()

	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	// describe returns the group's state, its member count and whether
	// its members are exactly the live processes.
	describe := func() (string, int, bool) {
		resp, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(resp.Groups) == 0 {
			return "error", -1, false
		}
		g := resp.Groups[0]
		live := map[string]bool{}
		for _, p := range procs {
			live["probe-"+strconv.Itoa(p.Process.Pid)] = true
		}
		for _, m := range g.Members {
			if !live[m.ClientID] {
				return g.GroupState, len(g.Members), false
			}
			delete(live, m.ClientID)
		}
		return g.GroupState, len(g.Members), len(live) == 0
	}
	// settled reports when the group is Stable with exactly the live
	// members and every partition is being consumed within 1 s of sending.
	settled := func(since time.Time, limit time.Duration) (time.Duration, int, bool) {
		maxMembers := 0
		for time.Since(since) < limit {
			state, n, exact := describe()
			maxMembers = max(maxMembers, n)
			if state == "Stable" && exact && tr.fresh(time.Second) {
				return time.Since(since), maxMembers, true
			}
			select {
			case <-ctx.Done():
				return 0, maxMembers, false
			case <-time.After(100 * time.Millisecond):
			}
		}
		return limit, maxMembers, false
	}
	t0 := time.Now()
	d, _, ok := settled(t0, 2*time.Minute)
	fmt.Printf("%s: initial join of %d members: %s (ok=%v)\n", *mode, *members, d.Round(100*time.Millisecond), ok)
	if !ok {
		state, n, exact := describe()
		return fmt.Errorf("the group never settled: %s, %d members, exactly the live ones %v, fresh %v", state, n, exact, tr.fresh(time.Second))
	}

	// One kill, restarted at once: the shape of a single crash.
	kill := func(i int) error {
		_ = procs[i].Process.Signal(syscall.SIGKILL)
		_ = procs[i].Wait()
		procs[i], err = start()
		return err
	}
	t1 := time.Now()
	if err := kill(0); err != nil {
		return err
	}
	d, mx, ok := settled(t1, 3*time.Minute)
	fmt.Printf("%s: single kill -9 + restart: stable and consuming after %s, max members seen %d (ok=%v)\n", *mode, d.Round(100*time.Millisecond), mx, ok)

	// Bursts: kill a random member every `every`, restart it at once.
	rng := rand.New(rand.NewSource(1))
	for b := 1; b <= *bursts; b++ {
		maxDuring := 0
		for k := 0; k < *kills; k++ {
			if err := kill(rng.Intn(*members)); err != nil {
				return err
			}
			end := time.Now().Add(*every)
			for time.Now().Before(end) {
				_, n, _ := describe()
				maxDuring = max(maxDuring, n)
				time.Sleep(100 * time.Millisecond)
			}
		}
		t2 := time.Now().Add(-*every) // from the last kill
		d, mx, ok = settled(t2, *limit)
		state, n, exact := describe()
		fmt.Printf("%s: burst %d of %d kills every %s: settled=%v after %s from the last kill; max members %d; at the end %s with %d members (exactly the live ones: %v, consuming: %v)\n",
			*mode, b, *kills, *every, ok, d.Round(100*time.Millisecond), max(mx, maxDuring), state, n, exact, tr.fresh(time.Second))
	}
	return nil
}
