# ray-ingest: `make demo` and `make test` set everything up on a fresh machine (Python 3.10+ and make).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Extras for CPU machines and tests; the constraints pin the versions our wheel cache holds.
# bench-dali: NVIDIA DALI for the interoperability tests and `bench --peers` (~1.7 min more).
EXTRAS ?= tf,torch,test,bench-dali
DEMO_DIR ?= demo-data

.PHONY: all install demo test test-fast bench proto clean

all: test

# setup.py builds the fused JPEG crop decoder (a C extension on the system's libjpeg-turbo;
# optional: without gcc or the libjpeg headers the install goes on and crops decode slower).
$(STAMP): pyproject.toml setup.py constraints.txt ray_ingest/read/_jpegcrop.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ray-ingest demo --workdir $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/convert_bench.py --json benchmarks/convert_bench.json

# Regenerates ray_ingest/format/proto/example_pb2.py (see the header of example.proto).
proto:
	@test -x .proto-venv/bin/python || $(PYTHON) -m venv .proto-venv
	.proto-venv/bin/pip install -q grpcio-tools==1.62.3
	.proto-venv/bin/python -m grpc_tools.protoc -I. --python_out=. ray_ingest/format/proto/example.proto

clean:
	rm -rf $(VENV) .proto-venv $(DEMO_DIR) .pytest_cache
