// Package bench measures the whole churnwatch pipeline on this machine and
// prints one JSON object (`make bench`, `churnwatch bench`): ingest
// throughput, pipeline throughput against a bare kafka-go consumer on the
// same broker in the same run, end-to-end alert latency at a steady rate,
// Redis bytes per customer, and the pure engine's throughput.
//
// The broker is either kfake in its own process (so that its single request
// goroutine does not share a scheduler with the services) or a three-node
// Apache Kafka cluster on this machine; Redis is a real redis-server.
// kfake's absolute throughput is not Kafka's: read ratios. On real Kafka a
// second reference is taken in the same run: Kafka's own consumer perf tool
// reading the same events topic.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// Options configure a run.
type Options struct {
	Brokers   []string // the broker in its own process, or the real cluster
	RedisAddr string   // a real redis-server
	// Kafka names the broker for the report: "embedded" or "real 3.9.1, 3 brokers".
	Kafka string
	// KafkaTools, when set (real Kafka), is the Java classpath of Kafka's
	// jars (.tools/kafka/V/*): org.apache.kafka.tools.ConsumerPerformance
	// reads the events topic → kafka_perf_consume_eps.
	KafkaTools string
	Customers  int
	Months     int
	Seed       int64
	// LatencyRate and LatencyFor set the steady load of the latency phase.
	LatencyRate int
	LatencyFor  time.Duration
	Log         io.Writer
	// PipelineProfile, when set, receives a CPU profile of the pipeline
	// phase alone (rules and alerts on the backlog); AllocsBefore and
	// AllocsAfter receive the allocation profile at its start and end (read
	// the phase's allocations with `go tool pprof -base before after`).
	PipelineProfile           io.Writer
	AllocsBefore, AllocsAfter io.Writer
}

// Result is the report.
type Result struct {
	Events                int     `json:"events"`
	Customers             int     `json:"customers"`
	IngestEPS             float64 `json:"ingest_eps"`
	PipelineEPS           float64 `json:"pipeline_eps"`
	RawConsumeEPS         float64 `json:"raw_consume_eps"`
	KafkaPerfConsumeEPS   float64 `json:"kafka_perf_consume_eps,omitempty"`
	PipelineRatio         float64 `json:"pipeline_ratio"`
	E2EP50MS              float64 `json:"e2e_p50_ms"`
	E2EP99MS              float64 `json:"e2e_p99_ms"`
	E2ESamples            int     `json:"e2e_samples"`
	E2ERate               int     `json:"e2e_rate_eps"`
	E2ESentEPS            float64 `json:"e2e_sent_eps"` // the rate achieved
	RedisBytesPerCustomer float64 `json:"redis_bytes_per_customer"`
	RedisDedupBytesPerEvt float64 `json:"redis_dedup_bytes_per_event"`
	EngineEPS             float64 `json:"engine_eps"`
	Alerts                int     `json:"alerts"`
	Cores                 int     `json:"cores"`
	GoVersion             string  `json:"go_version"`
	Broker                string  `json:"broker"`
	Kafka                 string  `json:"kafka"`
}

// Run performs the benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "bench: "+format+"\n", a...)
		}
	}
	res := &Result{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Broker: "kfake (separate process)", Kafka: o.Kafka}
	if o.Kafka == "" {
		res.Kafka = "embedded"
	}
	if res.Kafka != "embedded" {
		res.Broker = "Apache Kafka (KRaft, loopback, replication 3, min.insync.replicas 2)"
	}
	bank, err := simulate.Generate(simulate.Config{Customers: o.Customers, Months: o.Months, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	res.Events, res.Customers = len(bank.Events), len(bank.Customers)
	logf("simulated %d customers, %d events", res.Customers, res.Events)

	res.EngineEPS = engineEPS(bank)
	logf("engine_eps %.0f", res.EngineEPS)

	st, err := devstack.Start(ctx, devstack.Options{AnyPort: true, HoldConsumers: true, Env: map[string]string{
		"CHURNWATCH_KAFKA_BROKERS": strings.Join(o.Brokers, ","), "CHURNWATCH_REDIS_ADDR": o.RedisAddr, "CHURNWATCH_LOG_LEVEL": "error",
		"CHURNWATCH_RATE_LIMIT": "10000000",
	}})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rdb, err := redisx.New(config.Common{RedisAddr: o.RedisAddr})
	if err != nil {
		return nil, err
	}
	defer rdb.Close()

	ingestTok, _ := st.Token("bench-core", auth.RoleIngest, "", time.Hour)
	conn, err := client.Dial(st.Ingester.GRPCAddr(), ingestTok, client.TLS{})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ing := cwv1.NewIngestServiceClient(conn)
	baseMem := usedMemory(ctx, rdb)

	// Phase 1: ingest everything, consumers held: the ingester alone.
	if err := importCustomers(ctx, ing, bank); err != nil {
		return nil, err
	}
	events := make([]*cwv1.IncomingEvent, len(bank.Events))
	for i, e := range bank.Events {
		events[i] = simfeed.IncomingEvent(e)
	}
	start := time.Now()
	if err := publishAll(ctx, ing, events, 5000, 4); err != nil {
		return nil, err
	}
	ingestDur := time.Since(start)
	res.IngestEPS = float64(len(events)) / ingestDur.Seconds()
	logf("ingest_eps %.0f (%s)", res.IngestEPS, ingestDur)
	// The services run in this process: let go of the simulated events
	// (hundreds of MB that every garbage collection would otherwise mark
	// again) so that what is measured next is the services, as deployed.
	lastEvent, _ := time.Parse(time.RFC3339, bank.Events[len(bank.Events)-1].OccurredAt)
	events, bank.Events = nil, nil
	runtime.GC()

	// Phase 2: release rules and alerts on the backlog; the pipeline has
	// taken every event when both groups (and the customer groups) are
	// caught up: all state written, every signal turned into alerts.
	if o.AllocsBefore != nil {
		_ = pprof.Lookup("allocs").WriteTo(o.AllocsBefore, 0)
	}
	if o.PipelineProfile != nil {
		if err := pprof.StartCPUProfile(o.PipelineProfile); err != nil {
			return nil, err
		}
	}
	start = time.Now()
	st.Release()
	err = demo.WaitCaughtUp(ctx, st, 20*time.Minute)
	pipeDur := time.Since(start)
	if o.PipelineProfile != nil {
		pprof.StopCPUProfile()
	}
	if o.AllocsAfter != nil {
		_ = pprof.Lookup("allocs").WriteTo(o.AllocsAfter, 0)
	}
	if err != nil {
		return nil, err
	}
	res.PipelineEPS = float64(res.Events) / pipeDur.Seconds()
	logf("pipeline_eps %.0f (%s)", res.PipelineEPS, pipeDur)

	// Phase 3: a bare kafka-go consumer group over the same backlog on the
	// same broker: fetch, commit, nothing else. It finishes in a second or
	// two, so it is run three times and the median kept.
	// Both references read what the pipeline read: the events topic up to
	// its end offsets (the count the pipeline's catch-up check waits for).
	inTopic, err := topicRecords(ctx, st.Brokers, "churnwatch.events.v1")
	if err != nil {
		return nil, err
	}
	if inTopic != res.Events {
		logf("the events topic holds %d records for %d simulated events", inTopic, res.Events)
	}
	var raws []float64
	for range 3 {
		eps, err := rawConsume(ctx, st.Kafka, inTopic)
		if err != nil {
			return nil, err
		}
		raws = append(raws, eps)
	}
	res.RawConsumeEPS = pct(raws, 0.5)
	res.PipelineRatio = res.PipelineEPS / res.RawConsumeEPS
	logf("raw_consume_eps %.0f", res.RawConsumeEPS)
	if o.KafkaTools != "" {
		var perf []float64
		for range 3 {
			eps, err := kafkaPerfConsume(ctx, o.KafkaTools, st.Brokers, "churnwatch.events.v1", inTopic)
			if err != nil {
				return nil, err
			}
			perf = append(perf, eps)
		}
		res.KafkaPerfConsumeEPS = pct(perf, 0.5)
		logf("kafka_perf_consume_eps %.0f (%v)", res.KafkaPerfConsumeEPS, perf)
	}

	res.RedisBytesPerCustomer, res.RedisDedupBytesPerEvt = redisFootprint(ctx, rdb, bank.Customers, res.Events, baseMem)
	logf("redis bytes/customer %.0f", res.RedisBytesPerCustomer)

	// Phase 3: steady load, event accepted → alert on a subscriber's stream.
	// Start from a quiet system: the alert publisher may still be copying
	// phase 1's alert changes to Kafka.
	if err := waitQuiet(ctx, st.Kafka, "churnwatch.alerts.v1"); err != nil {
		return nil, err
	}
	lat, err := latency(ctx, st, ing, o.LatencyRate, o.LatencyFor, lastEvent.Add(time.Hour), &res.E2ESentEPS)
	if err != nil {
		return nil, err
	}
	res.E2ESamples, res.E2ERate = len(lat), o.LatencyRate
	res.E2EP50MS, res.E2EP99MS = pct(lat, 0.50), pct(lat, 0.99)
	logf("e2e p50 %.1f ms p99 %.1f ms over %d alerts", res.E2EP50MS, res.E2EP99MS, len(lat))
	res.Alerts = countAlerts(ctx, rdb)
	return res, nil
}

func importCustomers(ctx context.Context, ing cwv1.IngestServiceClient, bank *simulate.Bank) error {
	var cs []*cwv1.IncomingCustomer
	for _, c := range bank.Customers {
		cs = append(cs, simfeed.IncomingCustomer(c))
	}
	for i := 0; i < len(cs); i += 5000 {
		if _, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: cs[i:min(i+5000, len(cs))]}); err != nil {
			return fmt.Errorf("import customers: %w", err)
		}
	}
	return nil
}

// publishAll sends events in batches over several concurrent calls.
func publishAll(ctx context.Context, ing cwv1.IngestServiceClient, events []*cwv1.IncomingEvent, batch, workers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(int64(batch))) - batch
				if i >= len(events) {
					return
				}
				var resp *cwv1.PublishEventsResponse
				err := cli.Retrying(ctx, time.Minute, func(ctx context.Context) (err error) {
					resp, err = ing.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: events[i:min(i+batch, len(events))]})
					return err
				})
				if err != nil {
					errc <- fmt.Errorf("publish: %w", err)
					return
				}
				if resp.Rejected > 0 {
					errc <- fmt.Errorf("publish: %d rejected", resp.Rejected)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func rawConsume(ctx context.Context, brokers kafkax.Cluster, n int) (float64, error) {
	cfg := kafkax.ReaderConfig(brokers, "bench-raw-"+strconv.FormatInt(time.Now().UnixNano(), 36), "churnwatch.events.v1")
	r := kafka.NewReader(cfg)
	defer r.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var start time.Time
	got := 0
	for got < n {
		// A stall fails the run with the count instead of waiting out the
		// 10 minutes.
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		batch, err := kafkax.FetchBatch(fctx, r, 2000, 5*time.Millisecond)
		fcancel()
		if err != nil {
			return 0, fmt.Errorf("raw consume after %d of %d: %w", got, n, err)
		}
		if start.IsZero() {
			start = time.Now()
		}
		got += len(batch)
		if err := r.CommitMessages(ctx, batch...); err != nil {
			return 0, err
		}
	}
	return float64(got) / time.Since(start).Seconds(), nil
}

// kafkaPerfConsume runs Kafka's consumer perf tool (kafka-consumer-perf-test)
// with a fresh group over the first n records of topic and returns its
// fetch.nMsg.sec: records per second from the first fetch on, group join
// excluded — the same clock as rawConsume's.
func kafkaPerfConsume(ctx context.Context, classpath string, brokers []string, topic string, n int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	group := "bench-perf-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd := exec.CommandContext(ctx, "java", "-Xmx512m", "-cp", classpath, "org.apache.kafka.tools.ConsumerPerformance",
		"--bootstrap-server", strings.Join(brokers, ","), "--topic", topic, "--group", group,
		"--messages", strconv.Itoa(n), "--timeout", "60000")
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("ConsumerPerformance: %w\n%s", err, out)
	}
	// A header line of comma-separated names, then one line of values.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names := strings.Split(lines[i], ",")
		vals := strings.Split(lines[i+1], ",")
		if len(names) != len(vals) {
			continue
		}
		var got, eps float64 = -1, -1
		for j, name := range names {
			v, err := strconv.ParseFloat(strings.TrimSpace(vals[j]), 64)
			switch strings.TrimSpace(name) {
			case "data.consumed.in.nMsg":
				if err == nil {
					got = v
				}
			case "fetch.nMsg.sec":
				if err == nil {
					eps = v
				}
			}
		}
		if eps >= 0 {
			if int(got) < n {
				return 0, fmt.Errorf("ConsumerPerformance read %.0f of %d records", got, n)
			}
			return eps, nil
		}
	}
	return 0, fmt.Errorf("ConsumerPerformance printed no fetch.nMsg.sec:\n%s", out)
}

// topicRecords sums the end offsets of topic's partitions: its record count,
// nothing having been deleted during the run.
func topicRecords(ctx context.Context, brokers []string, topic string) (int, error) {
	parts, err := kafkax.GroupLag(ctx, kafkax.Plain(brokers), "bench-count", topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		n += p.End
	}
	return int(n), nil
}

func engineEPS(bank *simulate.Bank) float64 {
	// Events reach the engine the way the services hand them over: the
	// ingester's validation, then the rules service's conversion. Only the
	// engine is timed.
	evs := make([]engine.Event, 0, len(bank.Events))
	now := time.Now()
	for _, e := range bank.Events {
		ae, verr := validate.Event(simfeed.IncomingEvent(e), now)
		if verr != nil {
			continue
		}
		if ev, err := convert.Event(ae); err == nil {
			evs = append(evs, ev)
		}
	}
	tiers := map[string]engine.Tier{}
	for _, c := range bank.Customers {
		tiers[c.CustomerID], _ = engine.ParseTier(c.Tier)
	}
	eng := engine.New(engine.Config{})
	th := engine.DefaultThresholds()
	states := map[string]*engine.State{}
	start := time.Now()
	for _, ev := range evs {
		s := states[ev.CustomerID]
		if s == nil {
			s = &engine.State{}
			states[ev.CustomerID] = s
		}
		eng.Apply(s, ev, engine.Profile{Tier: tiers[ev.CustomerID], Known: true}, &th)
	}
	return float64(len(evs)) / time.Since(start).Seconds()
}

// usedMemory sums used_memory over every master (INFO is per node).
func usedMemory(ctx context.Context, rdb redis.UniversalClient) int64 {
	var total atomic.Int64
	_ = redisx.ForEachMaster(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
		info, err := node.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total.Add(n)
			}
		}
		return nil
	})
	return total.Load()
}

// scanKeys runs SCAN MATCH on every master (a Cluster's keyspace is split
// over them) and hands fn each batch of keys; fn may be called
// concurrently.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, match string, fn func([]string)) {
	_ = redisx.ForEachMaster(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, match, 5000).Result()
			if err != nil {
				return err
			}
			fn(keys)
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
}

// redisFootprint sums MEMORY USAGE over every key carrying a sampled
// customer's hash tag ({c:ID}: rules state, profiles, alerts) and reports the
// ingester's eventId dedupe marks per event apart, since those live for
// the retention period on the wall clock whatever the customer count.
func redisFootprint(ctx context.Context, rdb redis.UniversalClient, customers []simulate.Customer, events int, baseMem int64) (perCustomer, dedupPerEvent float64) {
	sample := map[string]bool{}
	for i, c := range customers {
		if i >= 200 {
			break
		}
		sample["{c:"+c.CustomerID+"}"] = true
	}
	var total atomic.Int64
	scanKeys(ctx, rdb, "*{c:*", func(keys []string) {
		for _, k := range keys {
			i := strings.Index(k, "{c:")
			j := strings.IndexByte(k[i:], '}')
			if j < 0 || !sample[k[i:i+j+1]] {
				continue
			}
			n, _ := rdb.MemoryUsage(ctx, k).Result()
			total.Add(n)
		}
	})
	perCustomer = float64(total.Load()) / float64(len(sample))
	used := usedMemory(ctx, rdb) - baseMem
	if rest := float64(used) - perCustomer*float64(len(customers)); rest > 0 && events > 0 {
		dedupPerEvent = rest / float64(events)
	}
	return perCustomer, dedupPerEvent
}

func countAlerts(ctx context.Context, rdb redis.UniversalClient) int {
	var n atomic.Int64
	scanKeys(ctx, rdb, "*alert*", func(keys []string) { n.Add(int64(len(keys))) })
	return int(n.Load())
}

// latency sends a steady stream of events at rate/s for d; one event in 20
// is an external outflow over the MASS threshold for a fresh customer, so it
// creates an alert. Latency = the alert's arrival on an ops subscriber's
// stream − the time PublishEvents returned for the batch carrying it.
func latency(ctx context.Context, st *devstack.Stack, ing cwv1.IngestServiceClient, rate int, d time.Duration, at time.Time, sentEPS *float64) ([]float64, error) {
	opsTok, _ := st.Token("bench-ops", auth.RoleOps, "", time.Hour)
	ac, err := client.Dial(st.Alerts.GRPCAddr(), opsTok, client.TLS{})
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cwv1.NewAlertServiceClient(ac).Subscribe(sctx, &cwv1.SubscribeRequest{})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	accepted := map[string]time.Time{}
	arrived := map[string]time.Time{}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			if u := r.Update; u.Change == cwv1.AlertChange_ALERT_CHANGE_CREATED && strings.HasPrefix(u.Alert.CustomerId, "L") {
				mu.Lock()
				arrived[u.Alert.CustomerId] = time.Now()
				mu.Unlock()
			}
		}
	}()
	const tick = 10 * time.Millisecond
	per := max(1, rate*int(tick)/int(time.Second))
	// Event time continues where the simulated history ended, so that the
	// partition clocks do not leap and fire a year of deadlines at once.
	now := at.UTC().Format(time.RFC3339)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	began := time.Now()
	end := began.Add(d)
	seq, sent := 0, 0
	var wg sync.WaitGroup
	var pubErr error
	inflight := make(chan struct{}, 32)
	for time.Now().Before(end) {
		<-ticker.C
		batch := make([]*cwv1.IncomingEvent, 0, per)
		var alerting []string
		for i := 0; i < per; i++ {
			seq++
			cust := fmt.Sprintf("L%07d", seq/20)
			ev := &cwv1.IncomingEvent{EventId: fmt.Sprintf("lat-%d-%d", time.Now().UnixNano(), seq), CustomerId: cust, AccountId: cust + "-01",
				OccurredAt: now, Type: "CARD_PAYMENT", Amount: "12.50", Currency: "EUR", BalanceAfter: "5000.00"}
			if seq%20 == 0 {
				ev.Type, ev.Amount, ev.CounterpartyBank, ev.BalanceAfter = "TRANSFER_OUT", "15000.00", "OTHERBANK", "100.00"
				alerting = append(alerting, cust)
			}
			batch = append(batch, ev)
		}
		// Each tick's call runs on its own goroutine so that the rate holds
		// whatever one call takes: on real Kafka a PublishEvents waits for
		// all in-sync replicas, longer than the 10 ms tick, and sequential
		// calls sent about half the rate asked for.
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		sent += len(batch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inflight }()
			if _, err := ing.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: batch}); err != nil {
				mu.Lock()
				pubErr = errors.Join(pubErr, err)
				mu.Unlock()
				return
			}
			t := time.Now()
			mu.Lock()
			for _, c := range alerting {
				accepted[c] = t
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	*sentEPS = float64(sent) / time.Since(began).Seconds()
	if pubErr != nil {
		return nil, pubErr
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(arrived)
		mu.Unlock()
		if n >= len(accepted) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var out []float64
	for c, t := range accepted {
		if a, ok := arrived[c]; ok {
			out = append(out, float64(a.Sub(t).Microseconds())/1000)
		}
	}
	if len(out) < len(accepted)*9/10 {
		return out, fmt.Errorf("only %d of %d latency alerts arrived", len(out), len(accepted))
	}
	return out, nil
}

// waitQuiet returns when topic's end offsets have not moved for a second.
func waitQuiet(ctx context.Context, brokers kafkax.Cluster, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var last int64 = -1
	still := 0
	for still < 4 {
		parts, err := kafkax.GroupLag(ctx, brokers, "bench-quiet", topic)
		if err != nil {
			return err
		}
		var end int64
		for _, p := range parts {
			end += p.End
		}
		if end == last {
			still++
		} else {
			still, last = 0, end
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never went quiet: %w", topic, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
