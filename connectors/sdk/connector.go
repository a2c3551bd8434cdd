// Package sdk is the contract between the gateway and a department connector,
// and the go-plugin glue that runs a connector in its own process.
//
// A department implements Connector and calls Serve from its main function:
//
//	func main() { sdk.Serve(myConnector{}) }
package sdk

import (
	"context"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Connector is implemented once per department system. Methods are safe for
// concurrent use and honour ctx deadlines, which gRPC carries across the
// process boundary. Errors should be *apierr.Error values (NotFound for an
// unknown key, InvalidArgument for a bad request, Unavailable when the
// department cannot be reached); they cross the process boundary as gRPC
// statuses and are rebuilt on the host side.
type Connector interface {
	Describe(ctx context.Context) (*v1.Descriptor, error)
	Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error)
	Health(ctx context.Context) error
}

// Watcher is the optional change-stream capability. Connectors that implement
// it advertise "watch" in their descriptor. Watch sends events until ctx ends
// or send fails.
type Watcher interface {
	Watch(ctx context.Context, req *v1.WatchRequest, send func(*v1.ChangeEvent) error) error
}
