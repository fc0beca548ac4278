# changeprop: the two commands are `make run` and `make test`.
GO      ?= go
BIN     ?= bin/changeprop
export CGO_ENABLED = 1

.PHONY: run test build vet bench test-deps docker clean

## run: everything on this machine: embedded Kafka-protocol cluster, simulated job runner, sample rules
run:
	$(GO) run ./cmd/changeprop dev

## test: install what tests need, vet, and run every test with the race detector
test: test-deps vet
	$(GO) test -race -count=1 -timeout 14m ./...

## build: the changeprop binary in bin/
build:
	$(GO) build -o $(BIN) ./cmd/changeprop

vet:
	$(GO) vet ./...

## bench: end-to-end benchmarks (kfake, job-runner simulator, loadgen, changeprop, a bare loop in
## processes of their own) and hot-path micro-benchmarks; writes docs/benchmarks.md (under 10 min)
bench:
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

clean:
	rm -rf bin
