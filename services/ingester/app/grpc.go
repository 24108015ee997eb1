package app

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/internal/intake"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// streamRateWait is how long a stream batch may be held back by the rate
// limit before the stream is failed RESOURCE_EXHAUSTED.
const streamRateWait = 10 * time.Second

type ingestServer struct {
	cwv1.UnimplementedIngestServiceServer
	app *App
}

func principal(ctx context.Context) string {
	p, _ := auth.FromContext(ctx)
	return p.Subject
}

// grpcError maps domain errors to gRPC status codes, here at the edge only.
func grpcError(err error) error {
	var rl *rateLimited
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rl):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, intake.ErrBatchTooLarge), errors.Is(err, intake.ErrBadDate):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, intake.ErrBrokerUnavailable), errors.Is(err, intake.ErrDedupUnavailable), errors.Is(err, intake.ErrOutcomeUnknown), errors.Is(err, intake.ErrInFlight):
		return status.Error(codes.Unavailable, retryAdvice(err))
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// retryAdvice says what an UNAVAILABLE answer means for the caller: no
// result is reported for the batch, and retrying it whole is safe.
func retryAdvice(err error) string {
	switch {
	case errors.Is(err, intake.ErrOutcomeUnknown):
		return err.Error() + "; unknown whether they were written: retry the request, it is safe (an event written twice is scored once)"
	case errors.Is(err, intake.ErrInFlight):
		return err.Error() + "; retry the request: what this call wrote comes back duplicate, the rest is then published"
	default:
		return err.Error() + "; not written, nothing was lost: retry the request"
	}
}

func results(b *intake.Batch, onlyProblems bool) []*cwv1.RecordResult {
	out := make([]*cwv1.RecordResult, 0, len(b.Results))
	for _, r := range b.Results {
		if onlyProblems && r.Status == cwv1.RecordStatus_RECORD_STATUS_ACCEPTED {
			continue
		}
		out = append(out, &cwv1.RecordResult{Index: int32(r.Index), Id: r.ID, Status: r.Status, Reason: r.Reason})
	}
	return out
}

func (s *ingestServer) PublishEvents(ctx context.Context, req *cwv1.PublishEventsRequest) (*cwv1.PublishEventsResponse, error) {
	if len(req.GetEvents()) > intake.MaxBatch {
		return nil, grpcError(intake.ErrBatchTooLarge)
	}
	if err := s.app.limiter.allow(principal(ctx), len(req.GetEvents())); err != nil {
		return nil, grpcError(err)
	}
	b, err := s.app.intake.PublishEvents(ctx, req.GetEvents(), req.GetAllOrNothing(), nil)
	if err != nil {
		return nil, grpcError(err)
	}
	return &cwv1.PublishEventsResponse{Accepted: int32(b.Accepted), Duplicates: int32(b.Duplicates), Rejected: int32(b.Rejected),
		Late: int32(b.Late), Results: results(b, false)}, nil
}

// StreamEvents is flow-controlled: each received batch is published before
// the next is read, so gRPC's window holds a fast sender back.
func (s *ingestServer) StreamEvents(stream grpc.ClientStreamingServer[cwv1.StreamEventsRequest, cwv1.StreamEventsResponse]) error {
	ctx := stream.Context()
	who := principal(ctx)
	resp := &cwv1.StreamEventsResponse{}
	base := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		evs := req.GetEvents()
		if len(evs) > intake.MaxBatch {
			return grpcError(intake.ErrBatchTooLarge)
		}
		if err := s.app.limiter.wait(ctx, who, len(evs), streamRateWait); err != nil {
			return grpcError(err)
		}
		off := base
		b, err := s.app.intake.PublishEvents(ctx, evs, false, func(i int) int { return off + i })
		if err != nil {
			return grpcError(err)
		}
		base += len(evs)
		resp.Accepted += int32(b.Accepted)
		resp.Duplicates += int32(b.Duplicates)
		resp.Rejected += int32(b.Rejected)
		resp.Late += int32(b.Late)
		resp.Results = append(resp.Results, results(b, true)...)
	}
}

func (s *ingestServer) UpsertCustomers(ctx context.Context, req *cwv1.UpsertCustomersRequest) (*cwv1.UpsertCustomersResponse, error) {
	if len(req.GetCustomers()) > intake.MaxBatch {
		return nil, grpcError(intake.ErrBatchTooLarge)
	}
	if err := s.app.limiter.allow(principal(ctx), len(req.GetCustomers())); err != nil {
		return nil, grpcError(err)
	}
	b, err := s.app.intake.UpsertCustomers(ctx, req.GetCustomers())
	if err != nil {
		return nil, grpcError(err)
	}
	return &cwv1.UpsertCustomersResponse{Accepted: int32(b.Accepted), Rejected: int32(b.Rejected), Results: results(b, false)}, nil
}

func (s *ingestServer) CloseBusinessDay(ctx context.Context, req *cwv1.CloseBusinessDayRequest) (*cwv1.CloseBusinessDayResponse, error) {
	n, clock, err := s.app.intake.CloseBusinessDay(ctx, req.GetDate())
	if err != nil {
		return nil, grpcError(err)
	}
	s.app.base.Log.InfoContext(ctx, "business day closed", "date", req.GetDate(), "partitions", n, "principal", principal(ctx))
	return &cwv1.CloseBusinessDayResponse{Partitions: int32(n), Clock: timestamppb.New(clock)}, nil
}
