package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/sdk"
)

// cmdConnector serves a built-in connector type in plugin mode. The gateway's
// connector host starts it with the connector's settings (JSON) in
// $TONGBAN_CONNECTOR_CONFIG; it is not meant to be run by hand.
func cmdConnector(args []string, stderr io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Usage: tongban connector TYPE   (TYPE one of %s)\n\n"+
			"Serves a built-in connector as a go-plugin process. The gateway starts\n"+
			"these itself; the settings arrive as JSON in $%s.\n",
			strings.Join(builtin.Types(), ", "), sdk.EnvConfig)
		if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
			return nil
		}
		return usagef("want exactly one connector type")
	}
	if os.Getenv(sdk.EnvConfig) == "" {
		return fmt.Errorf("$%s is empty: this command is started by the gateway's connector host", sdk.EnvConfig)
	}
	c, err := builtin.New(context.Background(), args[0], []byte(os.Getenv(sdk.EnvConfig)))
	if err != nil {
		return fmt.Errorf("connector %q: %w", sdk.ConnectorName(), err)
	}
	sdk.Serve(c)
	return nil
}
