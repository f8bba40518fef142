# The two quick-start commands: `make run` and `make test`. Both create .venv when it is missing and
# install exactly what requirements.lock names, each file checked against its hash.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: run test bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary :all: -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Refresh requirements.lock: the newest releases pyproject.toml allows, with the hashes of their files.
lock:
	$(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/python -m pip install --quiet pip-tools
	var/lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --all-build-deps --strip-extras \
		--extra test --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) var build *.egg-info
