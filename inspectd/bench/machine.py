"""What the benchmark ran on (recorded with every result), and CPU/RSS readings from /proc.

No psutil: /proc/stat, /proc/<pid>/stat and /proc/<pid>/statm give what the
benchmark needs (Linux only, as the daemon itself).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
REPO = Path(__file__).resolve().parents[2]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """GPU names from nvidia-smi, if there is one (empty list otherwise)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        r = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()] if r.returncode == 0 else []


def host_kind(desc: dict) -> str:
    """Short machine label for file names: e.g. ``2cpu-amd-epyc`` or ``16cpu-intel-xeon-h100``."""
    model = desc["cpu_model"].lower()
    words = [w for w in re.split(r"[^a-z0-9]+", model) if w and w not in ("r", "tm", "cpu", "processor", "core")]
    short = "-".join(words[:2]) or "cpu"
    kind = f"{desc['cpu_count']}cpu-{short}"
    if desc["gpus"]:
        g = re.split(r"[^a-z0-9]+", desc["gpus"][0].lower())
        g = [w for w in g if w and w not in ("nvidia", "tesla", "geforce")]
        kind += "-" + (g[0] if g else "gpu")
    return kind


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def describe_machine() -> dict:
    import numpy as np

    desc: dict = {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": None,
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    m = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    if m:
        desc["mem_total_gb"] = round(int(m.group(1)) / 2**20, 1)
    try:
        import onnxruntime as ort

        desc["onnxruntime"] = ort.__version__
        desc["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        desc["onnxruntime"] = None
    try:
        import cv2

        desc["opencv"] = cv2.__version__
    except ImportError:
        desc["opencv"] = None
    desc["git_commit"] = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") or ""
    desc["git_dirty"] = bool(dirty)
    desc["git_dirty_files"] = [ln.split(None, 1)[-1] for ln in dirty.splitlines() if ln.strip()]  # others' uncommitted work the run included
    desc["host_kind"] = host_kind(desc)
    return desc


# ---------------------------------------------------------------------------- CPU and memory readings


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    line = _read("/proc/stat").splitlines()[0].split()
    vals = [int(v) for v in line[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already in user
    return total - idle, total


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _read(f"/proc/{d}/stat")
        if not st:
            continue
        try:
            ppid = int(st[st.rindex(")") + 2 :].split()[1])
        except (ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of one process, seconds (None if it is gone)."""
    st = _read(f"/proc/{pid}/stat")
    if not st:
        return None
    f = st[st.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def proc_threads_cpu_s(pid: int) -> dict[str, float]:
    """utime + stime per thread name (the kernel's comm: inspectd names its threads, osthread.py), seconds."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        st = _read(f"/proc/{pid}/task/{tid}/stat")
        if not st or ")" not in st:
            continue
        name = st[st.index("(") + 1 : st.rindex(")")]
        f = st[st.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / CLK_TCK
    return out


def proc_rss_mb(pid: int) -> float:
    st = _read(f"/proc/{pid}/statm").split()
    return int(st[1]) * PAGE / 2**20 if len(st) > 1 else 0.0


def proc_pss_mb(pid: int) -> float:
    m = re.search(r"^Pss:\s+(\d+) kB", _read(f"/proc/{pid}/smaps_rollup"), re.M)
    return int(m.group(1)) / 1024 if m else 0.0


@dataclass
class TreeSample:
    t: float
    cpu_s: dict[int, float]
    machine_busy: int
    machine_total: int
    root_threads: dict[str, float] = field(default_factory=dict)  # the root process's CPU s per thread name


@dataclass
class TreeMonitor:
    """CPU seconds and memory of a process tree (the daemon and its workers) at chosen moments.

    `sample()` is cheap (a few /proc reads); utilisation between two samples is
    CPU seconds of the tree / wall seconds / cores, in %. A process that exits
    keeps its last reading (its CPU still counts).
    """

    root: int
    pids: list[int] = field(default_factory=list)
    last_cpu: dict[int, float] = field(default_factory=dict)
    last_threads: dict[str, float] = field(default_factory=dict)  # the root's threads (an ended one keeps its last)
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0

    def refresh_tree(self) -> None:
        self.pids = process_tree(self.root)

    def sample(self, memory: bool = False) -> TreeSample:
        if not self.pids:
            self.refresh_tree()
        for p in self.pids:
            c = proc_cpu_s(p)
            if c is not None:
                self.last_cpu[p] = c
        if memory:
            self.peak_rss_mb = max(self.peak_rss_mb, sum(proc_rss_mb(p) for p in self.pids))
            self.peak_pss_mb = max(self.peak_pss_mb, sum(proc_pss_mb(p) for p in self.pids))
        busy, total = machine_ticks()
        self.last_threads.update(proc_threads_cpu_s(self.root))
        return TreeSample(time.monotonic(), dict(self.last_cpu), busy, total, dict(self.last_threads))


def utilisation(a: TreeSample, b: TreeSample, cores: int, root: int | None = None) -> dict:
    """CPU use between two samples: of the tree (% of all cores) and of the whole machine."""
    wall = max(1e-9, b.t - a.t)
    tree_s = sum(b.cpu_s.get(p, 0.0) - a.cpu_s.get(p, 0.0) for p in b.cpu_s)
    dt = max(1, b.machine_total - a.machine_total)
    out = {
        "cpu_s": round(tree_s, 3),
        "cpu_pct": round(100.0 * tree_s / wall / cores, 1),
        "machine_cpu_pct": round(100.0 * (b.machine_busy - a.machine_busy) / dt, 1),
    }
    if root is not None:  # the main process alone (acquire, dispatch, reorder, journal, PUB, logs)
        main_s = b.cpu_s.get(root, 0.0) - a.cpu_s.get(root, 0.0)
        out["main_cpu_pct"] = round(100.0 * main_s / wall / cores, 1)
        out["workers_cpu_pct"] = round(100.0 * (tree_s - main_s) / wall / cores, 1)
        out["main_threads_pct"] = {  # which thread of the main process: loop ("python"), acquire, pub ...
            name: round(100.0 * (sec - a.root_threads.get(name, 0.0)) / wall / cores, 2)
            for name, sec in sorted(b.root_threads.items())
            if sec - a.root_threads.get(name, 0.0) > 0
        }
    return out


def machine_busy_pct(seconds: float = 1.0) -> float:
    """Whole-machine CPU use over the next `seconds` (background load before the runs)."""
    b0, t0 = machine_ticks()
    time.sleep(seconds)
    b1, t1 = machine_ticks()
    return round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)


def busiest_processes(seconds: float = 1.0, top: int = 3, exclude: set[int] | None = None) -> list[dict]:
    """The processes that used the most CPU over `seconds` (to show what else was running)."""
    exclude = exclude or set()

    def snap() -> dict[int, float]:
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) not in exclude:
                c = proc_cpu_s(int(d))
                if c is not None:
                    out[int(d)] = c
        return out

    a = snap()
    time.sleep(seconds)
    b = snap()
    use = sorted(((b[p] - a.get(p, b[p]), p) for p in b), reverse=True)[:top]
    rows = []
    for used, p in use:
        pct = 100.0 * used / seconds
        if pct < 5.0:
            continue
        cmd = _read(f"/proc/{p}/cmdline").replace("\0", " ").strip()[:100]
        rows.append({"pid": p, "cpu_pct_of_one_core": round(pct, 1), "cmd": cmd})
    return rows
