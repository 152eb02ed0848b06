# clinicconf: `make serve` runs the server, `make test` runs the whole suite.
# Both start from a fresh clone: they create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# apt needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-dev serve test lint test-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps make the install steps quick when pyproject.toml has not changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

serve: install
	$(BIN)/python -m clinicconf serve

# Debian packages the tests need: chromium for the browser tests (Playwright never
# downloads a browser here), and iproute2's ip to bring up loopback in the tests'
# network namespace (below).
test-packages:
	@[ -x /usr/bin/chromium ] && command -v ip >/dev/null || { $(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install --yes chromium iproute2; }

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs in a network namespace of its own with only loopback up: whatever a
# test starts (Chromium's ICE agent, which also gathers on every other interface,
# included) can reach no address but 127.0.0.1 and ::1. Root makes one directly;
# another user through a user namespace, where the kernel allows it.
NETNS := unshare --net $(if $(SUDO),--map-root-user)

test: install-dev test-packages lint
	$(NETNS) sh -c 'ip link set lo up && exec $(BIN)/pytest'

