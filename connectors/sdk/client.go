package sdk

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Client is the host side of a connector plugin: a Connector and Watcher
// over a gRPC connection. Errors it returns are *apierr.Error values rebuilt
// from the statuses the plugin sent, so errors.Is, the reason and the
// metadata survive the process boundary.
type Client struct {
	rpc v1.ConnectorClient
}

var (
	_ Connector = (*Client)(nil)
	_ Watcher   = (*Client)(nil)
)

// NewClient returns a Client over cc.
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{rpc: v1.NewConnectorClient(cc)}
}

// Describe implements Connector.
func (c *Client) Describe(ctx context.Context) (*v1.Descriptor, error) {
	d, err := c.rpc.Describe(ctx, &v1.DescribeRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return d, nil
}

// Fetch implements Connector.
func (c *Client) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	resp, err := c.rpc.Fetch(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// Health implements Connector.
func (c *Client) Health(ctx context.Context) error {
	if _, err := c.rpc.Health(ctx, &v1.HealthRequest{}); err != nil {
		return fromStatus(err)
	}
	return nil
}

// Watch implements Watcher. It returns nil when the plugin ends the stream,
// the error from send when send fails, and otherwise the stream's error (an
// UNIMPLEMENTED error when the connector cannot watch).
func (c *Client) Watch(ctx context.Context, req *v1.WatchRequest, send func(*v1.ChangeEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Watch(ctx, req)
	if err != nil {
		return fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus(err)
		}
		if err := send(ev); err != nil {
			return err
		}
	}
}

// fromStatus rebuilds the *apierr.Error a plugin sent.
func fromStatus(err error) error {
	e := apierr.From(err)
	if st, ok := status.FromError(err); ok && e.Code == codes.Canceled && e.Reason == apierr.ReasonInternal {
		return apierr.New(codes.Canceled, ReasonCanceled, st.Message()).WithCause(err)
	}
	return e
}
