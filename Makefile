# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := out/demo

.PHONY: setup sysdeps demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,train,genicam,bench]'
	touch $@

demo: setup
	$(BIN)/inspectd simulate $(DEMO)/frames --count 8 --seed 1 --size 2048 --bit-depth 12
	$(BIN)/inspectd replay $(DEMO)/frames --out $(DEMO)/verdicts.jsonl --overlays $(DEMO)/overlays
	@echo "first verdict:"; head -n 1 $(DEMO)/verdicts.jsonl

# System packages the tests use: systemd-analyze (unit verification).
sysdeps:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing Debian packages: systemd"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }

test: setup sysdeps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
