# Developer entry points; CI runs .ci/run, which `make ci` runs too.

GO ?= go

.PHONY: all test lint ci bench demo

all: lint test

test:
	$(GO) test -race ./...

# gofmt, go vet and the pinned staticcheck, exactly as CI runs them.
lint:
	bash .ci/run lint

ci:
	bash .ci/run

bench:
	$(GO) run ./cmd/ferry bench

demo:
	$(GO) run ./cmd/ferry demo
