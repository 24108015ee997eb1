package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/ingester/internal/intake"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func (a *App) routes() {
	mw := func(h http.HandlerFunc) http.Handler {
		return auth.HTTPMiddleware(a.base.Verifier, auth.HTTPIntake, a.base.Log, h)
	}
	a.base.Mux.Handle("POST /v1/events", mw(a.serveEvents))
	a.base.Mux.Handle("POST /v1/customers", mw(a.serveCustomers))
}

// HTTPResult is one record's fate in an HTTP answer.
type HTTPResult struct {
	Index      int    `json:"index"`
	Line       int    `json:"line,omitempty"`
	EventID    string `json:"eventId,omitempty"`
	CustomerID string `json:"customerId,omitempty"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
}

// HTTPResponse is the answer of POST /v1/events and /v1/customers.
type HTTPResponse struct {
	Accepted   int          `json:"accepted"`
	Duplicates int          `json:"duplicates"`
	Rejected   int          `json:"rejected"`
	Late       int          `json:"late"`
	Results    []HTTPResult `json:"results"`
}

var statusNames = map[cwv1.RecordStatus]string{
	cwv1.RecordStatus_RECORD_STATUS_ACCEPTED:  "accepted",
	cwv1.RecordStatus_RECORD_STATUS_DUPLICATE: "duplicate",
	cwv1.RecordStatus_RECORD_STATUS_REJECTED:  "rejected",
	cwv1.RecordStatus_RECORD_STATUS_LATE:      "late",
}

type httpError struct {
	status     int
	msg        string
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var he *httpError
	var rl *rateLimited
	switch {
	case errors.As(err, &he):
	case errors.As(err, &rl):
		he = &httpError{status: http.StatusTooManyRequests, msg: err.Error(), retryAfter: int(math.Ceil(rl.retryAfter.Seconds()))}
	case errors.Is(err, intake.ErrBatchTooLarge), errors.Is(err, intake.ErrBadDate):
		he = &httpError{status: http.StatusBadRequest, msg: err.Error()}
	case errors.Is(err, intake.ErrBrokerUnavailable), errors.Is(err, intake.ErrDedupUnavailable), errors.Is(err, intake.ErrOutcomeUnknown), errors.Is(err, intake.ErrInFlight):
		he = &httpError{status: http.StatusServiceUnavailable, msg: retryAdvice(err), retryAfter: 1}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		he = &httpError{status: http.StatusServiceUnavailable, msg: err.Error(), retryAfter: 1}
	default:
		he = &httpError{status: http.StatusInternalServerError, msg: err.Error()}
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

// body checks the content type and reads the whole body within the size
// limit. Reading it all first means a too-large body is refused before any
// of it is published.
func (a *App) body(w http.ResponseWriter, r *http.Request) (format.Kind, []byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var kind format.Kind
	switch {
	case r.URL.Query().Has("mapping"):
		// the mapping says how the body is written (delimited or NDJSON)
	case err != nil:
		return 0, nil, &httpError{status: http.StatusUnsupportedMediaType, msg: "Content-Type must be application/x-ndjson or application/json"}
	case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl":
		kind = format.NDJSON
	case mt == "application/json":
		kind = format.JSONArray
	default:
		return 0, nil, &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("Content-Type %s not supported: use application/x-ndjson or application/json", mt)}
	}
	if r.ContentLength > a.cfg.HTTPMaxBody {
		return 0, nil, &httpError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than %d bytes: split it", a.cfg.HTTPMaxBody)}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.HTTPMaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return 0, nil, &httpError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than %d bytes: split it", a.cfg.HTTPMaxBody)}
	}
	if err != nil {
		return 0, nil, &httpError{status: http.StatusBadRequest, msg: "read body: " + err.Error()}
	}
	return kind, data, nil
}

func (a *App) span(r *http.Request) (context.Context, trace.Span) {
	ctx := a.base.Tel.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	return a.base.Tel.Tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
}

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

// decoded is one record of an HTTP body, decoded or not.
type decoded[T any] struct {
	line  int
	value T
	err   error
}

func readAll[T any](rd format.Reader[T]) ([]decoded[T], error) {
	var out []decoded[T]
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, &httpError{status: http.StatusBadRequest, msg: err.Error()}
		}
		out = append(out, decoded[T]{line: rec.Line, value: rec.Value, err: rec.Err})
	}
}

// httpRateWait bounds how long one later chunk of a large body waits for
// the rate limit before the rest of the body is reported rate_limited.
const httpRateWait = 30 * time.Second

// codeRateLimited marks records of a large body left unpublished because
// the rate limit would have held them back longer than httpRateWait.
const codeRateLimited validate.Code = "rate_limited"

// chunkGate lets the chunks of one body through the rate limit. The first
// chunk is refused 429 at once when over the rate (nothing is published,
// the caller comes back later); later chunks of an accepted body wait, as
// stream batches do, so a body larger than the burst completes with a
// result for every record.
type chunkGate struct {
	a     *App
	who   string
	first bool
}

// pass takes n records of the chunk; a *rateLimited error from the first
// chunk is the answer to the request, from a later one it means the rest
// of the body is not published.
func (g *chunkGate) pass(ctx context.Context, n int) error {
	if !g.first {
		g.first = true
		return g.a.limiter.allow(g.who, n)
	}
	return g.a.limiter.wait(ctx, g.who, n, httpRateWait)
}

// notPublished marks every record from index from on that has no result
// yet as rejected because the rate limit stopped the body there.
func notPublished(ctx context.Context, a *App, resp *HTTPResponse, from int, err error) {
	n := 0
	for i := from; i < len(resp.Results); i++ {
		if resp.Results[i].Status == "" {
			resp.Results[i].Status = "rejected"
			resp.Results[i].Reason = fmt.Sprintf("not published: %v; send again from record %d", err, from)
			n++
		}
	}
	a.intake.CountRejects(ctx, codeRateLimited, n)
}

// serveEvents takes NDJSON or a JSON array of events. Bodies of more than
// 10,000 records are published in chunks of 10,000 under the rate limit
// (see chunkGate); if one fails the request fails and a retry of the
// whole body is safe (what was published comes back as duplicate).
func (a *App) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx, span := a.span(r)
	defer span.End()
	kind, data, err := a.body(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var recs []decoded[*cwv1.IncomingEvent]
	if r.URL.Query().Has("mapping") {
		recs, err = a.mappedEvents(r.URL.Query().Get("mapping"), data)
	} else {
		recs, err = readAll(format.Events(kind, bytes.NewReader(data)))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	allOrNothing := boolParam(r, "all_or_nothing")
	if allOrNothing && len(recs) > intake.MaxBatch {
		writeError(w, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("all_or_nothing takes at most %d records", intake.MaxBatch)})
		return
	}
	resp := HTTPResponse{Results: make([]HTTPResult, len(recs))}
	decodeBad := -1
	for i, rec := range recs {
		resp.Results[i] = HTTPResult{Index: i, Line: rec.line, EventID: rec.value.GetEventId()}
		if rec.err != nil {
			resp.Results[i].Status, resp.Results[i].Reason = "rejected", rec.err.Error()
			if decodeBad < 0 {
				decodeBad = i
			}
		}
	}
	countDecodeRejects(ctx, a, recs)
	gate := &chunkGate{a: a, who: principal(ctx)}
	for start := 0; start < len(recs); start += intake.MaxBatch {
		chunk := recs[start:min(start+intake.MaxBatch, len(recs))]
		var evs []*cwv1.IncomingEvent
		var at []int
		for i, rec := range chunk {
			if rec.err == nil {
				evs = append(evs, rec.value)
				at = append(at, start+i)
			}
		}
		if allOrNothing && decodeBad >= 0 {
			for _, i := range at {
				resp.Results[i].Status = "rejected"
				resp.Results[i].Reason = fmt.Sprintf("not published: the batch is all-or-nothing and record %d was rejected", decodeBad)
			}
			a.intake.CountRejects(ctx, intake.CodeNotAttempted, len(at))
			continue
		}
		if err := gate.pass(ctx, len(chunk)); err != nil {
			var rl *rateLimited
			if start > 0 && errors.As(err, &rl) {
				notPublished(ctx, a, &resp, start, err)
				break
			}
			span.SetStatus(codes.Error, "rate limited")
			writeError(w, err)
			return
		}
		b, err := a.intake.PublishEvents(ctx, evs, allOrNothing, func(j int) int { return at[j] })
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
			writeError(w, err)
			return
		}
		for j, res := range b.Results {
			i := at[j]
			resp.Results[i].Status, resp.Results[i].Reason = statusNames[res.Status], res.Reason
		}
	}
	resp.tally()
	writeJSON(w, http.StatusOK, resp)
}

// countDecodeRejects counts the records refused while decoding, by code
// (decode_error, duplicate_key, csv_formula).
func countDecodeRejects[T any](ctx context.Context, a *App, recs []decoded[T]) {
	var byCode map[validate.Code]int
	for _, r := range recs {
		if r.err != nil {
			if byCode == nil {
				byCode = map[validate.Code]int{}
			}
			byCode[validate.CodeOf(r.err)]++
		}
	}
	for code, n := range byCode {
		a.intake.CountRejects(ctx, code, n)
	}
}

func (r *HTTPResponse) tally() {
	for _, res := range r.Results {
		switch res.Status {
		case "accepted":
			r.Accepted++
		case "duplicate":
			r.Duplicates++
		case "late":
			r.Late++
		default:
			r.Rejected++
		}
	}
}

// serveCustomers takes NDJSON or a JSON array of customer profiles.
func (a *App) serveCustomers(w http.ResponseWriter, r *http.Request) {
	ctx, span := a.span(r)
	defer span.End()
	kind, data, err := a.body(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var recs []decoded[*cwv1.IncomingCustomer]
	if r.URL.Query().Has("mapping") {
		recs, err = a.mappedCustomers(r.URL.Query().Get("mapping"), data)
	} else {
		recs, err = readAll(format.Customers(kind, bytes.NewReader(data)))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	resp := HTTPResponse{Results: make([]HTTPResult, len(recs))}
	for i, rec := range recs {
		resp.Results[i] = HTTPResult{Index: i, Line: rec.line, CustomerID: rec.value.GetCustomerId()}
		if rec.err != nil {
			resp.Results[i].Status, resp.Results[i].Reason = "rejected", rec.err.Error()
		}
	}
	countDecodeRejects(ctx, a, recs)
	gate := &chunkGate{a: a, who: principal(ctx)}
	for start := 0; start < len(recs); start += intake.MaxBatch {
		chunk := recs[start:min(start+intake.MaxBatch, len(recs))]
		var cs []*cwv1.IncomingCustomer
		var at []int
		for i, rec := range chunk {
			if rec.err == nil {
				cs = append(cs, rec.value)
				at = append(at, start+i)
			}
		}
		if err := gate.pass(ctx, len(chunk)); err != nil {
			var rl *rateLimited
			if start > 0 && errors.As(err, &rl) {
				notPublished(ctx, a, &resp, start, err)
				break
			}
			writeError(w, err)
			return
		}
		b, err := a.intake.UpsertCustomers(ctx, cs)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
			writeError(w, err)
			return
		}
		for j, res := range b.Results {
			resp.Results[at[j]].Status, resp.Results[at[j]].Reason = statusNames[res.Status], res.Reason
		}
	}
	resp.tally()
	writeJSON(w, http.StatusOK, resp)
}
