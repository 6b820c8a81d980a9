# Two commands on a fresh machine:  make demo   and   make test
# `inspectd` itself lives in the venv: `. .venv/bin/activate` puts it on the PATH
# (or call .venv/bin/inspectd).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := out/demo
PICS := out/pictures
REAL ?= ../shared/data/real
REAL_PICTURE := 15-22-01__NULL_1_1_sangdun-battery_separator_shadow_interference

.PHONY: core setup sysdeps gi-link gi-build demo test pictures clean

# The daemon's lean core (what a station runs): no torch, no Harvesters, no test tools.
core: $(VENV)/.core

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

# Everything the tests use: core + test, train (torch 2.13.0 CPU), genicam, bench extras.
setup: $(VENV)/.installed

$(VENV)/.installed: $(VENV)/.core
	$(BIN)/python -m pip install -q -e '.[test,train,genicam,bench,gpu]'
	touch $@

demo: core
	$(BIN)/inspectd simulate $(DEMO)/frames --count 8 --seed 1 --size 2048 --bit-depth 12
	$(BIN)/inspectd replay $(DEMO)/frames --out $(DEMO)/verdicts.jsonl --overlays $(DEMO)/overlays
	@echo "first verdict:"; head -n 1 $(DEMO)/verdicts.jsonl
	@echo "overlays: $(DEMO)/overlays/   (inspectd is in $(BIN): . $(BIN)/activate puts it on the PATH)"

# The README's pictures from the shipped model and today's code: a real frame through the
# whole pipeline, and the first NG cell of the demo's simulated frames with ground-truth tips.
pictures: core
	rm -rf $(PICS) && mkdir -p $(PICS)/real
	ln -s "$(abspath $(REAL))/images/$(REAL_PICTURE).JPG" $(PICS)/real/
	$(BIN)/inspectd replay $(PICS)/real --overlays $(PICS)/real-overlays
	cp $(PICS)/real-overlays/$(REAL_PICTURE).jpg docs/overlay_real.jpg
	$(BIN)/inspectd simulate $(PICS)/sim --count 8 --seed 1 --size 2048 --bit-depth 12
	$(BIN)/inspectd replay $(PICS)/sim --tips labels --out $(PICS)/sim.jsonl --overlays $(PICS)/sim-overlays
	first_ng=$$($(BIN)/python -c 'import json,sys; print(next(v["frame_id"] for v in map(json.loads, open(sys.argv[1])) if v["result"] == "NG"))' $(PICS)/sim.jsonl); \
	  cp $(PICS)/sim-overlays/$$first_ng.jpg docs/overlay_example.jpg && echo "docs/overlay_example.jpg: $$first_ng"

# System packages the tests use: systemd-analyze (unit verification); GStreamer
# and its Python bindings (gst: source, preview sink, recordings; docs/acquisition.md).
# Installed only when missing; then the venv is given the system `gi` package (gi-link).
GST_DEBS := python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base \
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
sysdeps: setup
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing Debian packages: systemd"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
	@missing=$$(for p in $(GST_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(MAKE) --no-print-directory gi-link

# The venv sees Debian's PyGObject (python3-gi) through a symlink in its site-packages
# (--system-site-packages would pull in every Debian module). The C extension is built
# for /usr/bin/python3; it loads in the venv only if both are the same minor version
# (Debian 12: 3.11, the venv: 3.11). Otherwise PyGObject is built from pip against
# Debian's libgirepository1.0-dev instead (gi-build).
SYS_PY := /usr/bin/python3
GI_CHECK := import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstApp", "1.0"); from gi.repository import Gst, GstApp
gi-link: setup
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	if $(BIN)/python -c '$(GI_CHECK)' 2>/dev/null; then exit 0; fi; \
	venv_v=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	sys_v=$$($(SYS_PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	sys_gi=$$($(SYS_PY) -c 'import gi, os; print(os.path.dirname(gi.__file__))' 2>/dev/null); \
	if [ "$$venv_v" = "$$sys_v" ] && [ -n "$$sys_gi" ]; then \
	  ln -sfn "$$sys_gi" "$$site/gi" && echo "linked $$sys_gi into $$site (python $$venv_v)"; \
	  $(BIN)/python -c '$(GI_CHECK)' && exit 0; \
	  echo "the system gi does not load in the venv; building PyGObject instead"; rm -f "$$site/gi"; \
	else \
	  echo "system python $$sys_v != venv python $$venv_v: building PyGObject for the venv"; \
	fi; \
	$(MAKE) --no-print-directory gi-build

gi-build:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  libgirepository1.0-dev libcairo2-dev pkg-config gcc >/dev/null
	$(BIN)/python -m pip install -q 'PyGObject>=3.42,<3.50'
	$(BIN)/python -c '$(GI_CHECK)'

test: setup sysdeps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
