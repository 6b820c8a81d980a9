"""The package structure holds: one room per concern, arrows one way, a torch-free daemon.

Read from the source (every import statement, at module top or inside a
function), so a lazy import cannot hide a wrong-way arrow. The layer order is
the one README.md and docs/architecture.md draw.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "inspectd"

# Higher layers may import lower ones, never the reverse. Packages on one line are peers
# that must not import each other either unless listed in ALLOWED_SIDEWAYS.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"bench"},
    {"training"},
    {"labelling"},
    {"evaluation"},
    {"pipeline"},
    {"inspection"},
    {"tips"},
    {"publish"},
    {"sources"},
    {"sim"},
    {"imaging"},
    {"frames"},
    {"config", "verdict", "observability", "forking", "osthread"},
    {"backends"},  # below config: the station file's [engine] table is the backends' own configs
    {"nets"},
]
ALLOWED_SIDEWAYS: set[tuple[str, str]] = set()

# Rooms that must stay out of each other whatever the layer order says.
FORBIDDEN = {
    ("publish", "inspection"),
    ("publish", "tips"),
    ("sources", "inspection"),
    ("sources", "tips"),
    ("backends", "training"),
    ("pipeline", "training"),
    ("pipeline", "evaluation"),
    ("inspection", "evaluation"),
    ("pipeline", "labelling"),
    ("tips", "inspection"),
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "inspectd"


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every inspectd-internal import."""
    out = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        mod = ".".join(rel.parts)
        is_pkg = path.name == "__init__.py"
        if is_pkg:
            mod = mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("inspectd"):
                    out.append((mod, target, node.lineno))
            elif isinstance(node, ast.Import):
                out.extend((mod, a.name, node.lineno) for a in node.names if a.name.startswith("inspectd"))
    return out


def _layer(room: str) -> int:
    for i, rooms in enumerate(LAYERS):
        if room in rooms:
            return i
    raise AssertionError(f"room {room!r} is in no layer of tests/test_architecture.py: place it")


def test_every_room_has_a_layer():
    rooms = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    for room in rooms:
        _layer(room)


def test_arrows_point_down_only():
    wrong = []
    for src, dst, line in _imports():
        a, b = _room(src), _room(dst)
        if a == b or b == "inspectd" or (a, b) in ALLOWED_SIDEWAYS:
            continue
        if _layer(a) >= _layer(b):
            wrong.append(f"{src}:{line} imports {dst} ({a} may not import {b})")
    assert not wrong, "\n".join(wrong)


def test_forbidden_arrows():
    wrong = [
        f"{src}:{line} imports {dst}" for src, dst, line in _imports() if (_room(src), _room(dst)) in FORBIDDEN
    ]
    assert not wrong, "\n".join(wrong)


def test_no_package_cycles():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in _imports():
        a, b = _room(src), _room(dst)
        if a != b and b != "inspectd":
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in graph.get(n, ()):
            if state.get(m) == 1:
                raise AssertionError("package cycle: " + " -> ".join(path + [n, m]))
            if m not in state:
                visit(m, path + [n])
        state[n] = 2

    for n in list(graph):
        if n not in state:
            visit(n, [])


# What a daemon process (main and workers) loads with the default ONNX Runtime engine.
DAEMON_PROBE = """
import sys
import inspectd.pipeline.daemon, inspectd.pipeline.workers, inspectd.pipeline.replay
from inspectd.config import Config
from inspectd.pipeline.workers import load_default_detector
det = load_default_detector(Config().engine.model_dump())
assert det.name != "none", det.why
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "inspectd.training", "inspectd.nets",
             "inspectd.evaluation", "inspectd.bench")))
print(" ".join(bad))
"""


def test_daemon_process_tree_is_torch_free():
    r = subprocess.run([sys.executable, "-c", DAEMON_PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"the daemon loaded: {r.stdout.strip()}"


def test_torch_engine_loads_the_network_not_the_training_code(tmp_path):
    pytest.importorskip("torch")
    probe = (
        "import sys\n"
        "from inspectd.backends.torch import TorchEngine, TorchConfig\n"
        "from inspectd.nets.checkpoint import load_checkpoint\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('inspectd.training', 'inspectd.evaluation')))\n"
        "print(' '.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"the torch engine loaded: {r.stdout.strip()}"


def test_cli_help_does_not_load_torch():
    probe = "import sys\nimport inspectd.cli\nprint('torch' in sys.modules)\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
