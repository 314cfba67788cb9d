# exechealthz: build, run, test. `make help` lists the targets.

CARGO ?= cargo
BIN   := target/release/exechealthz

.PHONY: help build server run test lint fmt bench clean

help:
	@echo "make build   release binary for this machine: $(BIN)"
	@echo "make server  same as build, and copies it to ./exechealthz (the seed's 'make server')"
	@echo "make run     run it with the default command on :8080 (ARGS='--cmd ...' to change)"
	@echo "make test    formatting, clippy, unit and integration tests"
	@echo "make bench   build the release binary and print its figures"
	@echo "make clean   remove build output"

build:
	$(CARGO) build --release --locked

server: build
	cp $(BIN) ./exechealthz

run: build
	$(BIN) $(ARGS)

test: lint
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: build
	python3 bench/run.py $(BIN)

clean:
	$(CARGO) clean
	rm -rf bin exechealthz
