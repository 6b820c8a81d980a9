# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := out/demo

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/inspectd simulate $(DEMO)/frames --count 8 --seed 1 --size 2048 --bit-depth 12
	$(BIN)/inspectd replay $(DEMO)/frames --out $(DEMO)/verdicts.jsonl --overlays $(DEMO)/overlays
	@echo "first verdict:"; head -n 1 $(DEMO)/verdicts.jsonl

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
