# changeprop: the two commands are `make run` and `make test`.
# Go 1.27.3 (the go command fetches it through the module proxy on first use):
# Go 1.26.8's standard library has vulnerabilities that reach changeprop's
# code (net/http, crypto/x509, crypto/tls; make vulncheck). Override with
# make GOTOOLCHAIN=...
export GOTOOLCHAIN ?= go1.27.3
GO      ?= go
BIN     ?= bin/changeprop
export CGO_ENABLED = 1

.PHONY: run test build vet bench test-deps docker docker-smoke clean fuzz fuzz-short vulncheck

## run: everything on this machine: embedded Kafka-protocol cluster, simulated job runner, sample rules
run:
	$(GO) run ./cmd/changeprop dev

## test: install what tests need, vet, govulncheck, every test with the race detector, and each
## fuzz target for FUZZTIME_SHORT
test: test-deps vet vulncheck
	$(GO) test -race -count=1 -timeout 14m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

# Fuzz targets, package:name. go test -fuzz takes one target of one package at a time.
FUZZ_TARGETS = rules:FuzzLoad rules:FuzzTemplate rules:FuzzMatch rules:FuzzDecodeJSON rules:FuzzProjectedDecode \
	dispatch:FuzzHandleMessage dispatch:FuzzSetMetaStream dispatch:FuzzReadHead
FUZZTIME_SHORT ?= 3s
FUZZTIME ?= 2m

## fuzz: each fuzz target for FUZZTIME (make fuzz FUZZTIME=30m); a failing input is kept in the
## package's testdata/fuzz, and go test then runs it as a regression test; a run that found nothing
## but hit Go 1.26's fuzztime deadline race is run once more (.ci/fuzz.sh)
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./.ci/fuzz.sh $(FUZZ_TARGETS)

## vulncheck: govulncheck (pinned, through the module proxy) against VULNDB; says NOT RUN when the
## database cannot be reached (VULNCHECK_REQUIRED=1 makes that fail; VULNDB=file:///dir for a copy)
vulncheck:
	@GO=$(GO) ./.ci/vulncheck.sh

## build: the changeprop binary in bin/
build:
	$(GO) build -o $(BIN) ./cmd/changeprop

# -race: vet then type-checks against the race-instrumented dependencies that
# go test -race compiles anyway, so a first make test compiles them once, not
# twice (no file here is built only without the race tag).
vet:
	$(GO) vet -race ./...

## bench: end-to-end benchmarks (kfake, job-runner simulator, loadgen, changeprop, a bare loop in
## processes of their own) and hot-path micro-benchmarks; writes docs/benchmarks.md (under 10 min)
bench: test-deps
	$(GO) build -o bin/ ./cmd/changeprop ./bench/...
	bin/bench -bin bin -out docs/benchmarks.md $(BENCHFLAGS)

# Tests need redis-server (dedupe and limiters) and kcat (an outside Kafka
# client); install what is missing through apt when we are root.
TEST_TOOLS = redis-server:redis-server kcat:kcat
test-deps:
	@missing=""; for t in $(TEST_TOOLS); do \
		command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
		else \
			echo "missing test tools:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; \
		fi; \
	fi

docker:
	docker build -t changeprop:dev .

# The image run as the Helm chart runs it (non-root, read-only root):
# `changeprop dev` inside it, then its entrypoint against a host cluster.
docker-smoke:
	deploy/docker/smoke.sh changeprop:dev

clean:
	rm -rf bin
