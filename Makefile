# reconciler: run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
export GIT_CONFIG_GLOBAL := /dev/null
export GIT_CONFIG_NOSYSTEM := 1

.PHONY: help build deps test test-unit demo tour lint bench interop model clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/reconciler and the example workload
	$(GO) build -o $(BIN)/reconciler ./cmd/reconciler

deps: ## install what the tests need (Debian packages, when missing), or fail naming it
	./.ci/deps

test: deps ## vet, gofmt, and every test with -race (what CI runs)
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) test -race -timeout 14m ./...

demo: ## the README's first command: five agents, a rolling upgrade and a canary rolled back by a commit
	$(GO) run ./examples/demo

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

clean: ## remove build outputs
	rm -rf $(BIN)
