package connectortest

import (
	"io"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/tongban/tongban/connectors/sdk"
)

// InProcess serves c over go-plugin's gRPC transport inside the test process
// (plugin.TestPluginGRPCConn) and returns the host-side client. Calls cross a
// real gRPC connection, so error translation, deadlines and streaming behave
// as with a plugin process, without building or starting one. The connection
// is closed when the test ends.
//
// go-plugin's test helper logs at debug level to hclog.DefaultOutput; the
// first call points that at io.Discard for the rest of the test binary.
func InProcess(t testing.TB, c sdk.Connector) *sdk.Client {
	t.Helper()
	quietOnce.Do(func() { hclog.DefaultOutput = io.Discard })
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(c))
	// Close asks the server to shut down through go-plugin's controller.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispensing in-process connector: %v", err)
	}
	cl, ok := raw.(*sdk.Client)
	if !ok {
		t.Fatalf("in-process connector dispensed %T, want *sdk.Client", raw)
	}
	return cl
}

var quietOnce sync.Once
