# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := out/demo

.PHONY: setup sysdeps gi-link gi-build demo test clean

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
