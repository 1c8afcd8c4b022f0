# peapod: see README.md. Targets install what they need on Debian 12 (as root).
SHELL := /bin/bash
GO ?= go
BIN := bin/peapod
KUBE_VERSION := v1.32.13
LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION)+peapod \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=32 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION)+peapod \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=32
TEST_TIMEOUT ?= 40m
# A count, not a duration: with a duration, Go's fuzzing coordinator can report
# its own deadline as a failure ("context deadline exceeded", no failing input)
# when the time runs out on a loaded machine; a count has no deadline to race.
FUZZTIME ?= 2000x

.PHONY: all build up test test-unit test-e2e fuzz bench lint deps clean generate check-generated

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/peapod

# deps installs the system packages the tests use when missing (hack/deb-packages.txt;
# kubectl v1.32 is expected at /usr/bin/kubectl: the real binary drives the e2e tests).
deps:
	./hack/install-deps.sh

up: build deps
	mkdir -p /var/lib/peapod
	./hack/busybox-image.sh bin/busybox.tar
	./$(BIN) image load bin/busybox.tar
	@echo "admin kubeconfig: /var/lib/peapod/admin.kubeconfig  (try: $(BIN) kubectl get ns)"
	./$(BIN) server

# test runs the fuzz targets briefly, then unit, integration and end-to-end tests.
test: check-generated build deps fuzz
	PEAPOD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# generate regenerates internal/apiserver/openapi (OpenAPI definitions of the served
# types only) with k8s.io/kube-openapi's openapi-gen; see hack/update-openapi.sh.
generate:
	./hack/update-openapi.sh

# check-generated regenerates into a temporary directory and fails when the checked-in
# internal/apiserver/openapi/zz_generated.openapi.go differs (run `make generate`).
check-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	./hack/update-openapi.sh "$$tmp" || exit 1; \
	if ! diff -u internal/apiserver/openapi/zz_generated.openapi.go "$$tmp/zz_generated.openapi.go" >"$$tmp/diff"; then \
		head -n 60 "$$tmp/diff"; echo "internal/apiserver/openapi is stale: run make generate"; exit 1; \
	fi

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeObject -fuzztime $(FUZZTIME) ./internal/apiserver/
	$(GO) test -run '^$$' -fuzz FuzzPatch -fuzztime $(FUZZTIME) ./internal/apiserver/

# bench measures peapod and, in the same run, upstream kube-apiserver over Debian's etcd
# (API), then a peapod node's pods and, as the peer, podman's (`podman kube play`).
bench: build deps
	@dpkg-query -W -f='$${Status}' etcd-server 2>/dev/null | grep -q 'install ok installed' || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
	@dpkg-query -W -f='$${Status}' podman 2>/dev/null | grep -q 'install ok installed' || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >/dev/null; }
	./$(BIN) bench api
	./hack/bench-upstream.sh
	./hack/bench-pods.sh

lint:
	$(GO) vet ./...
	GOSUMDB=off GOFLAGS=-mod=mod $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin
