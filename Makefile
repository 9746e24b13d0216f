# tus-minio: `make run` serves the app (and MinIO), `make test` runs the whole suite.
# Every target installs what is missing first: a virtualenv, MinIO (built from source with
# `go install`, pinned below), and the npm packages (Uppy for the page); `make test` also
# SeaweedFS (built from source, pinned below), the second S3 server of the suite.

# MinIO's community edition ships as source; this is the module version we build and test.
MINIO_MODULE  := github.com/minio/minio
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
# The reference tus server `make bench` measures next to ours (its S3 store, same MinIO).
TUSD_MODULE   := github.com/tus/tusd/v2/cmd/tusd
TUSD_VERSION  := v2.9.1
# The second S3 server the storage-level tests run against (tests/seaweed_process.py).
SEAWEEDFS_MODULE  := github.com/seaweedfs/seaweedfs
SEAWEEDFS_VERSION := v0.0.0-20261109003541-7506e5f91cd6

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TOOLS  := $(CURDIR)/.tools/bin

HOST             ?= 127.0.0.1
PORT             ?= 5000
MINIO_ENDPOINT   ?= 127.0.0.1:9000
MINIO_ACCESS_KEY ?= minioadmin
MINIO_SECRET_KEY ?= minioadmin
MINIO_DATA       ?= $(CURDIR)/data/minio
WORKERS          ?= 2
# THREADS: TUS_WORKER=gthread only (the default gevent worker has no threads to size).
THREADS          ?= 128
export HOST PORT MINIO_ENDPOINT MINIO_ACCESS_KEY MINIO_SECRET_KEY MINIO_DATA WORKERS THREADS

# A `minio` (`weed`) on PATH is used as it is; otherwise the pinned build in .tools/bin.
MINIO_BIN ?= $(or $(shell command -v minio 2>/dev/null),$(TOOLS)/minio)
WEED_BIN  ?= $(or $(shell command -v weed 2>/dev/null),$(TOOLS)/weed)
export MINIO_BIN WEED_BIN

.PHONY: setup run minio cluster nginx test chromium bench dist clean

setup: $(VENV)/.installed $(MINIO_BIN) node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(TOOLS)/minio:
	@echo "building MinIO $(MINIO_VERSION) from source (a few minutes, once)"
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-trimpath go install $(MINIO_MODULE)@$(MINIO_VERSION)

# SeaweedFS's `weed` for the storage tests. `go install` refuses this module (its go.mod has
# replace directives), so it is built inside a writable copy of the module `go mod download`
# fetched. 6-10 minutes cold, once; a `weed` put into .tools/bin by hand is used as is.
$(TOOLS)/weed:
	@echo "building SeaweedFS $(SEAWEEDFS_VERSION) from source (about 10 minutes, once)"
	mkdir -p $(TOOLS)
	set -e; \
	dir=$$(go mod download -json $(SEAWEEDFS_MODULE)@$(SEAWEEDFS_VERSION) \
	       | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir"; \
	work=$$(mktemp -d); trap 'chmod -R u+w "$$work"; rm -rf "$$work"' EXIT; \
	cp -R "$$dir/." "$$work"; chmod -R u+w "$$work"; \
	cd "$$work" && GOFLAGS="-trimpath -buildvcs=false" go build -o $@.tmp ./weed; \
	mv $@.tmp $@

# tusd for `make bench`, built once like MinIO (a `tusd` symlinked into .tools/bin is used as is).
$(TOOLS)/tusd:
	@echo "building tusd $(TUSD_VERSION) from source (a minute or two, once)"
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-trimpath go install $(TUSD_MODULE)@$(TUSD_VERSION)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	./scripts/run.sh

minio: $(MINIO_BIN)
	./scripts/minio.sh

# The scale-out deployment on one machine, to try it: 4 MinIO nodes (EC:2) and $(INSTANCES)
# instances, each pool behind nginx (deploy/README.md). Debian's nginx is installed if missing.
INSTANCES ?= 2
export INSTANCES
cluster: setup nginx
	./deploy/cluster.sh

nginx:
	./scripts/ensure-nginx.sh

# The browser tests are part of every run: Chromium is installed first when it can be (or the
# run stops with the command to install it), and a missing browser fails the tests, never skips.
TUS_REQUIRE_BROWSER ?= 1
export TUS_REQUIRE_BROWSER

test: setup chromium nginx $(WEED_BIN)
	$(PY) -m pytest $(PYTEST_ARGS)

chromium:
	./scripts/ensure-chromium.sh

# tus-minio vs. tusd vs. MinIO direct; BENCH_ARGS="--scale 0.05" for a quick run,
# "--profile" for py-spy summaries in bench-results/.
bench: setup $(TOOLS)/tusd
	TUSD_BIN=$(TOOLS)/tusd $(PY) -m bench.bench $(BENCH_ARGS)

# The sdist and the wheel (the whole server, Uppy's files included) in dist/.
dist: setup
	$(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
