package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// queryRoute serves POST /v1/datasets/{dataset}:query, the hottest REST
// route, without grpc-gateway's generic machinery: it reads the body once,
// decodes the common shape of a QueryRequest directly (decodeQueryRequest),
// calls the service in process and writes the answer with the hand-written
// QueryResponse encoder. Everything else, and every request it is not sure
// about, goes to next (the grpc-gateway mux), so that both paths accept the
// same requests, give the same errors and write the same answers:
//
//   - a path that is escaped, or whose last segment is not NAME:query, is
//     routed by grpc-gateway;
//   - a body the fast decoder does not handle (an escape in a string, a
//     number it does not parse, a bbox, unknown or repeated fields, trailing
//     data, anything malformed) is decoded by the very decoder grpc-gateway
//     uses, which produces the same request or the same error.
//
// The caller's credentials reach the service as grpc-gateway passes them,
// every Authorization value (auth.WithAuthorization, which the services
// read as they read the "authorization" metadata); the request id and a
// verified client certificate are already in the context (restMiddleware).
type queryRoute struct {
	s    *Server
	svc  v1.GatewayServer
	next http.Handler
	m    queryMarshaler
	// answers is svc when it is an answerQuerier (see newQueryRoute).
	answers answerQuerier
}

// newQueryRoute returns the route serving queries with svc, handing what
// it does not take to next.
func newQueryRoute(s *Server, svc v1.GatewayServer, next http.Handler, m queryMarshaler) *queryRoute {
	q := &queryRoute{s: s, svc: svc, next: next, m: m}
	q.answers, _ = svc.(answerQuerier)
	return q
}

// answerQuerier is implemented by a GatewayServer that can also return the
// parts of a query's JSON answer its pipeline kept (api.Gateway): the
// route copies those instead of encoding the records' fields again.
type answerQuerier interface {
	QueryDatasetAnswer(ctx context.Context, req *v1.QueryRequest) (query.Answer, error)
}

const (
	queryPrefix = "/v1/datasets/"
	querySuffix = ":query"
)

// bodyPool holds the buffers request bodies are read into.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (q *queryRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dataset, ok := queryDataset(r)
	if !ok || !plainHeaders(r.Header) {
		q.next.ServeHTTP(w, r)
		return
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			bodyPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = status.Errorf(codes.InvalidArgument, "%v", err)
		}
		q.s.restError(r.Context(), nil, nil, w, r, err)
		return
	}
	req := &v1.QueryRequest{}
	if !decodeQueryRequest(buf.Bytes(), req) {
		req = &v1.QueryRequest{}
		if err := q.m.NewDecoder(bytes.NewReader(buf.Bytes())).Decode(req); err != nil && !errors.Is(err, io.EOF) {
			q.s.restError(r.Context(), nil, nil, w, r, status.Errorf(codes.InvalidArgument, "%v", err))
			return
		}
	}
	req.Dataset = dataset
	ctx := r.Context()
	if authz := r.Header.Values("Authorization"); len(authz) > 0 {
		// As grpc-gateway passes them, without building its metadata.
		ctx = auth.WithAuthorization(ctx, authz)
	}
	var a query.Answer
	var err error
	if q.answers != nil {
		a, err = q.answers.QueryDatasetAnswer(ctx, req)
	} else {
		a.Response, err = q.svc.QueryDataset(ctx, req)
	}
	if err != nil {
		q.s.restError(ctx, nil, nil, w, r, err)
		return
	}
	q.write(ctx, w, r, a)
}

// write sends a's response as grpc-gateway's ForwardResponseMessage would,
// encoded into a pooled buffer.
func (q *queryRoute) write(ctx context.Context, w http.ResponseWriter, r *http.Request, a query.Answer) {
	bp := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(bp)
	b, ok := appendQueryResponse((*bp)[:0], a.Response, a.FieldsJSON)
	if !ok {
		var err error
		if b, err = q.m.Marshal(a.Response); err != nil {
			q.s.restError(ctx, nil, nil, w, r, status.Errorf(codes.Internal, "encoding the answer: %v", err))
			return
		}
	} else if cap(b) <= 256<<10 {
		*bp = b
	}
	w.Header()["Content-Type"] = jsonContentType
	_, _ = w.Write(b)
}

// jsonContentType is the Content-Type value of every answer, shared:
// header values are replaced, never written in place, and net/http copies
// the header it sends.
var jsonContentType = []string{"application/json"}

// answerBufs holds the buffers answers are encoded into.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// plainHeaders reports whether h holds only headers that grpc-gateway would
// not act on beyond what queryRoute does: every other header (Grpc-Timeout,
// Grpc-Metadata-*, X-HTTP-Method-Override, TE, ...) sends the request down
// grpc-gateway's path. Authorization values must be printable ASCII, the
// only ones grpc-gateway passes on as metadata.
func plainHeaders(h http.Header) bool {
	for k, vs := range h {
		switch k {
		case "Authorization":
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						return false
					}
				}
			}
		case "Accept", "Accept-Encoding", "Accept-Language", "Connection", "Content-Length", "Content-Type",
			"Cookie", "Origin", "Referer", "Traceparent", "Tracestate", "User-Agent", "X-Request-Id",
			"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip":
		default:
			return false
		}
	}
	return true
}

// queryDataset returns the dataset named by a plain (unescaped) path
// /v1/datasets/NAME:query, where NAME is non-empty and holds no '/' or ':'.
func queryDataset(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, queryPrefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, querySuffix)
	if !ok || name == "" || strings.ContainsAny(name, "/:") {
		return "", false
	}
	return name, true
}
