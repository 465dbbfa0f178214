# mcpwatch — run `make help` for the targets.
SHELL := bash
.DEFAULT_GOAL := help
GO ?= go
BIN := bin/mcpwatch

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: up
up: ## Install and start Kafka + ClickHouse, run the whole pipeline with demo MCP traffic, print what happened
	@scripts/up.sh

.PHONY: test
test: ## Start the real services, lint, run unit and integration tests with -race, stop the services
	@scripts/test.sh

.PHONY: build
build: ## Build bin/mcpwatch
	$(GO) build -o $(BIN) ./cmd/mcpwatch

.PHONY: generate
generate: ## Regenerate committed generated code (bpf2go output of bpf/ into ingest/ebpf)
	$(GO) generate ./ingest/ebpf/...

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@scripts/lint.sh

.PHONY: bench
bench: ## Run the benchmarks (real services needed for some; see BENCHMARKS.md)
	@scripts/bench.sh

.PHONY: fuzz
fuzz: ## Fuzz the parsers for FUZZTIME each (default 30s)
	@scripts/fuzz.sh

.PHONY: stack-start
stack-start: ## Start the local Kafka and ClickHouse (installing them if missing)
	@deploy/local/stack.sh install && deploy/local/stack.sh start

.PHONY: stack-stop
stack-stop: ## Stop the local Kafka and ClickHouse
	@deploy/local/stack.sh stop

.PHONY: stack-status
stack-status: ## Show the local services
	@deploy/local/stack.sh status

.PHONY: clean
clean: ## Remove build output (keeps .local state; `deploy/local/stack.sh reset` wipes data)
	rm -rf bin
