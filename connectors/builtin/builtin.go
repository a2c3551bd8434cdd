// Package builtin is the registry of the connector types that ship with
// Tongban and are configured without code: "rest" (REST/JSON department
// systems), "ogcfeatures" (OGC API – Features servers) and "postgres"
// (PostgreSQL databases, parameterised SQL only).
//
// The host runs a built-in type in a plugin process (`tongban connector
// TYPE`) and hands over its settings; the plugin main calls New:
//
//	c, err := builtin.New(ctx, "rest", settings)
//	if err != nil { ... }
//	sdk.Serve(c)
//
// Settings are YAML (JSON is YAML too). Unknown keys are errors, and
// validation errors name the key path, e.g.
// datasets["market.business_licences"].fields.name.
package builtin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tongban/tongban/connectors/builtin/ogcfeatures"
	"github.com/tongban/tongban/connectors/builtin/postgres"
	"github.com/tongban/tongban/connectors/builtin/rest"
	"github.com/tongban/tongban/connectors/sdk"
)

// Factory builds a connector of one type from its YAML settings.
type Factory func(ctx context.Context, settings []byte) (sdk.Connector, error)

// factories is the explicit name → factory map of the built-in types.
var factories = map[string]Factory{
	rest.Type: func(ctx context.Context, b []byte) (sdk.Connector, error) {
		c, err := rest.New(ctx, b)
		if err != nil {
			return nil, err
		}
		return c, nil
	},
	ogcfeatures.Type: func(ctx context.Context, b []byte) (sdk.Connector, error) {
		c, err := ogcfeatures.New(ctx, b)
		if err != nil {
			return nil, err
		}
		return c, nil
	},
	postgres.Type: func(ctx context.Context, b []byte) (sdk.Connector, error) {
		c, err := postgres.New(ctx, b)
		if err != nil {
			return nil, err
		}
		return c, nil
	},
}

// New builds a built-in connector of type typ from its settings. An unknown
// type is an error that lists the known ones.
func New(ctx context.Context, typ string, settings []byte) (sdk.Connector, error) {
	f, ok := factories[typ]
	if !ok {
		return nil, fmt.Errorf("unknown connector type %q (built-in types: %s)", typ, strings.Join(Types(), ", "))
	}
	c, err := f(ctx, settings)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Types returns the names of the built-in connector types, sorted.
func Types() []string {
	out := make([]string, 0, len(factories))
	for name := range factories {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
