# churnwatch — run `make help` for the targets.
SHELL := /bin/bash
MODULES := proto/gen/go services/platform services/ingester services/rules services/alerts services/churnctl services/console
export PATH := $(CURDIR)/.tools/bin:$(PATH)
GOTEST_FLAGS ?= -count=1 -timeout 25m
FUZZTIME ?= 30000x
# make demo keeps the stack and the console running after the summary.
DEMO_FLAGS ?= --serve --dir .dev

.PHONY: help build demo dev kafka kafka-stop test test-go test-console console-screenshots test-cluster fuzz bench chaos lint proto setup tools clean console

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/ingester bin/rules bin/alerts bin/console bin/churnwatch bin/churnctl
	@mkdir -p bin
	go build -o bin/ingester ./services/ingester/cmd/ingester
	go build -o bin/rules ./services/rules/cmd/rules
	go build -o bin/alerts ./services/alerts/cmd/alerts
	go build -o bin/console ./services/console/cmd/console
	go build -o bin/churnwatch ./services/churnctl/cmd/churnwatch
	go build -o bin/churnctl ./services/churnctl/cmd/churnctl

demo: ## the main job: a simulated bank streamed through (alerts live, a summary), then the console until Ctrl-C (DEMO_FLAGS= to exit at once)
	@scripts/setup.sh --no-tools --no-console
	@$(MAKE) --no-print-directory build
	bin/churnwatch demo $(DEMO_FLAGS)

dev: build ## run the dev stack (all services, embedded broker and Redis); writes .dev/dev.env
	bin/churnwatch dev --dir .dev

kafka: ## real Apache Kafka, 3 KRaft nodes on loopback in .kafka (KAFKA_VERSION, BROKERS=1|3, KAFKA_PORT); writes .kafka/kafka.env
	scripts/setup.sh --no-tools --no-console
	scripts/kafka.sh start --dir .kafka --brokers $(or $(BROKERS),3) --base-port $(or $(KAFKA_PORT),19092)

kafka-stop: ## stop the cluster `make kafka` started
	scripts/kafka.sh stop --dir .kafka

setup: ## install redis-server, kcat, docker-compose, promtool, the pinned Go tools, Kafka's jars, chromium and the console's npm packages
	scripts/setup.sh

test: setup ## install what tests need, then lint, every test, short fuzz runs and deploy checks
	@$(MAKE) --no-print-directory lint test-go test-console fuzz
	scripts/check-deploy.sh

test-go:
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test $(GOTEST_FLAGS) ./...); done

console: setup ## rebuild the console web app: npm ci, TS clients from proto/ (buf), vite build into services/console/web/dist (committed)
	cd services/console/web && npm ci --no-audit --no-fund && npm run build

console-screenshots: setup ## re-take the console's screenshots in docs/console/ (the browser tests with UPDATE_SCREENSHOTS=1; commit the PNGs)
	cd services/console/web && UPDATE_SCREENSHOTS=1 npx playwright test

test-console: setup ## the console's unit tests (vitest) and browser tests (Playwright, headless Debian chromium, against a real churnwatch dev)
	cd services/console/web && npx vitest run && npx playwright test

test-cluster: ## the Redis-backed tests again on a local three-master Redis Cluster (CROSSSLOT fails them)
	@set -e; for m in services/platform services/ingester services/rules services/alerts; do echo "== cluster: go test $$m"; (cd $$m && CHURNWATCH_TEST_REDIS=cluster go test $(GOTEST_FLAGS) ./...); done

fuzz: ## short fuzz runs of every decoder of outside input (FUZZTIME=30000x executions each)
	scripts/fuzz.sh $(FUZZTIME)

bench: setup ## performance report (one JSON object) and the Go benchmarks (BENCH_KAFKA=real: on a three-node Apache Kafka)
	scripts/bench.sh

chaos: ## fault run (SPEC §8 no loss): kill -9 of service instances, a broker and Redis on real Kafka; one JSON report (CHAOS_FLAGS="--kafka embedded" without scripts/kafka.sh)
	@scripts/setup.sh --no-tools --no-console
	@$(MAKE) --no-print-directory build
	bin/churnwatch chaos $(CHAOS_FLAGS)

lint: setup ## gofmt, go vet, buf lint, staticcheck on every module
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt: files above need formatting"; exit 1; }
	@set -e; for m in $(MODULES); do echo "== vet+staticcheck $$m"; (cd $$m && go vet ./... && staticcheck ./...); done
	cd proto && buf lint

proto: setup ## regenerate proto/gen/go and the descriptor set proto/churnwatch.binpb from proto/churnwatch/v1
	rm -rf proto/gen/go/churnwatch
	cd proto && buf lint && buf generate && buf build --as-file-descriptor-set -o gen/go/descriptorset/churnwatch.binpb

clean: ## remove build output, the dev directory and a stopped .kafka cluster
	@[ ! -f .kafka/cluster.conf ] || scripts/kafka.sh stop --dir .kafka
	rm -rf bin .dev .kafka
