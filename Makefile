# reconciler: run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
export GIT_CONFIG_GLOBAL := /dev/null
export GIT_CONFIG_NOSYSTEM := 1

.PHONY: help build deps test test-unit demo tour lint bench interop model soak scale clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# make build stamps the binary with the version and commit it is built from
# (reconciler version); Go's own VCS stamp is missing in git worktrees.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
CLI     := github.com/fleetops/reconciler/cmd/reconciler/cli
LDFLAGS := -X $(CLI).stampedVersion=$(VERSION) -X $(CLI).stampedCommit=$(COMMIT)

build: ## build bin/reconciler (the agent and the CLI, one binary), stamped with the git version and commit
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/reconciler ./cmd/reconciler

deps: ## install what the tests need (Debian packages, when missing), or fail naming it
	./.ci/deps

test: deps ## vet, gofmt, and every test with -race (what CI runs)
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) test -race -timeout 14m ./...

test-unit: ## the fast tier, go test -short (under a minute): no agents, workloads, Erlang nodes or servers
	$(GO) test -short -timeout 5m ./...

demo: ## the README's first command: five agents, a rolling upgrade and a canary rolled back by a commit
	@echo "make demo: building the demo (go build ./examples/demo: on a fresh clone this compiles reconciler's dependencies first, about a minute)"
	@$(GO) build -o $(BIN)/demo ./examples/demo
	@echo "make demo: running $(BIN)/demo (about 30 seconds; go run ./examples/demo -keep keeps its logs and repo)"
	@$(BIN)/demo

tour: ## validate and plan the example fleet repo; see how mistakes are reported
	./examples/spec-tour.sh

lint: ## staticcheck and go mod tidy check
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	$(GO) mod tidy -diff

bench: ## benchmarks (figures, not pass/fail)
	$(GO) test -run '^$$' -bench . -benchmem ./...

interop: ## live interop with a real cosign v2.6.5 (installs it)
	./signing/testdata/interop.sh

model: ## model-check the lease and wave protocol with spin (model/lease.pml, docs/model.md; FAULTS=2 for more)
	./model/check

.PHONY: fuzz
FUZZTIME ?= 1m
fuzz: ## run every native fuzz target for FUZZTIME each (default 1m), one after another (.ci/fuzz, docs/testing.md)
	FUZZTIME=$(FUZZTIME) ./.ci/fuzz

.PHONY: chaos
CHAOS_SEEDS ?= 1-20
chaos: ## chaos runs of real processes: 6 agents under load, kill -9, SIGSTOP, Git restarts, proxy faults (CHAOS_SEEDS=1-20; docs/testing.md)
	@mkdir -p $(BIN); echo "make chaos: seeds $(CHAOS_SEEDS), about 45s each; the full log goes to $(BIN)/chaos.log"
	@set -o pipefail; CHAOS_SEEDS=$(CHAOS_SEEDS) $(GO) test -race -count=1 -timeout 60m -run '^TestChaos$$' -v ./e2e/ 2>&1 | \
	  tee $(BIN)/chaos.log | grep -E '^\s*--- |^(ok|FAIL|PASS)|RESULT|schedule:'

SEEDS ?= 20000
soak: ## the fleet simulation (internal/fleetsim) over SEEDS seeds (default 20000), a summary by invariant in bin/soak.txt (docs/testing.md)
	@mkdir -p $(BIN)
	set -o pipefail; FLEETSIM_SOAK_REPORT=$(CURDIR)/$(BIN)/soak.txt $(GO) test -timeout 0 -run '^TestSoak$$' ./internal/fleetsim -soak=$(SEEDS) -v 2>&1 | grep -v '^=== RUN' | tail -60

.PHONY: scale
# One quoted run each: flags of bin/reconciler-scale (docs/scale.md). The
# default is what completes on 2 cores (about 5 minutes); the issue's other
# targets (SCALE_RUNS='"-nodes 1000 -wave 100" "-nodes 10000 -wave 1000 -store etcd"')
# do not yet, and docs/scale.md says where and why.
SCALE_RUNS ?= "-nodes 100 -wave 10 -store git -webhook 1" "-nodes 100 -wave 10 -store etcd -webhook 1" "-nodes 1000 -wave 100 -store etcd -git-cache -webhook 1"
scale: ## the scale harness: simulated nodes with real agents on Git and etcd (SCALE_RUNS; figures in bin/scale.txt; fails on a broken invariant)
	@mkdir -p $(BIN); $(GO) build -o $(BIN)/reconciler-scale ./cmd/reconciler-scale
	@ulimit -n $$(ulimit -Hn); : > $(BIN)/scale.txt; set -o pipefail; failed=0; \
	  for run in $(SCALE_RUNS); do echo "make scale: reconciler-scale $$run" | tee -a $(BIN)/scale.txt; \
	    $(BIN)/reconciler-scale $$run 2>&1 | tee -a $(BIN)/scale.txt || failed=1; done; exit $$failed

.PHONY: dist
dist: ## release binaries for linux/amd64 and linux/arm64 in dist/ (DIST_PLATFORMS, DIST_DIR), version stamped, SHA256SUMS, each signed with DIST_KEY (reconciler sign)
	VERSION='$(VERSION)' LDFLAGS='$(LDFLAGS)' GO='$(GO)' ./.ci/dist

clean: ## remove build outputs
	rm -rf $(BIN) dist
