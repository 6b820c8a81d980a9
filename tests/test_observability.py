"""Log lines stay whole when the main process and its workers write to one stderr."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
N = 1500

WRITER = """
import sys, time
from inspectd.observability import configure_logging, get_logger
configure_logging()
log = get_logger(proc=sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all three start writing together
for i in range(N):
    log.info("verdict", pad="x" * (900 + 7 * (i % 400)), i=i)
"""


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
def test_lines_of_concurrent_processes_do_not_interleave(tmp_path, unbuffered):
    """Three processes, one shared pipe: every line parses and none is lost.

    With structlog's PrintLogger 6-15 % of these lines came out broken (a line of
    one process spliced into another's); the daemon's test harness then missed
    events. PYTHONUNBUFFERED=1 (common in service units and CI) made it worse: print
    wrote each line and its newline with two writes."""
    script = tmp_path / "writer.py"
    script.write_text(f"N = {N}\n" + WRITER)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": unbuffered}
    start = time.time() + 3.0
    cmd = " & ".join(f"{sys.executable} {script} w{k} {start}" for k in range(3)) + " & wait"
    proc = subprocess.Popen(["sh", "-c", cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks = []
    while data := os.read(proc.stdout.fileno(), 16384):  # a reader slower than the writers, like
        chunks.append(data)  # journald or the daemon tests' log pump: the pipe fills, writers block
        time.sleep(0.002)
    assert proc.wait(60) == 0
    lines = b"".join(chunks).decode().splitlines()
    parsed = [json.loads(line) for line in lines]  # raises on a broken line
    assert len(parsed) == 3 * N
    for k in range(3):
        assert sorted(p["i"] for p in parsed if p["proc"] == f"w{k}") == list(range(N))


@pytest.fixture
def restore_logging():
    """configure_logging sets process-wide state (structlog config, a root handler): put it back,
    or later tests that wrap their own capturing logger inherit its INFO filter."""
    import logging

    import structlog

    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logging_to_a_stream_without_descriptor(restore_logging):
    from inspectd.observability import configure_logging, get_logger

    buf = io.StringIO()
    configure_logging(stream=buf)
    get_logger(proc="t").info("hello", n=1)
    rec = json.loads(buf.getvalue())
    assert rec["event"] == "hello" and rec["n"] == 1 and rec["proc"] == "t"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names and nice values per thread are Linux's")
def test_daemon_threads_are_named_in_the_kernel():
    """top -H / py-spy / the bench see which thread burns a core."""
    import threading

    from inspectd.osthread import named_thread

    seen: dict = {}

    def body():
        seen["comm"] = open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip()

    t = named_thread(body, "inspectd-acquire")
    t.start()
    t.join(5)
    assert t.name == "inspectd-acquire" and t.daemon
    assert seen["comm"] == "acquire"
