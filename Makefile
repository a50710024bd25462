# goagent — build, test, demo, bench.
# Every target installs what it needs on a fresh Debian machine (idempotent).

GO        ?= go
BIN       := bin/goagent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 2000x
APT       := $(shell command -v apt-get 2>/dev/null)
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test test-short fuzz demo bench fmt vet deps tools clean

all: build

# Debian packages the tests use: git (+ http-backend) for checkout tests,
# openssl to cross-check the crypto, bash/coreutils for script steps.
deps:
	@missing=""; for c in git openssl bash; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$(APT)" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (install them with your package manager)"; exit 1; fi; \
	fi

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/goagent

# The README's test command: vet, then every test with the race detector,
# then each fuzz target for a few seconds.
test: deps browser-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	cd deploy && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

test-short:
	$(GO) test -short -count=1 ./...

# Run every Fuzz target briefly (longer on demand: make fuzz FUZZTIME=5m).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg >/dev/null || { $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; exit 1; }; \
	  done; \
	done

demo: deps build
	./$(BIN) exec testdata/pipelines/hello.yml

bench: deps build
	$(GO) run ./internal/bench/cmd/bench -binary $(BIN) -out BENCHMARKS.md

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf bin

# Headless Chromium for the web UI's browser test (internal/webui), from
# Debian's package: never a browser download. A machine where it cannot be
# installed still tests everything else; the browser test then skips and says
# why.
browser-deps:
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ -n "$(APT)" ]; then \
	  echo "installing: chromium (for the web UI browser test)"; \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; } \
	    || echo "chromium could not be installed: the web UI browser test will skip"; \
	else echo "no apt-get: install chromium with your package manager, or the web UI browser test will skip"; fi

.PHONY: browser-deps
