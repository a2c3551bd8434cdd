package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// echoGateway answers QueryDataset with the request it received and the
// Authorization values it saw (as services read them), or fails for
// purpose "deny".
type echoGateway struct {
	v1.UnimplementedGatewayServer
}

func (echoGateway) QueryDataset(ctx context.Context, req *v1.QueryRequest) (*v1.QueryResponse, error) {
	if req.GetPurpose() == "deny" {
		return nil, apierr.Newf(codes.PermissionDenied, "NO_GRANT", "no grant for %s", req.GetDataset())
	}
	seen, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	fields, err := structpb.NewStruct(map[string]any{"request": string(seen), "authorization": strings.Join(auth.Authorization(ctx), "|")})
	if err != nil {
		return nil, err
	}
	return &v1.QueryResponse{Records: []*v1.Record{{Fields: fields}}, RequestId: "r"}, nil
}

// TestQueryRouteMatchesGrpcGateway sends the same requests through the
// server's handler (fast query route) and through grpc-gateway's mux alone,
// and checks that status, content type and body are identical.
func TestQueryRouteMatchesGrpcGateway(t *testing.T) {
	s, err := New(Options{
		GRPCAddr: "127.0.0.1:0", RESTAddr: "127.0.0.1:0",
		RequestTimeout: time.Minute, MaxBodyBytes: 256, ShutdownTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, Services{Gateway: echoGateway{}})
	if err != nil {
		t.Fatal(err)
	}
	full := s.http.Handler
	viaGateway := s.restMiddleware(s.gwmux)
	cases := []struct {
		name, path, body string
		auth             []string
		headers          http.Header
	}{
		{"typical", "/v1/datasets/market.business_licences:query", `{"keys":{"credit_code":"91130109MAAY40HT30"},"purpose":"approval"}`, []string{"Bearer t"}, nil},
		{"every fast member", "/v1/datasets/approval.permits:query", ` {"dataset":"ignored","keys":{},"purpose":"p","fields":["a","b"],"filter":{"status":"有效"},"pageSize":-7,"page_token":"x"} `, []string{"Bearer t"}, nil},
		{"empty body", "/v1/datasets/d:query", ``, nil, nil},
		{"two authorizations", "/v1/datasets/d:query", `{"purpose":"p"}`, []string{"Bearer a", "Bearer b"}, nil},
		{"escape", "/v1/datasets/d:query", `{"purpose":"a\"b"}`, nil, nil},
		{"bbox", "/v1/datasets/resources.parcels:query", `{"purpose":"p","bbox":{"min_lon":114.4,"min_lat":38,"max_lon":114.6,"max_lat":38.1}}`, nil, nil},
		{"quoted page size", "/v1/datasets/d:query", `{"page_size":"5"}`, nil, nil},
		{"trailing data", "/v1/datasets/d:query", `{"purpose":"p"} {"purpose":"q"}`, nil, nil},
		{"unknown field", "/v1/datasets/d:query", `{"purpose":"p","colour":"red"}`, nil, nil},
		{"duplicate field", "/v1/datasets/d:query", `{"page_size":1,"pageSize":2}`, nil, nil},
		{"duplicate key", "/v1/datasets/d:query", `{"keys":{"a":"1","a":"2"}}`, nil, nil},
		{"malformed", "/v1/datasets/d:query", `{"purpose":`, nil, nil},
		{"not an object", "/v1/datasets/d:query", `[1]`, nil, nil},
		{"invalid utf-8", "/v1/datasets/d:query", "{\"purpose\":\"\xff\"}", nil, nil},
		{"too large", "/v1/datasets/d:query", `{"purpose":"` + strings.Repeat("x", 300) + `"}`, nil, nil},
		{"service error", "/v1/datasets/d:query", `{"purpose":"deny"}`, nil, nil},
		{"escaped path", "/v1/datasets/a%2Eb:query", `{"purpose":"p"}`, nil, nil},
		{"other verb", "/v1/datasets/d:count", `{"purpose":"p"}`, nil, nil},
		{"non-ascii authorization first", "/v1/datasets/d:query", `{"purpose":"p"}`, []string{"Bearer tök", "Bearer t"}, nil},
		{"grpc-timeout", "/v1/datasets/d:query", `{"purpose":"p"}`, nil, http.Header{"Grpc-Timeout": {"garbage"}}},
		{"method override", "/v1/datasets/d:query", `{"purpose":"p"}`, nil,
			http.Header{"X-Http-Method-Override": {"GET"}, "Content-Type": {"application/x-www-form-urlencoded"}}},
		{"trailers", "/v1/datasets/d:query", `{"purpose":"p"}`, nil, http.Header{"Te": {"trailers"}}},
		{"grpc metadata", "/v1/datasets/d:query", `{"purpose":"p"}`, nil, http.Header{"Grpc-Metadata-X-Bin": {"!!"}}},
		{"common headers", "/v1/datasets/d:query", `{"purpose":"p"}`, []string{"Bearer t"},
			http.Header{"Accept": {"application/json"}, "User-Agent": {"curl/8"}, "Content-Type": {"application/json"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send := func(h http.Handler) *httptest.ResponseRecorder {
				r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
				r.Header.Set("X-Request-Id", "req-1")
				for _, a := range tc.auth {
					r.Header.Add("Authorization", a)
				}
				for k, vs := range tc.headers {
					r.Header[k] = vs
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			got, want := send(full), send(viaGateway)
			if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("fast route: %d %v %s\ngrpc-gateway: %d %v %s", got.Code, got.Header(), got.Body,
					want.Code, want.Header(), want.Body)
			}
		})
	}
	// The fast route really is taken for the typical request: with the
	// grpc-gateway mux removed it still answers.
	s.gwmux = http.NotFoundHandler()
	r := httptest.NewRequest(http.MethodPost, cases[0].path, strings.NewReader(cases[0].body))
	w := httptest.NewRecorder()
	newQueryRoute(s, echoGateway{}, http.NotFoundHandler(), newMarshaler()).ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("fast route without grpc-gateway: %d %s", w.Code, w.Body)
	}
}

// FuzzDecodeQueryRequest checks the fast decoder against protojson: when
// it accepts a body, grpc-gateway's decoder accepts it too and yields an
// equal request.
func FuzzDecodeQueryRequest(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `{}`, `{"keys":{"credit_code":"91130109MAAY40HT30"},"purpose":"approval"}`,
		`{"dataset":"x","keys":{"a":"b","c":"d"},"purpose":"p","fields":["a"],"filter":{},"page_size":10,"pageToken":"t"}`,
		`{"page_size":-0}`, `{"page_size":2147483647}`, `{"page_size":-2147483648}`, `{"page_size":2147483648}`,
		`{"page_size":01}`, `{"page_size":1.0}`, `{"page_size":1e2}`, `{"fields":[]}`, `{"keys":{"a":"1","a":"2"}}`,
		`{"purpose":"中文"}`, "{\"purpose\":\"\xe4\"}", `{"purpose":"a\u0041"}`, `{"purpose":null}`, `{"bbox":null}`,
		`{"purpose":"p"}x`, "{\"purpose\":\"p\"}\n", `{ "purpose" : "p" , "keys" : { "k" : "v" } }`, `{,}`, `{"purpose":"p",}`,
	} {
		f.Add([]byte(seed))
	}
	m := newMarshaler()
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast v1.QueryRequest
		if !decodeQueryRequest(body, &fast) {
			return
		}
		var slow v1.QueryRequest
		if err := m.NewDecoder(bytes.NewReader(body)).Decode(&slow); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("fast decoder accepted %q, protojson refused it: %v", body, err)
		}
		if !proto.Equal(&fast, &slow) {
			t.Fatalf("%q: fast decoder gave %v, protojson %v", body, &fast, &slow)
		}
	})
}

// TestQueryFirstYieldsToPOSTRoutes: a POST route of Options (or one
// without a method, such as a host's) that is more specific than the query
// route still gets its requests: the query route is then reached through
// the mux only.
func TestQueryFirstYieldsToPOSTRoutes(t *testing.T) {
	special := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "the special handler") })
	for _, c := range []struct{ pattern, target string }{
		{"POST /v1/datasets/special:query", "http://gw.example/v1/datasets/special:query"},
		{"special.example/", "http://special.example/v1/datasets/d:query"},
	} {
		s, err := New(Options{
			GRPCAddr: "127.0.0.1:0", RESTAddr: "127.0.0.1:0",
			RequestTimeout: time.Minute, MaxBodyBytes: 256, ShutdownTimeout: time.Second,
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Handlers: map[string]http.Handler{c.pattern: special, "GET /other": special},
		}, Services{Gateway: echoGateway{}})
		if err != nil {
			t.Fatal(err)
		}
		for target, want := range map[string]string{c.target: "the special handler", "http://gw.example/v1/datasets/d:query": `"records"`} {
			w := httptest.NewRecorder()
			s.http.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"purpose":"p"}`)))
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("%s registered: POST %s answered %d %s", c.pattern, target, w.Code, w.Body)
			}
		}
	}
	if !anyPOST(map[string]http.Handler{"/x": nil}) || anyPOST(map[string]http.Handler{"GET /x": nil, "DELETE /y": nil}) {
		t.Error("anyPOST misreads the patterns")
	}
}

// TestDecodeQueryRequestAllocations: a typical small body is decoded with
// one copy of it for all its strings, besides the request's own map.
func TestDecodeQueryRequestAllocations(t *testing.T) {
	body := []byte(`{"keys":{"credit_code":"91130109MAAY40HT30"},"purpose":"approval","fields":["name","status"]}`)
	var req *v1.QueryRequest
	allocs := testing.AllocsPerRun(100, func() {
		req = &v1.QueryRequest{}
		if !decodeQueryRequest(body, req) {
			t.Fatal("not decoded")
		}
	})
	if req.GetKeys()["credit_code"] != "91130109MAAY40HT30" || req.GetPurpose() != "approval" || len(req.GetFields()) != 2 {
		t.Fatalf("decoded %v", req)
	}
	// The request, its keys map (two), the fields slice (two, as it
	// grows) and the body's copy; a copy a string would make ten.
	if allocs > 6 {
		t.Errorf("%v allocations a decode", allocs)
	}
}
