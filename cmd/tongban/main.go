// Command tongban is the one binary of the Tongban data-exchange gateway.
//
//	tongban serve --config FILE     run a gateway node
//	tongban demo                    gateway + simulated departments + seeded grants
//	tongban simulate                the three simulated departments only
//	tongban connector TYPE          run a built-in connector in plugin mode (started by the gateway)
//	tongban grants ...              propose, review, revoke, list and show grants
//	tongban autofill FORM ...       auto-fill an application form from department data
//	tongban audit verify ...        verify an audit log offline
//	tongban ca init|issue ...       create the exchange CA; issue client and server certificates
//	tongban version                 print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tongban — data-exchange gateway between government department systems

Usage:
  tongban serve --config FILE      run a gateway node (YAML config; TONGBAN_* environment overrides)
  tongban demo [--dir DIR]         run the gateway, three simulated departments and seeded grants
  tongban simulate [flags]         run only the three simulated departments on loopback (for
                                   gateway nodes started with serve, e.g. make multinode)
  tongban connector TYPE           run a built-in connector (rest, ogcfeatures, postgres) in plugin
                                   mode; the gateway starts these itself
  tongban grants COMMAND           propose | review | revoke | list | show data-sharing grants
  tongban autofill FORM --applicant ID
                                   auto-fill an application form (or --bundle) from department data
  tongban audit verify ...         verify an audit log directory, a receipt or a consistency proof
  tongban ca init|issue ...        create the exchange's CA; issue member systems' client
                                   certificates (mutual TLS identities) and server certificates
  tongban version                  print the version

Run "tongban COMMAND --help" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "simulate":
		err = cmdSimulate(ctx, args[1:], stdout, stderr)
	case "connector":
		err = cmdConnector(args[1:], stderr)
	case "grants":
		err = cmdGrants(ctx, args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, args[1:], stdout, stderr)
	case "autofill":
		err = cmdAutofill(ctx, args[1:], stdout, stderr)
	case "ca":
		err = cmdCA(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "tongban", version)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "tongban: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "tongban %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "tongban %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a bad command line.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// newFlags returns a flag set that prints its usage to stderr.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tongban %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
