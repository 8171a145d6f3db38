# lanyard — the two set-up commands are `make run` and `make test`.
# Everything the tests need (openssl, Debian's chromium, the pinned
# aws_signing_helper, softhsm2 for the PKCS#11 CA key) is installed or built
# by the `deps` target.

GO        ?= go
BIN       := bin
LANYARD   := $(BIN)/lanyard
HELPER    := $(BIN)/aws_signing_helper
GOFLAGS   ?=
export LANYARD_SIGNING_HELPER := $(abspath $(HELPER))
# This machine exports AWS_CA_BUNDLE, which makes aws_signing_helper v1.5
# exit before it sends anything; tests that run the helper unset it.

.PHONY: all build run test test-quick test-crash fuzz soak bench generate lint deps clean

all: build

build:
	$(GO) build -o $(LANYARD) ./cmd/lanyard
	$(GO) build -o $(BIN)/lanyard-agent ./cmd/lanyard-agent

# The pinned, real aws_signing_helper (v1.5.0; cgo), from its own module so
# its dependency versions never mix with lanyard's.
$(HELPER): tools/signinghelper/go.mod tools/signinghelper/go.sum
	cd tools/signinghelper && CGO_ENABLED=1 $(GO) build -o ../../$(HELPER) github.com/aws/rolesanywhere-credential-helper

# System packages the tests use, installed only when missing.
deps: $(HELPER)
	@command -v openssl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@command -v softhsm2-util >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2; }

# Start the CA in development mode: ./.lanyard is created on first run
# (CA, store, config, and the in-process Roles Anywhere emulator).
run: build
	./$(LANYARD) serve --dev

# Every test, then every test again under the race detector (the soak
# and footprint tests measure themselves less under -race; see their
# docs), the fuzz seed corpora (run as plain tests), the short
# crash-safety cycle (3 SIGKILLs), gofmt, go vet and staticcheck.
test: deps lint
	$(GO) test $(GOFLAGS) -count=1 -timeout 15m ./...
	$(GO) test $(GOFLAGS) -count=1 -race -timeout 15m ./...

# The quick loop while editing: every test with -short, which skips the
# soak, crash-safety, footprint and headless-browser tests, without the
# race pass. `make test` stays the CI command.
test-quick:
	$(GO) test $(GOFLAGS) -count=1 -short -timeout 15m ./...

# The long crash-safety run: 20 SIGKILL cycles (make test runs 3).
test-crash:
	LANYARD_CRASH_CYCLES=20 $(GO) test -count=1 -v -run TestCrashSafety -timeout 20m ./crashtest/

# Every fuzz target in the repository, one after another (the fuzzer
# uses every core), FUZZTIME each: make fuzz FUZZTIME=10m. Targets are
# discovered per package with go test -list; findings land in the
# package's testdata/fuzz and fail the run.
FUZZTIME ?= 1m
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test $(GOFLAGS) -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The chaos soak of the HA loop for SOAK (make test runs its 10 s short
# form): two `lanyard serve` replicas on one PostgreSQL, enroll and renewal
# traffic, revocations, leader SIGKILLs and PostgreSQL restarts at random;
# the totals are its last line.
SOAK ?= 10m
soak: deps
	LANYARD_SOAK=$(SOAK) $(GO) test $(GOFLAGS) -count=1 -v -run '^TestChaosSoak$$' -timeout 3h ./internal/replicas/

# One report: issuance c=1/16/64 (+strict lint), renewals over fresh mTLS,
# enroll on PostgreSQL (1 and 2 replicas), leaf signing with a PKCS#11 key,
# CRL 100k, 1M-record search, agent idle RSS -> bench/RESULTS.md.
# Quote it with ../shared/tools/stepca-bench/run.sh run in the same session:
#   make bench STEPCA=/tmp/stepca-summary.txt
bench: deps build
	$(GO) run ./bench/report -lanyard $(LANYARD) -runs $(or $(RUNS),5) $(if $(STEPCA),-stepca $(STEPCA))

generate:
	$(GO) tool -modfile=tools/proto/go.mod buf generate

# gofmt, go vet, staticcheck, a tidy go.mod, and generated code that is
# what `make generate` writes (generated into a temporary folder and
# compared, so lint changes nothing).
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) tool -modfile=tools/lint/go.mod staticcheck ./...
	$(GO) mod tidy -diff
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(GO) tool -modfile=tools/proto/go.mod buf generate -o "$$tmp" && \
	for f in $$(cd "$$tmp" && find . -type f); do \
		cmp -s "$$tmp/$$f" "$$f" || { echo "$$f differs from what make generate writes: run make generate and commit"; exit 1; }; \
	done

clean:
	rm -rf $(BIN)
