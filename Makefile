# completiond: two commands for a newcomer: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
REPO   ?= .
PROTO_SRC := protos/completiond/v1/completion.proto
PROTO_OUT := protos/completiond/v1

.PHONY: install serve test check lint layers protos protos-check bench clean

# The venv is rebuilt when pyproject.toml changes; the package is installed editable.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## serve: install, train a first model on REPO (default: this repository) if it has none, serve.
serve: install
	$(BIN)/completiond serve --repo $(REPO)

## test: install and run the whole test suite.
test: install
	$(BIN)/python -m pytest -q

## check: lint, the generated-code check, and the tests.
check: install lint protos-check test

lint: install layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layers contract (.importlinter). import-linter walks a package's own folder, while ours
# is spread over the layers' top-level folders: check a copy laid out as it is installed.
LAYER_DIRS := core completion training daemon evaluation clients
layers: install
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/completiond/v1 && \
	cp protos/completiond/*.py $$tmp/completiond/ && cp protos/completiond/v1/*.py $$tmp/completiond/v1/ && \
	for d in $(LAYER_DIRS); do mkdir $$tmp/completiond/$$d && cp $$d/*.py $$tmp/completiond/$$d/; done && \
	(cd $$tmp && PYTHONPATH=$$tmp $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/.importlinter --no-cache); \
	status=$$?; rm -rf $$tmp; exit $$status

## protos: regenerate the committed gRPC code from $(PROTO_SRC).
protos: install
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos $(PROTO_SRC)

## protos-check: fail when the committed generated code differs from a fresh generation.
protos-check: install
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp $(PROTO_SRC) && \
	diff -r -x __init__.py -x '*.proto' -x __pycache__ $$tmp/completiond/v1 $(PROTO_OUT) \
		&& echo "generated code is up to date" && rm -rf $$tmp

## bench: every benchmark (about 50 minutes; each prints Markdown tables).
bench: install
	$(BIN)/python bench/bpc.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/retrain.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/calibrate.py
	$(BIN)/python bench/retrieval_rules.py --set "shared_below=0" "shape_lines=0"
	$(BIN)/python bench/secrets_corpus.py
	$(BIN)/python bench/index_freshness.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
