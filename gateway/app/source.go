package app

import (
	"context"
	"os"

	"github.com/tongban/tongban/connectors/host"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// hostSource adapts the connector host to cache.Source.
type hostSource struct{ h *host.Host }

func (s hostSource) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	resp, _, err := s.h.Fetch(ctx, req)
	return resp, err
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o750) }
