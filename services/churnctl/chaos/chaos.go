// Package chaos is the fault-injection harness behind `churnwatch chaos`
// and `make chaos` (SPEC §8 "No loss"): two instances of every service as
// separate processes on a three-broker Apache Kafka cluster (or the
// embedded broker in its own process) and a redis-server with an
// append-only file; a simulated bank streamed through in ordered ingest
// calls while random instances, one broker and Redis are SIGKILLed and
// restarted; an ops Subscribe stream open throughout; and at the end the
// live alerts against the back-test, the alerts topic, the DLQ and every
// accepted event's customer state, reported as one JSON object.
package chaos

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// Options configure a run. Zero values take the defaults of `make chaos`.
type Options struct {
	// Kafka is "real" (scripts/kafka.sh, three brokers) or "embedded"
	// (kfake in its own process: BrokerCommand).
	Kafka     string
	Kills     int // service-instance kills, at least
	Customers int
	Months    int
	Seed      int64
	// Dir keeps logs, Redis's AOF and the Kafka data (a new temp dir when
	// empty; kept after the run).
	Dir        string
	Partitions int
	// Batch is the events per PublishEvents call.
	Batch int
	// Root is the repository (for scripts/kafka.sh and building the
	// services); found from the working directory when empty.
	Root string
	// BinDir holds ingester, rules, alerts (and churnctl); Root/bin when
	// empty. Missing binaries are built there.
	BinDir string
	// KafkaScript starts and kills the real cluster; Root/scripts/kafka.sh
	// when empty.
	KafkaScript string
	// BrokerCommand runs the embedded broker: `churnwatch broker`; the
	// harness appends --port and --partitions.
	BrokerCommand []string
	// CatchupTimeout bounds the wait for the pipeline after the last
	// ingest call (default 5 minutes); a run that does not catch up still
	// reports, with caught_up false.
	CatchupTimeout time.Duration
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Report is the run's result (docs/reliability.md explains every field).
type Report struct {
	Kills                      int     `json:"kills"`
	BrokerKills                int     `json:"broker_kills"`
	RedisKills                 int     `json:"redis_kills"`
	ScaleEvents                int     `json:"scale_events"` // instances removed gracefully and added back mid-stream
	EventsAccepted             int     `json:"events_accepted"`
	EventsScored               int     `json:"events_scored"`
	DLQRecords                 int     `json:"dlq_records"`
	AlertsLive                 int     `json:"alerts_live"`
	AlertsBacktest             int     `json:"alerts_backtest"`
	Mismatches                 int     `json:"mismatches"`
	DuplicateAlertPublications int     `json:"duplicate_alert_publications"`
	MissingAlertVersions       int     `json:"missing_alert_versions"`
	SubscriberGaps             int     `json:"subscriber_gaps"`
	CatchupS                   float64 `json:"catchup_s"`
	CaughtUp                   bool    `json:"caught_up"`

	Kafka                 string   `json:"kafka"`
	RedisAppendfsync      string   `json:"redis_appendfsync"`
	Customers             int      `json:"customers"`
	Events                int      `json:"events"`
	EventsLate            int      `json:"events_late"`
	EventsRejected        int      `json:"events_rejected"`
	EventsNotOnTopic      int      `json:"events_not_on_topic"`
	EventsBacktestScored  int      `json:"events_backtest_scored"`
	IngestCalls           int      `json:"ingest_calls"`
	IngestRetries         int      `json:"ingest_retries"`
	SubscriberReconnects  int      `json:"subscriber_reconnects"`
	SubscriberRedelivered int      `json:"subscriber_redelivered"`
	SubscriberUpdates     int      `json:"subscriber_updates"`
	UnexpectedExits       int      `json:"unexpected_exits"`
	IngestS               float64  `json:"ingest_s"`
	ElapsedS              float64  `json:"elapsed_s"`
	Dir                   string   `json:"dir"`
	FirstMismatches       []string `json:"first_mismatches,omitempty"`
}

// Failures lists the contract the run broke; empty when it held.
func (r *Report) Failures() []string {
	var f []string
	add := func(ok bool, format string, a ...any) {
		if !ok {
			f = append(f, fmt.Sprintf(format, a...))
		}
	}
	add(r.CaughtUp, "the pipeline did not catch up within the timeout (catchup_s is the time waited)")
	add(r.Mismatches == 0, "%d live alerts differ from the back-test", r.Mismatches)
	add(r.DuplicateAlertPublications == 0, "%d alert versions published more than once", r.DuplicateAlertPublications)
	add(r.MissingAlertVersions == 0, "%d alert versions missing from the alerts topic", r.MissingAlertVersions)
	add(r.SubscriberGaps == 0, "%d alert versions skipped on the Subscribe stream", r.SubscriberGaps)
	add(r.EventsScored == r.EventsAccepted, "events_scored %d != events_accepted %d", r.EventsScored, r.EventsAccepted)
	return f
}

func (o *Options) defaults() error {
	if o.Kafka == "" {
		o.Kafka = "real"
	}
	if o.Kafka != "real" && o.Kafka != "embedded" {
		return fmt.Errorf("--kafka %q: want real or embedded", o.Kafka)
	}
	if o.Kills == 0 {
		o.Kills = 12
	}
	if o.Customers == 0 {
		o.Customers = 1100
	}
	if o.Months == 0 {
		o.Months = 12
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Partitions == 0 {
		o.Partitions = 6
	}
	if o.CatchupTimeout == 0 {
		o.CatchupTimeout = 5 * time.Minute
	}
	if o.Batch == 0 {
		o.Batch = 2000
	}
	if o.Root == "" {
		root, err := FindRoot()
		if err != nil {
			return err
		}
		o.Root = root
	}
	if o.KafkaScript == "" {
		o.KafkaScript = filepath.Join(o.Root, "scripts", "kafka.sh")
	}
	if o.BinDir == "" {
		o.BinDir = filepath.Join(o.Root, "bin")
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "churnwatch-chaos-")
		if err != nil {
			return err
		}
		o.Dir = d
	}
	return os.MkdirAll(o.Dir, 0o755)
}

// FindRoot is the repository root (the directory holding go.work).
func FindRoot() (string, error) { return testkit.RepoRoot() }

// Build builds the named commands (ingester, rules, alerts, churnctl,
// churnwatch) from root into dir; with missingOnly, only those not there.
func Build(ctx context.Context, root, dir string, missingOnly bool, names ...string) error {
	pkgs := map[string]string{"ingester": "./services/ingester/cmd/ingester", "rules": "./services/rules/cmd/rules",
		"alerts": "./services/alerts/cmd/alerts", "churnctl": "./services/churnctl/cmd/churnctl", "churnwatch": "./services/churnctl/cmd/churnwatch"}
	for _, n := range names {
		out := filepath.Join(dir, n)
		if _, err := os.Stat(out); err == nil && missingOnly {
			continue
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkgs[n])
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", n, err, b)
		}
	}
	return nil
}

type run struct {
	o       Options
	logf    func(string, ...any)
	signer  crypto.Signer
	kafka   cluster
	redis   *process
	rdb     *redis.Client
	ing     []*service
	rules   []*service
	alerts  []*service
	conns   []*grpc.ClientConn
	topics  config.Topics
	opsTok  string
	started time.Time
}

// Run performs a chaos run. The report is returned whenever the run got
// as far as its checks; err is for a run that could not be carried out.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &run{o: o, started: time.Now(), topics: config.LoadCommon(config.FromMap(nil), "", "", "").Topics}
	var logMu sync.Mutex
	r.logf = func(format string, a ...any) {
		if o.Log == nil {
			return
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(o.Log, "chaos %6.1fs: "+format+"\n", append([]any{time.Since(r.started).Seconds()}, a...)...)
	}
	defer r.close()
	return r.do(ctx)
}

func (r *run) close() {
	for _, c := range r.conns {
		c.Close()
	}
	for _, group := range [][]*service{r.ing, r.rules, r.alerts} {
		for _, s := range group {
			s.stop()
		}
	}
	if r.rdb != nil {
		r.rdb.Close()
	}
	if r.redis != nil {
		r.redis.stop()
	}
	if r.kafka != nil {
		r.kafka.Close()
	}
}

func (r *run) do(ctx context.Context) (*Report, error) {
	o := r.o
	rep := &Report{Kafka: o.Kafka, RedisAppendfsync: appendfsync, Dir: o.Dir}
	if err := Build(ctx, o.Root, o.BinDir, true, "ingester", "rules", "alerts"); err != nil {
		return nil, err
	}
	bank, err := simulate.Generate(simulate.Config{Customers: o.Customers, Months: o.Months, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	rep.Customers, rep.Events = len(bank.Customers), len(bank.Events)
	r.logf("simulated %d customers, %d events over %d months (seed %d); files in %s", rep.Customers, rep.Events, o.Months, o.Seed, o.Dir)

	if err := r.startInfra(ctx); err != nil {
		return nil, err
	}
	if err := r.startServices(ctx); err != nil {
		return nil, err
	}
	ingTok, err := auth.Mint(r.signer, auth.Principal{Subject: "chaos-core-banking", Role: auth.RoleIngest}, 4*time.Hour)
	if err != nil {
		return nil, err
	}
	var ingesters []cwv1.IngestServiceClient
	for _, s := range r.ing {
		c, err := r.dial(s.grpcAddr, ingTok)
		if err != nil {
			return nil, err
		}
		ingesters = append(ingesters, cwv1.NewIngestServiceClient(c))
	}
	var alertClients []cwv1.AlertServiceClient
	for _, s := range r.alerts {
		c, err := r.dial(s.grpcAddr, r.opsTok)
		if err != nil {
			return nil, err
		}
		alertClients = append(alertClients, cwv1.NewAlertServiceClient(c))
	}

	// The stream opens before the first alert can exist.
	sub := newSubscriber(alertClients, r.logf)
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	go sub.run(subCtx)

	// A watch over the instances: one that dies without being killed is a
	// finding (counted) and is started again so the run can finish.
	var exits atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.watchExits(watchCtx, &exits)

	if err := r.importCustomers(ctx, ingesters, bank); err != nil {
		return nil, err
	}
	if err := r.waitCaughtUp(ctx, 2*time.Minute); err != nil {
		return nil, err
	}

	events := make([]*cwv1.IncomingEvent, len(bank.Events))
	for i, e := range bank.Events {
		events[i] = simfeed.IncomingEvent(e)
	}
	batches := (len(events) + o.Batch - 1) / o.Batch
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0xc4a05))
	inj := &injector{rng: rng, plan: planFaults(rng, batches, o.Kills, r.kafka.Nodes() > 0), redis: r.redis, kafka: r.kafka, logf: r.logf}
	inj.services = append(append(append(inj.services, r.ing...), r.rules...), r.alerts...)
	f := &feeder{ingesters: ingesters, results: map[string]outcome{}, reasons: map[string]string{}, logf: r.logf}
	ingestStart := time.Now()
	r.logf("ingesting %d events in %d ordered calls of %d, %d faults planned", len(events), batches, o.Batch, len(inj.plan))
	for b := 0; b < batches; b++ {
		inj.before(ctx, b)
		if err := f.publish(ctx, events[b*o.Batch:min((b+1)*o.Batch, len(events))], nil); err != nil {
			return nil, fmt.Errorf("batch %d of %d: %w", b+1, batches, err)
		}
		if (b+1)%max(1, batches/10) == 0 {
			r.logf("ingested %d of %d batches", b+1, batches)
		}
	}
	inj.rest(ctx)
	if err := inj.wait(); err != nil {
		return nil, err
	}
	// The last business day closes, as `churnctl close-day` would: every
	// partition clock reaches the end of the history (demo, bench and the
	// end-to-end test do the same; the simulated history needs no
	// closes in between, every partition carries events every day).
	lastDay := bank.Events[len(bank.Events)-1].OccurredAt[:10]
	if err := closeDay(ctx, ingesters, lastDay); err != nil {
		return nil, err
	}
	lastIngest := time.Now()
	rep.IngestS = lastIngest.Sub(ingestStart).Seconds()
	rep.Kills, rep.BrokerKills, rep.RedisKills = int(inj.kills.Load()), int(inj.brokerKills.Load()), int(inj.redisKills.Load())
	rep.ScaleEvents = int(inj.scaleEvents.Load())
	rep.IngestCalls, rep.IngestRetries = f.calls, f.retries
	rep.EventsLate, rep.EventsRejected = f.count(late), f.count(rejected)
	var acceptedIDs []string
	for id, v := range f.results {
		if v == accepted {
			acceptedIDs = append(acceptedIDs, id)
		}
	}
	rep.EventsAccepted = len(acceptedIDs)
	r.logf("ingest done in %.1fs: %d accepted, %d late, %d rejected, %d calls (%d retries); %d kills, %d broker, %d Redis",
		rep.IngestS, rep.EventsAccepted, rep.EventsLate, rep.EventsRejected, rep.IngestCalls, rep.IngestRetries, rep.Kills, rep.BrokerKills, rep.RedisKills)
	for id, why := range f.reasons {
		r.logf("event %s: %s (first of %d such results)", id, why, len(f.reasons))
		break
	}

	if err := r.waitCaughtUp(ctx, o.CatchupTimeout); err != nil {
		// Checked anyway: what the stuck pipeline did and did not do is
		// the finding.
		rep.CatchupS = time.Since(lastIngest).Seconds()
		r.logf("NOT caught up after %.1fs: %v", rep.CatchupS, err)
	} else {
		rep.CaughtUp = true
		rep.CatchupS = time.Since(lastIngest).Seconds()
		r.logf("caught up %.1fs after the last ingest call", rep.CatchupS)
	}

	live, err := listAlerts(ctx, alertClients)
	if err != nil {
		return nil, err
	}
	in, _ := simfeed.FromBank(bank)
	want, err := backtest.Run(in, backtest.Options{})
	if err != nil {
		return nil, fmt.Errorf("back-test: %w", err)
	}
	rep.AlertsLive, rep.AlertsBacktest = len(live), len(want.Alerts)
	rep.EventsBacktestScored = want.Counts.Accepted - want.Counts.NotScored
	diffs := CompareAlerts(live, want.Alerts)
	rep.Mismatches = len(diffs)
	rep.FirstMismatches = diffs[:min(10, len(diffs))]

	settle := 30 * time.Second
	if !rep.CaughtUp {
		settle = 5 * time.Second
	}
	rep.SubscriberGaps = sub.settle(live, settle)
	stopSub()
	sub.mu.Lock()
	rep.SubscriberReconnects, rep.SubscriberRedelivered, rep.SubscriberUpdates = sub.reconnects, sub.redelivered, sub.updates
	sub.mu.Unlock()

	brokers := r.kafka.Brokers()
	if err := waitQuiet(ctx, brokers, r.topics.Alerts, time.Minute); err != nil {
		r.logf("%v", err)
	}
	alog, err := readAlertLog(ctx, brokers, r.topics.Alerts)
	if err != nil {
		return nil, err
	}
	rep.DuplicateAlertPublications, rep.MissingAlertVersions = alog.duplicates(), alog.missing(live)
	dlq, err := readDLQ(ctx, brokers, r.topics.DLQ, r.topics.Events)
	if err != nil {
		return nil, err
	}
	rep.DLQRecords = dlq.records
	elog, err := readEventLog(ctx, brokers, r.topics.Events)
	if err != nil {
		return nil, err
	}
	var custIDs []string
	for _, c := range bank.Customers {
		custIDs = append(custIDs, c.CustomerID)
	}
	marks, err := readWatermarks(ctx, r.rdb, custIDs)
	if err != nil {
		return nil, err
	}
	rep.EventsScored, rep.EventsNotOnTopic = scored(acceptedIDs, elog, marks, dlq)
	rep.UnexpectedExits = int(exits.Load())
	rep.ElapsedS = time.Since(r.started).Seconds()
	return rep, nil
}

func (r *run) dial(addr, token string) (*grpc.ClientConn, error) {
	c, err := client.Dial(addr, token, client.TLS{})
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, c)
	return c, nil
}

func (r *run) startInfra(ctx context.Context) error {
	o := r.o
	k, err := auth.GenerateKey()
	if err != nil {
		return err
	}
	r.signer = k
	// Kept with the run so that `CHURNWATCH_DEV_KEY=D/token-key.pem
	// churnctl token mint` can inspect a run while it goes.
	pemb, err := auth.PrivateKeyPEM(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "token-key.pem"), pemb, 0o600); err != nil {
		return err
	}
	if r.opsTok, err = auth.Mint(k, auth.Principal{Subject: "chaos-ops", Role: auth.RoleOps}, 4*time.Hour); err != nil {
		return err
	}
	switch o.Kafka {
	case "real":
		kc, err := startReal(ctx, o.KafkaScript, o.Dir, 3)
		if err != nil {
			return err
		}
		r.kafka = kc
		if err := createTopics(ctx, filepath.Join(o.BinDir, "churnctl"), kc.Brokers(), o.Partitions, r.topics, r.logf); err != nil {
			return err
		}
	default:
		eb, err := startEmbedded(ctx, o.BrokerCommand, o.Partitions, o.Dir)
		if err != nil {
			return err
		}
		r.kafka = eb
	}
	r.logf("kafka (%s) at %s", o.Kafka, strings.Join(r.kafka.Brokers(), ","))
	p, addr, err := newRedis(o.Dir)
	if err != nil {
		return err
	}
	r.redis = p
	if err := p.start(); err != nil {
		return err
	}
	if err := p.waitReady(ctx, 20*time.Second); err != nil {
		return err
	}
	r.rdb = redis.NewClient(&redis.Options{Addr: addr})
	r.logf("redis-server at %s (appendonly yes, appendfsync %s, dir %s)", addr, appendfsync, filepath.Join(o.Dir, "redis"))
	return nil
}

func (r *run) startServices(ctx context.Context) error {
	pub, err := auth.PublicKeyPEM(r.signer)
	if err != nil {
		return err
	}
	pubPath := filepath.Join(r.o.Dir, "token-key.pub.pem")
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return err
	}
	env := map[string]string{
		"CHURNWATCH_KAFKA_BROKERS":    strings.Join(r.kafka.Brokers(), ","),
		"CHURNWATCH_REDIS_ADDR":       r.rdb.Options().Addr,
		"CHURNWATCH_AUTH_PUBLIC_KEYS": pubPath,
		"CHURNWATCH_LOG_LEVEL":        "warn",
		"CHURNWATCH_RATE_LIMIT":       "0",
	}
	logs := filepath.Join(r.o.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	for _, kind := range []string{"ingester", "rules", "alerts"} {
		for n := 1; n <= 2; n++ {
			s, err := newService(kind, n, filepath.Join(r.o.BinDir, kind), logs, env)
			if err != nil {
				return err
			}
			if err := s.start(); err != nil {
				return err
			}
			switch kind {
			case "ingester":
				r.ing = append(r.ing, s)
			case "rules":
				r.rules = append(r.rules, s)
			default:
				r.alerts = append(r.alerts, s)
			}
		}
	}
	for _, group := range [][]*service{r.ing, r.rules, r.alerts} {
		for _, s := range group {
			if err := s.waitReady(ctx, 90*time.Second); err != nil {
				return err
			}
			r.logf("%s serving on %s (http %s)", s.name, s.grpcAddr, s.httpAddr)
		}
	}
	// D/chaos.env, like dev.env: `. D/chaos.env; churnctl token mint …`
	// reaches the first instance of each service while the run goes.
	var b strings.Builder
	for k, v := range map[string]string{"CHURNWATCH_INGESTER_ADDR": r.ing[0].grpcAddr, "CHURNWATCH_RULES_ADDR": r.rules[0].grpcAddr,
		"CHURNWATCH_ALERTS_ADDR": r.alerts[0].grpcAddr, "CHURNWATCH_KAFKA_BROKERS": env["CHURNWATCH_KAFKA_BROKERS"],
		"CHURNWATCH_REDIS_ADDR": env["CHURNWATCH_REDIS_ADDR"], "CHURNWATCH_DEV_KEY": filepath.Join(r.o.Dir, "token-key.pem")} {
		fmt.Fprintf(&b, "export %s=%q\n", k, v)
	}
	return os.WriteFile(filepath.Join(r.o.Dir, "chaos.env"), []byte(b.String()), 0o644)
}

func (r *run) watchExits(ctx context.Context, n *atomic.Int64) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		for _, group := range [][]*service{r.ing, r.rules, r.alerts} {
			for _, s := range group {
				if s.exited() {
					n.Add(1)
					r.logf("%s exited on its own (see %s); starting it again", s.name, s.log)
					if err := s.start(); err != nil {
						r.logf("restart %s: %v", s.name, err)
					}
				}
			}
		}
	}
}

// waitCaughtUp waits until both rules and both alerts instances report
// every consumer group caught up (cli.WaitCaughtUp, through each
// instance's StatusService in turn, then the first pair again).
func (r *run) waitCaughtUp(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pairs := []int{0, 1, 0}
	for _, i := range pairs {
		env := map[string]string{"CHURNWATCH_RULES_ADDR": r.rules[i].grpcAddr, "CHURNWATCH_ALERTS_ADDR": r.alerts[i].grpcAddr, "CHURNWATCH_TOKEN": r.opsTok}
		if err := cli.WaitCaughtUp(ctx, &cli.Env{Getenv: func(k string) string { return env[k] }}, time.Until(deadline), 200*time.Millisecond); err != nil {
			return fmt.Errorf("wait for the pipeline to catch up: %w", err)
		}
	}
	return nil
}

func (r *run) importCustomers(ctx context.Context, ings []cwv1.IngestServiceClient, bank *simulate.Bank) error {
	var cs []*cwv1.IncomingCustomer
	for _, c := range bank.Customers {
		cs = append(cs, simfeed.IncomingCustomer(c))
	}
	for i := 0; i < len(cs); i += 5000 {
		batch := cs[i:min(i+5000, len(cs))]
		err := retrying(ctx, ings, func(ctx context.Context, ing cwv1.IngestServiceClient) error {
			resp, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: batch})
			if err == nil && int(resp.GetAccepted()) != len(batch) {
				return fmt.Errorf("import customers: %d of %d accepted", resp.GetAccepted(), len(batch))
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("import customers: %w", err)
		}
	}
	return nil
}

func closeDay(ctx context.Context, ings []cwv1.IngestServiceClient, day string) error {
	return retrying(ctx, ings, func(ctx context.Context, ing cwv1.IngestServiceClient) error {
		_, err := ing.CloseBusinessDay(ctx, &cwv1.CloseBusinessDayRequest{Date: day})
		return err
	})
}

// retrying calls op round-robin over the ingesters until it succeeds or
// fails with an error a retry cannot mend.
func retrying(ctx context.Context, ings []cwv1.IngestServiceClient, op func(context.Context, cwv1.IngestServiceClient) error) error {
	giveUp := time.Now().Add(5 * time.Minute)
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := op(cctx, ings[i%len(ings)])
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// listAlerts pages through every alert in every state, from whichever
// alerts instance answers.
func listAlerts(ctx context.Context, cs []cwv1.AlertServiceClient) ([]*cwv1.Alert, error) {
	for attempt := 0; ; attempt++ {
		var all []*cwv1.Alert
		tok := ""
		var err error
		for {
			var resp *cwv1.ListAlertsResponse
			resp, err = cs[attempt%len(cs)].ListAlerts(ctx, &cwv1.ListAlertsRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				break
			}
			all = append(all, resp.GetAlerts()...)
			if tok = resp.GetNextPageToken(); tok == "" {
				return all, nil
			}
		}
		if status.Code(err) != codes.Unavailable || attempt > 20 {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// createTopics creates the topics with replication 3 and
// min.insync.replicas 2 (SPEC §1): with `churnctl topics create` when that
// command exists, else directly.
func createTopics(ctx context.Context, churnctl string, brokers []string, partitions int, t config.Topics, logf func(string, ...any)) error {
	if _, err := os.Stat(churnctl); err == nil {
		cmd := exec.CommandContext(ctx, churnctl, "topics", "create", "--partitions", fmt.Sprint(partitions), "--replication", "3")
		cmd.Env = append(os.Environ(), "CHURNWATCH_KAFKA_BROKERS="+strings.Join(brokers, ","))
		if out, err := cmd.CombinedOutput(); err == nil {
			logf("topics created by churnctl topics create")
			return nil
		} else {
			first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			logf("churnctl topics create failed (%v: %s); creating the topics directly", err, first)
		}
	}
	isr := kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: "2"}
	var req []kafka.TopicConfig
	for _, name := range t.All() {
		tc := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 3, ConfigEntries: []kafka.ConfigEntry{isr}}
		if name == t.Customers {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
		}
		req = append(req, tc)
	}
	// The chaos cluster is scripts/kafka.sh's plaintext one.
	cl := kafkax.Plain(brokers).Client(30 * time.Second)
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	return nil
}
