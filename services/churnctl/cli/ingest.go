package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

func init() {
	Register(&Command{Name: "ingest", Args: "FILE|- [--batch 5000] [--no-sort] [--sort-limit N] [--format auto|ndjson|csv|json] [--retry 1m] | --mapping MAPPING.yaml [DIR]",
		Summary: "publish account events from NDJSON or CSV, or a bank's own export through a mapping (customers first); prints a summary, exit 3 if any was rejected or late", Run: ingest})
	Register(&Command{Name: "customers import", Args: "FILE|- [--batch 5000] [--retry 1m]",
		Summary: "publish customer profiles from NDJSON", Run: customersImport})
	Register(&Command{Name: "close-day", Args: "YYYY-MM-DD",
		Summary: "close a business day: advance every partition clock", Run: closeDay})
}

// IngestSummary is what churnctl ingest prints.
type IngestSummary struct {
	Accepted int `json:"accepted"`
	// Customers accepted (with --mapping, which derives them too).
	Customers  int `json:"customers,omitempty"`
	Duplicates int `json:"duplicates"`
	Rejected   int `json:"rejected"`
	// Late events were older than their partition's clock minus the
	// allowed lateness: dead-lettered, not scored (listed in Errors).
	Late   int         `json:"late"`
	Errors []LineError `json:"errors"`
}

// LineError is one rejected record of the input: its 1-based line (CSV:
// the header is line 1; JSON array: the record's position), its id and why.
type LineError struct {
	Line       int    `json:"line"`
	EventID    string `json:"eventId,omitempty"`
	CustomerID string `json:"customerId,omitempty"`
	Reason     string `json:"reason"`
}

func (s *IngestSummary) reject(line int, id string, customers bool, reason string) {
	s.Rejected++
	s.problem(line, id, customers, reason)
}

func (s *IngestSummary) problem(line int, id string, customers bool, reason string) {
	e := LineError{Line: line, Reason: reason}
	if customers {
		e.CustomerID = id
	} else {
		e.EventID = id
	}
	s.Errors = append(s.Errors, e)
}

// finish prints the summary and picks the exit code: 3 when anything was
// rejected.
func (s *IngestSummary) finish(env *Env) error {
	slices.SortStableFunc(s.Errors, func(a, b LineError) int { return a.Line - b.Line })
	if s.Errors == nil {
		s.Errors = []LineError{}
	}
	if err := env.JSON(s); err != nil {
		return err
	}
	if s.Rejected > 0 || s.Late > 0 {
		return &ExitError{Code: ExitRejected, Err: fmt.Errorf("%d record(s) rejected, %d late and not scored (see errors in the summary)", s.Rejected, s.Late)}
	}
	return nil
}

type ingestFlags struct {
	batch     int
	noSort    bool
	sortLimit int
	format    string
	retry     time.Duration
	mapping   string
}

func openInput(env *Env, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(env.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	return f, nil
}

// line is one input record bound for the service.
type line[T any] struct {
	line int
	rec  T
}

func recordLine[T any](k format.Kind, r format.Record[T]) int {
	if k == format.JSONArray {
		return r.Index + 1
	}
	return r.Line
}

func ingest(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "ingest")
	var fl ingestFlags
	fs.IntVar(&fl.batch, "batch", 5000, "events per PublishEvents call (at most 10000)")
	fs.BoolVar(&fl.noSort, "no-sort", false, "send in file order instead of sorting by occurredAt")
	fs.IntVar(&fl.sortLimit, "sort-limit", 1_000_000, "sort only inputs of at most this many records (they are held in memory)")
	fs.StringVar(&fl.format, "format", "auto", "auto (by extension or first line), ndjson, csv or json (an array)")
	fs.DurationVar(&fl.retry, "retry", time.Minute, "keep retrying a batch this long while the ingester is unavailable or rate-limits (a batch lands before the next is sent)")
	fs.StringVar(&fl.mapping, "mapping", "", "a declarative mapping (YAML) of a bank's own export; the argument is then the export's directory (default: the mapping's)")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if fl.batch < 1 || fl.batch > 10000 {
		return Usagef("--batch %d: between 1 and 10000", fl.batch)
	}
	if fl.mapping != "" {
		if len(pos) > 1 {
			return Usagef("ingest --mapping takes at most one DIR, the export's directory")
		}
		dir := ""
		if len(pos) == 1 {
			dir = pos[0]
		}
		return ingestMapped(ctx, env, fl, dir)
	}
	if len(pos) != 1 {
		return Usagef("ingest takes one FILE (or - for stdin)")
	}
	in, err := openInput(env, pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 1<<20)
	kind := format.Detect(pos[0], br)
	switch fl.format {
	case "auto":
	case "ndjson":
		kind = format.NDJSON
	case "csv":
		kind = format.CSV
	case "json":
		kind = format.JSONArray
	default:
		return Usagef("--format %q: auto, ndjson, csv or json", fl.format)
	}
	conn, err := env.Dial("ingester")
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := cwv1.NewIngestServiceClient(conn)
	sum := &IngestSummary{}
	rd := format.Events(kind, br)
	next := func() (line[*cwv1.IncomingEvent], bool, error) {
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				return line[*cwv1.IncomingEvent]{}, false, nil
			}
			if err != nil {
				return line[*cwv1.IncomingEvent]{}, false, &ExitError{Code: ExitFailure, Err: fmt.Errorf("read %s: %w", pos[0], err)}
			}
			ln := recordLine(kind, rec)
			if rec.Err != nil {
				sum.reject(ln, rec.Value.GetEventId(), false, rec.Err.Error())
				continue
			}
			return line[*cwv1.IncomingEvent]{line: ln, rec: rec.Value}, true, nil
		}
	}
	return publishEvents(ctx, env, cl, fl, sum, next)
}

// ingestMapped converts a bank's export with a mapping and publishes its
// customers, then its events.
func ingestMapped(ctx context.Context, env *Env, fl ingestFlags, dir string) error {
	out, err := convertWithMapping(fl.mapping, dir)
	if err != nil {
		return err
	}
	conn, err := env.Dial("ingester")
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := cwv1.NewIngestServiceClient(conn)
	sum := &IngestSummary{}
	if err := upsertMappedCustomers(ctx, cl, fl, out.Customers, sum); err != nil {
		return err
	}
	i := 0
	next := func() (line[*cwv1.IncomingEvent], bool, error) {
		for ; i < len(out.Events); i++ {
			r := out.Events[i]
			if r.Err != nil {
				sum.reject(r.Line, r.Value.GetEventId(), false, mappedReason(r.File, r.Err))
				continue
			}
			i++
			return line[*cwv1.IncomingEvent]{line: r.Line, rec: r.Value}, true, nil
		}
		return line[*cwv1.IncomingEvent]{}, false, nil
	}
	return publishEvents(ctx, env, cl, fl, sum, next)
}

// publishEvents sends the events next yields in batches (sorted by
// occurredAt unless --no-sort) and prints the summary.
func publishEvents(ctx context.Context, env *Env, cl cwv1.IngestServiceClient, fl ingestFlags, sum *IngestSummary,
	next func() (line[*cwv1.IncomingEvent], bool, error)) error {
	prog := newProgress(env)
	send := func(batch []line[*cwv1.IncomingEvent]) error {
		evs := make([]*cwv1.IncomingEvent, len(batch))
		for i, l := range batch {
			evs[i] = l.rec
		}
		var resp *cwv1.PublishEventsResponse
		err := Retrying(ctx, fl.retry, func(ctx context.Context) (err error) {
			resp, err = cl.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: evs})
			return err
		})
		if err != nil {
			done := sum.Accepted + sum.Duplicates + sum.Rejected + sum.Late
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%v (after %d records; running the file again is safe: what was accepted comes back as duplicate)", RPCError("ingester", err), done)}
		}
		sum.Accepted += int(resp.Accepted)
		sum.Duplicates += int(resp.Duplicates)
		for _, r := range resp.Results {
			if int(r.Index) >= len(batch) {
				continue
			}
			switch r.Status {
			case cwv1.RecordStatus_RECORD_STATUS_REJECTED:
				sum.reject(batch[r.Index].line, r.Id, false, r.Reason)
			case cwv1.RecordStatus_RECORD_STATUS_LATE:
				sum.Late++
				sum.problem(batch[r.Index].line, r.Id, false, r.Reason)
			}
		}
		prog.add(len(batch))
		return nil
	}

	var held []line[*cwv1.IncomingEvent]
	streaming := fl.noSort
	flush := func(all bool) error {
		for len(held) >= fl.batch || (all && len(held) > 0) {
			n := min(fl.batch, len(held))
			if err := send(held[:n]); err != nil {
				return err
			}
			held = held[n:]
		}
		return nil
	}
	for {
		l, ok, err := next()
		if err != nil {
			prog.done()
			return err
		}
		if !ok {
			break
		}
		held = append(held, l)
		if !streaming && len(held) > fl.sortLimit {
			fmt.Fprintf(env.Stderr, "churnctl ingest: more than %d records: sending in file order (sort the file by occurredAt first, or raise --sort-limit)\n", fl.sortLimit)
			streaming = true
		}
		if streaming {
			if err := flush(false); err != nil {
				prog.done()
				return err
			}
		}
	}
	if !streaming {
		sortByOccurredAt(held)
		prog.total = len(held)
	}
	err := flush(true)
	prog.done()
	if err != nil {
		return err
	}
	return sum.finish(env)
}

// sortByOccurredAt orders events by event time so that the pipeline's
// partition clocks advance as in real life and nothing looks late. Stable:
// same-time events keep file order; unparsable times go last (they are
// rejected anyway).
func sortByOccurredAt(evs []line[*cwv1.IncomingEvent]) {
	keys := make(map[*cwv1.IncomingEvent]int64, len(evs))
	for _, e := range evs {
		if t, ok := validate.OccurredAt(e.rec.GetOccurredAt()); ok {
			keys[e.rec] = t.UnixNano()
		} else {
			keys[e.rec] = 1<<63 - 1
		}
	}
	slices.SortStableFunc(evs, func(a, b line[*cwv1.IncomingEvent]) int {
		ka, kb := keys[a.rec], keys[b.rec]
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
}

// Retrying calls op until it succeeds, fails with a lasting error, or the
// ingester stayed unavailable (or kept rate-limiting) for longer than
// budget. Retries are safe: the ingester dedupes by eventId.
func Retrying(ctx context.Context, budget time.Duration, op func(context.Context) error) error {
	deadline := time.Now().Add(budget)
	backoff := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := op(cctx)
		cancel()
		code := status.Code(err)
		if err == nil || (code != codes.Unavailable && code != codes.ResourceExhausted) || ctx.Err() != nil {
			return err
		}
		if time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func customersImport(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "customers import")
	batchSize := fs.Int("batch", 5000, "customers per UpsertCustomers call (at most 10000)")
	retry := fs.Duration("retry", time.Minute, "keep retrying a batch this long while the ingester is unavailable")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return Usagef("customers import takes one FILE (or - for stdin)")
	}
	if *batchSize < 1 || *batchSize > 10000 {
		return Usagef("--batch %d: between 1 and 10000", *batchSize)
	}
	in, err := openInput(env, pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 1<<20)
	kind := format.NDJSON
	if format.Detect(pos[0], br) == format.JSONArray {
		kind = format.JSONArray
	}
	conn, err := env.Dial("ingester")
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := cwv1.NewIngestServiceClient(conn)
	sum := &IngestSummary{}
	var held []line[*cwv1.IncomingCustomer]
	send := func() error {
		cs := make([]*cwv1.IncomingCustomer, len(held))
		for i, l := range held {
			cs[i] = l.rec
		}
		var resp *cwv1.UpsertCustomersResponse
		err := Retrying(ctx, *retry, func(ctx context.Context) (err error) {
			resp, err = cl.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: cs})
			return err
		})
		if err != nil {
			return RPCError("ingester", err)
		}
		sum.Accepted += int(resp.Accepted)
		for _, r := range resp.Results {
			if r.Status == cwv1.RecordStatus_RECORD_STATUS_REJECTED && int(r.Index) < len(held) {
				sum.reject(held[r.Index].line, r.Id, true, r.Reason)
			}
		}
		held = held[:0]
		return nil
	}
	rd := format.Customers(kind, br)
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("read %s: %w", pos[0], err)}
		}
		ln := recordLine(kind, rec)
		if rec.Err != nil {
			sum.reject(ln, rec.Value.GetCustomerId(), true, rec.Err.Error())
			continue
		}
		held = append(held, line[*cwv1.IncomingCustomer]{line: ln, rec: rec.Value})
		if len(held) >= *batchSize {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if len(held) > 0 {
		if err := send(); err != nil {
			return err
		}
	}
	return sum.finish(env)
}

func closeDay(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "close-day")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return Usagef("close-day takes one date YYYY-MM-DD")
	}
	if d, err := time.Parse(time.DateOnly, pos[0]); err != nil || d.Format(time.DateOnly) != pos[0] {
		return Usagef("close-day: %q is not a date YYYY-MM-DD", pos[0])
	}
	conn, err := env.Dial("ingester")
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := cwv1.NewIngestServiceClient(conn).CloseBusinessDay(cctx, &cwv1.CloseBusinessDayRequest{Date: pos[0]})
	if err != nil {
		return RPCError("ingester", err)
	}
	return env.JSON(map[string]any{"date": pos[0], "partitions": resp.Partitions, "clock": resp.Clock.AsTime().UTC().Format(time.RFC3339)})
}

// progress draws a bar on stderr when it is a terminal and the input is
// big enough to be worth watching.
type progress struct {
	w       io.Writer
	on      bool
	total   int
	sent    int
	started time.Time
	last    time.Time
}

func newProgress(env *Env) *progress {
	p := &progress{w: env.Stderr, started: time.Now()}
	if f, ok := env.Stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) add(n int) {
	p.sent += n
	if !p.on || p.sent < 20000 || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	rate := float64(p.sent) / max(time.Since(p.started).Seconds(), 0.001)
	if p.total > 0 {
		const width = 30
		done := min(width*p.sent/p.total, width)
		fmt.Fprintf(p.w, "\r[%s%s] %3d%% %d/%d events %.0f/s ", strings.Repeat("=", done), strings.Repeat(" ", width-done),
			100*p.sent/p.total, p.sent, p.total, rate)
		return
	}
	fmt.Fprintf(p.w, "\r%d events %.0f/s ", p.sent, rate)
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}
