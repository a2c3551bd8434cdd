package sdk

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

// server serves a Connector as the tongban.v1.Connector gRPC service.
type server struct {
	v1.UnimplementedConnectorServer
	impl Connector
	log  *slog.Logger
}

func (s *server) Describe(ctx context.Context, _ *v1.DescribeRequest) (*v1.Descriptor, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, s.status(ctx, "describe", err)
	}
	if d == nil {
		return nil, s.status(ctx, "describe", errors.New("connector returned no descriptor"))
	}
	return d, nil
}

func (s *server) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	resp, err := s.impl.Fetch(ctx, req)
	if err != nil {
		return nil, s.status(ctx, "fetch", err)
	}
	if resp == nil {
		return nil, s.status(ctx, "fetch", errors.New("connector returned no response"))
	}
	return resp, nil
}

func (s *server) Health(ctx context.Context, _ *v1.HealthRequest) (*v1.HealthResponse, error) {
	if err := s.impl.Health(ctx); err != nil {
		return nil, s.status(ctx, "health", err)
	}
	return &v1.HealthResponse{}, nil
}

func (s *server) Watch(req *v1.WatchRequest, stream v1.Connector_WatchServer) error {
	w, ok := s.impl.(Watcher)
	if !ok {
		return apierr.New(codes.Unimplemented, apierr.ReasonUnimplemented, "connector has no watch capability")
	}
	ctx := stream.Context()
	if err := w.Watch(ctx, req, stream.Send); err != nil {
		return s.status(ctx, "watch", err)
	}
	return nil
}

// status turns a connector's error into what crosses the process boundary:
// an *apierr.Error as itself (grpc-go sends its GRPCStatus, never its cause),
// a context error as CANCELED or DEADLINE_EXCEEDED, anything else as INTERNAL
// with the cause logged here and not sent.
func (s *server) status(ctx context.Context, op string, err error) error {
	var e *apierr.Error
	if errors.As(err, &e) {
		if e.Unwrap() != nil {
			s.log.DebugContext(ctx, "connector call failed", "op", op, "err", ident.Redact(err.Error()))
		}
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return apierr.New(codes.Canceled, ReasonCanceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return apierr.New(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded, "deadline exceeded")
	}
	s.log.ErrorContext(ctx, "connector call failed", "op", op, "err", ident.Redact(err.Error()))
	return apierr.New(codes.Internal, apierr.ReasonInternal, "internal error in connector")
}

// ReasonCanceled is the reason of a CANCELED error: the caller gave up. The
// apierr package has no reason for it yet.
const ReasonCanceled = apierr.ReasonCanceled
