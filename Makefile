# sdevents — see README.md. Every target runs from a fresh clone.
SHELL := /bin/bash
GO ?= go
MODULES := pkg streams services/ingress services/quota services/archiver services/aggregator services/console services/simulator cmd/sdevents e2e deploy bench
TOOLS := $(CURDIR)/.tools/bin
STATICCHECK_VERSION := v0.8.2
CONFIG ?= sdevents.example.yaml
# Stamped into bin/sdevents (`sdevents version`, the first log line, sdevents_build_info);
# empty outside a git checkout, where the binary falls back to its Go build information.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(BUILD_DATE)

.PHONY: build run demo soak test test-short test-stack lint tidy-check tidy bench tools clean

build: ## bin/sdevents
	cd cmd/sdevents && $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(CURDIR)/bin/sdevents .

run: build ## sdevents run with the example configuration
	./bin/sdevents run --config $(CONFIG)

demo: build ## sdevents run plus the simulator for about 30 s, then the summary
	bash scripts/demo.sh

soak: build tools ## end-to-end soak with killed processes (see docs/simulator.md)
	bash scripts/soak.sh

tools: ## test dependencies: MinIO server (cached under .tools/), Debian's chromium
	bash scripts/install-minio.sh
	bash scripts/install-chromium.sh

test: tools ## every test of every module, with the race detector
	@set -e; for m in $(MODULES); do \
		echo "=== $$m"; \
		(cd $$m && SDTEST_MINIO_BIN=$(TOOLS)/minio $(GO) test -race -shuffle=on -timeout 20m ./...); \
	done

test-stack: ## compose.yaml started for real (Podman, offline images), the simulator while containers are killed (docs/operations.md)
	bash scripts/test-stack.sh

test-short: ## quick tests without the race detector
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -short ./...); done

lint: ## go vet + staticcheck (pinned)
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(TOOLS)/staticcheck ./...); done

tidy: ## go mod tidy in every module
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy); done

tidy-check: ## fails when a module's go.mod or go.sum is not tidy (outside the workspace)
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy -diff) || { echo "$$m is not tidy: run make tidy"; exit 1; }; done

bench: ## benchmarks against their floors; results in docs/benchmarks.md
	cd bench && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

clean:
	rm -rf bin data
