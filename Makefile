# Tongban — see README.md. Every target works on a fresh machine once
# .ci/run's packages are installed (make test needs redis-server and
# PostgreSQL; make generate and make lint need protoc).

GO      ?= go
BIN     := bin/tongban
PKGS    := ./...
# Benchmarks run for a fixed count so that a run is bounded.
BENCHTIME ?= 1s

.PHONY: all build demo test test-short generate lint bench fuzz clean multinode

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tongban

## demo: gateway + three simulated departments + seeded grants, embedded defaults.
demo: build
	./$(BIN) demo

## test: every test, including the ones that start real redis-server and
## PostgreSQL processes and Kafka-protocol brokers on loopback.
test:
	$(GO) test -race -shuffle=on -timeout 25m $(PKGS)

## test-short: the fast unit tests only.
test-short:
	$(GO) test -short -shuffle=on $(PKGS)

## multinode: two gateway nodes sharing real Redis, a Kafka-protocol broker and
## PostgreSQL on loopback, no container engine (see docs/deployment.md).
multinode:
	deploy/multinode/run.sh

## generate: regenerate Go, gRPC, grpc-gateway and OpenAPI code from
## schemas/proto, offline.
generate:
	schemas/generate.sh

## lint: formatting, vet, and generated code that is not stale.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@tmp=$$(mktemp -d) && schemas/generate.sh $$tmp/gen && \
	  if ! diff -r $$tmp/gen schemas/gen >/dev/null; then \
	    echo "schemas/gen is stale: run make generate"; diff -r $$tmp/gen schemas/gen | head -20; rm -rf $$tmp; exit 1; \
	  fi; rm -rf $$tmp; echo "generated code is up to date"

## bench: the load harness against the real binary (throughput and latency of
## the cache-hit path vs a bare net/http server, cache miss, auto-fill, policy,
## audit; bounded: about two minutes) and the Go benchmarks of the hot paths.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./policy/ ./gateway/audit/... ./gateway/auth/ ./gateway/api/ ./gateway/cache/ ./gateway/query/ ./gateway/server/ ./gateway/pbjson/ ./gateway/app/ ./schemas/ident/
	$(GO) run ./cmd/tongban-load --json bench.json

## fuzz: run each fuzz target for FUZZTIME (they also run on their seed
## corpora in make test).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidateCreditCode$$' -fuzztime $(FUZZTIME) ./schemas/ident/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateResidentID$$' -fuzztime $(FUZZTIME) ./schemas/ident/
	$(GO) test -run '^$$' -fuzz '^FuzzParseURI$$' -fuzztime $(FUZZTIME) ./gateway/identity/
	$(GO) test -run '^$$' -fuzz '^FuzzQueryRequest$$' -fuzztime $(FUZZTIME) ./gateway/query/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeQueryRequest$$' -fuzztime $(FUZZTIME) ./gateway/server/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendTimestamp$$' -fuzztime $(FUZZTIME) ./gateway/server/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) ./gateway/pbjson/
	$(GO) test -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME) ./gateway/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) ./gateway/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./schemas/forms/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeValidate$$' -fuzztime $(FUZZTIME) ./gateway/config/

clean:
	rm -rf bin .demo
