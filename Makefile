# exechealthz: build, test, release. `make help` lists the targets.
#
# Release variables keep the Go original's interface:
#   ARCH      amd64 (default), arm, arm64, ppc64le
#   TAG       image tag (default: the version in Cargo.toml)
#   REGISTRY  where images go (default gcr.io/google_containers)
#   PREFIX    a whole image name instead of REGISTRY/exechealthz-ARCH
#   CONTAINER_TOOL  docker, podman or buildah (default: detected)
#   CROSS     1: build with `cross` in its container images (default: the
#             pinned zig toolchain that scripts/build-static.sh installs)
#   SOURCE    the project's public URL, for the image's source label (default: none)
#   TLS       1: the TLS flavour (https://, grpcs://): bin/ARCH/exechealthz-tls,
#             image REGISTRY/exechealthz-tls-ARCH (default: without TLS)

# Cargo and its output folder, as Cargo itself reads them from the
# environment: every target below uses these, never a fixed target/.
CARGO    ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export CARGO
ARCH     ?= amd64
ALL_ARCH := amd64 arm arm64 ppc64le
TAG      ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
REGISTRY ?= gcr.io/google_containers
TLS      ?=
export TLS
FLAVOUR  := $(if $(filter-out 0 no,$(TLS)),-tls)
IMAGE    := $(if $(PREFIX),$(PREFIX),$(REGISTRY)/exechealthz$(FLAVOUR)-$(ARCH))
LEGACY_IMAGE := $(REGISTRY)/exechealthz
SOURCE   ?=
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
MANIFEST ?= $(LEGACY_IMAGE):$(TAG)
BIN      := $(TARGET_DIR)/release/exechealthz
STATIC   := bin/$(ARCH)/exechealthz$(FLAVOUR)

# OCI platform of each ARCH.
PLATFORM_amd64   := linux/amd64
PLATFORM_arm     := linux/arm/v7
PLATFORM_arm64   := linux/arm64
PLATFORM_ppc64le := linux/ppc64le
PLATFORM := $(PLATFORM_$(ARCH))

# docker only where its daemon answers; then podman; then buildah.
CONTAINER_TOOL ?= $(shell \
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; \
	elif command -v buildah >/dev/null 2>&1; then echo buildah; \
	else echo none; fi)
# buildah without a daemon or fuse: vfs storage and chroot isolation work anywhere.
BUILDAH ?= buildah --storage-driver vfs

export CROSS_CONFIG ?= cross.toml
export CROSS

.PHONY: help build server run test lint fmt bench soak fuzz container push push-legacy \
	all-build all-container all-push manifest version clean release-check

help:
	@echo "make run          build and serve the default probe on :8080 (ARGS='--cmd ...')"
	@echo "make test         formatting, clippy, unit and integration tests"
	@echo "make server       native release binary, copied to ./exechealthz"
	@echo "make build        static binary for ARCH=$(ARCH) in bin/ARCH/exechealthz (TLS=1: exechealthz-tls)"
	@echo "make container    FROM scratch image $(IMAGE):$(TAG) with $(CONTAINER_TOOL)"
	@echo "make push         push it; push-legacy: also as $(LEGACY_IMAGE):$(TAG)"
	@echo "make all-build, all-container, all-push: the same for $(ALL_ARCH)"
	@echo "make manifest     OCI image index $(MANIFEST) of the four images (buildah)"
	@echo "make bench        build the static binary and print its figures"
	@echo "make soak         SECONDS=600: a long mixed load; RSS, threads, descriptors, zombies over time"
	@echo "make fuzz         SECONDS=60: run each fuzz target (cargo-fuzz) that long"
	@echo "make release-check  build every ARCH, run each (qemu), build and run the image"
	@echo "make version      print the version ($(TAG))"
	@echo "make clean        remove build output"

run:
	$(CARGO) build --release --locked
	$(BIN) $(ARGS)

server:
	$(CARGO) build --release --locked
	scripts/install.sh $(BIN) ./exechealthz

build:
	scripts/build-static.sh $(ARCH)

# src/musl.rs is built for musl targets only, so the library is also
# linted and its linked tests run for this machine's musl target, when
# rustup has that target's std (.ci/run adds it).
MUSL_TARGET ?= $(shell uname -m)-unknown-linux-musl
MUSL_STD = $(shell rustup target list --installed 2>/dev/null | grep -x '$(MUSL_TARGET)')
NO_MUSL_STD = no $(MUSL_TARGET) std (rustup target add $(MUSL_TARGET))

# Both flavours: the TLS build runs every test too (and tests/tls.rs).
test: lint
	$(CARGO) test --locked
	$(CARGO) test --locked --features tls
	$(if $(MUSL_STD),$(CARGO) test --locked --lib --target $(MUSL_TARGET) musl::,@echo "test: $(NO_MUSL_STD): src/musl.rs's linked tests not run")

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features tls -- -D warnings
	$(if $(MUSL_STD),$(CARGO) clippy --locked --lib --target $(MUSL_TARGET) -- -D warnings,@echo "lint: $(NO_MUSL_STD): src/musl.rs not linted")

fmt:
	$(CARGO) fmt --all

# Installs nothing unless asked: INSTALL=1 installs wrk with apt-get.
bench:
	@command -v wrk >/dev/null || { \
	  if [ -n "$(INSTALL)" ]; then apt-get update -qq && apt-get install -y -qq wrk; \
	  else echo "make bench needs wrk (Debian: apt-get install wrk, or make bench INSTALL=1)" >&2; exit 1; fi; }
	TLS= scripts/build-static.sh amd64
	TLS=1 scripts/build-static.sh amd64
	TLS= EXAMPLE=bare scripts/build-static.sh amd64
	python3 bench/run.py bin/amd64/exechealthz --bare bin/amd64/bare --tls bin/amd64/exechealthz-tls

SECONDS ?= 600
# Every fuzz target for SECONDS each (default 60); see scripts/fuzz.sh.
fuzz:
	scripts/fuzz.sh $(or $(SECONDS),60)

soak:
	scripts/build-static.sh amd64
	python3 scripts/soak.py bin/amd64/exechealthz $(SECONDS)

container: build
	@test "$(CONTAINER_TOOL)" != none || { echo "no container tool: install docker, podman or buildah" >&2; exit 1; }
	$(if $(filter buildah,$(CONTAINER_TOOL)),$(BUILDAH) bud --isolation chroot,$(CONTAINER_TOOL) build) \
		--platform $(PLATFORM) -f Containerfile.scratch \
		--build-arg BIN=$(STATIC) --build-arg VERSION=$(TAG) --build-arg REVISION=$(REVISION) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		$(if $(SOURCE),--label org.opencontainers.image.source=$(SOURCE)) \
		-t $(IMAGE):$(TAG) .
	@echo "container: $(IMAGE):$(TAG)"

push: container
	$(if $(filter buildah,$(CONTAINER_TOOL)),$(BUILDAH),$(CONTAINER_TOOL)) push $(IMAGE):$(TAG)

push-legacy: container
	$(if $(filter buildah,$(CONTAINER_TOOL)),$(BUILDAH),$(CONTAINER_TOOL)) tag $(IMAGE):$(TAG) $(LEGACY_IMAGE):$(TAG)
	$(if $(filter buildah,$(CONTAINER_TOOL)),$(BUILDAH),$(CONTAINER_TOOL)) push $(LEGACY_IMAGE):$(TAG)

all-build:
	@for arch in $(ALL_ARCH); do $(MAKE) --no-print-directory build ARCH=$$arch || exit 1; done

all-container:
	@for arch in $(ALL_ARCH); do $(MAKE) --no-print-directory container ARCH=$$arch || exit 1; done

# An OCI image index of the four images (buildah manifest; build them with
# CONTAINER_TOOL=buildah first, or let this target do it).
manifest:
	@for arch in $(ALL_ARCH); do $(MAKE) --no-print-directory container ARCH=$$arch CONTAINER_TOOL=buildah || exit 1; done
	-$(BUILDAH) manifest rm $(MANIFEST) >/dev/null 2>&1
	$(BUILDAH) manifest create $(MANIFEST)
	@for arch in $(ALL_ARCH); do \
	  $(BUILDAH) manifest add $(MANIFEST) containers-storage:$(REGISTRY)/exechealthz-$$arch:$(TAG) || exit 1; done
	rm -rf bin/oci
	$(BUILDAH) manifest push --all --format oci $(MANIFEST) oci:bin/oci
	@echo "manifest: $(MANIFEST), OCI image index in bin/oci"

all-push:
	@for arch in $(ALL_ARCH); do $(MAKE) --no-print-directory push ARCH=$$arch || exit 1; done

release-check:
	scripts/release-check.sh

version:
	@echo $(TAG)

clean:
	$(CARGO) clean
	rm -rf bin exechealthz
