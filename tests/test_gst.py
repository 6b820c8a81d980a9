"""GStreamer, for real: the gst: source, the RTP preview received on loopback, recordings played back.

Skipped only when GStreamer's Python bindings are absent (`make sysdeps` installs them).
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

gi = pytest.importorskip("gi", reason="GStreamer Python bindings (python3-gi) not installed: run make sysdeps")
from inspectd.sources.gst import preload_libgcc_s  # noqa: E402

preload_libgcc_s()  # before GStreamer loads libunwind: later C++ exceptions (torch) in this pytest process must not crash
try:
    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        from gi.repository import Gst, GstApp  # noqa: F401
except (ImportError, ValueError) as e:  # pragma: no cover
    pytest.skip(f"GStreamer typelibs not installed ({e}): run make sysdeps", allow_module_level=True)

from inspectd.config import PreviewConfig  # noqa: E402
from inspectd.publish.preview import RTP_CAPS, Preview, canvas_size, render_preview  # noqa: E402
from inspectd.sources import EndOfStream, SourceError, open_source, parse_source_uri  # noqa: E402
from inspectd.verdict import Reason, ReasonCode, Result, Verdict  # noqa: E402
from helpers import read_all  # noqa: E402

Gst.init(None)




def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def play_count(path: Path) -> int:
    """Decode a recording to the end with a GStreamer pipeline; the number of frames it holds."""
    demux = "matroskademux" if path.suffix == ".mkv" else "qtdemux"
    pipe = Gst.parse_launch(f'filesrc location="{path}" ! {demux} ! avdec_h264 ! appsink name=s sync=false')
    sink = pipe.get_by_name("s")
    pipe.set_state(Gst.State.PLAYING)
    n = 0
    try:
        while sink.try_pull_sample(10 * Gst.SECOND) is not None:
            n += 1
        msg = pipe.get_bus().pop_filtered(Gst.MessageType.ERROR)
        assert msg is None, f"{path.name}: {msg.parse_error()[0].message}"
        assert sink.is_eos(), f"{path.name}: decoding stalled after {n} frames"
    finally:
        pipe.set_state(Gst.State.NULL)
    return n


# ============================================================================ the gst: source


@pytest.mark.parametrize("fmt, dtype", [("GRAY8", np.uint8), ("GRAY16_LE", np.uint16)])
def test_videotestsrc_frames_then_end_of_stream(fmt, dtype):
    src = open_source(f"gst:videotestsrc num-buffers=7 pattern=white ! video/x-raw,format={fmt},width=64,height=48 ! appsink name=sink")
    src.open()
    try:
        frames = read_all(src, limit=500, timeout=5.0)
        with pytest.raises(EndOfStream):  # and it stays ended
            src.read(0.5)
    finally:
        src.close()
    assert [f.frame_id for f in frames] == [f"gst-{i:06d}" for i in range(7)]
    white = 235 if dtype == np.uint8 else 235 * 257  # video-range white, as videotestsrc draws it
    for f in frames:
        assert f.image.dtype == dtype and f.image.shape == (48, 64)
        assert np.all(f.image == white)
        assert f.meta.t_acquired_ns > 0 and f.meta.bit_depth == (8 if dtype == np.uint8 else 16)
    assert [f.meta.model_extra["pts_ns"] for f in frames[:3]] == [0, 33333333, 66666666]  # 30 fps test source


@pytest.mark.parametrize("fmt, name", [("GRAY8", "gray8"), ("GRAY16_LE", "gray16-le")])
def test_exact_pixel_values_through_a_file_pipeline(tmp_path, fmt, name):
    # odd width: GStreamer pads rows to 4 bytes; the copy must drop the padding
    h, w = 23, 41
    dtype = np.uint8 if fmt == "GRAY8" else np.uint16
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, np.iinfo(dtype).max + 1, (h, w)).astype(dtype) for _ in range(4)]
    raw = tmp_path / "frames.raw"
    raw.write_bytes(b"".join(i.astype(np.dtype(dtype).newbyteorder("<")).tobytes() for i in imgs))
    stride = w * np.dtype(dtype).itemsize
    src = open_source(
        f"gst:filesrc location={raw} ! rawvideoparse format={name} width={w} height={h} "
        f"plane-strides=<{stride}> framerate=0/1 ! appsink sync=false"
    )
    src.open()
    frames = read_all(src, limit=500, timeout=5.0)
    src.close()
    assert len(frames) == 4
    for f, want in zip(frames, imgs, strict=True):
        assert f.image.dtype == dtype and f.image.flags.c_contiguous
        np.testing.assert_array_equal(f.image, want)


def test_read_never_blocks_longer_than_its_timeout():
    # a live source at 1 fps: most reads find nothing and must come back with None
    src = open_source("gst:videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=32,height=32,framerate=1/1 ! appsink")
    src.open()
    try:
        assert src.live
        got = [src.read(0.05) for _ in range(3)]
    finally:
        src.close()
    assert None in got


@pytest.mark.parametrize(
    "uri, words",
    [
        ("gst:", ["gst needs a pipeline", "appsink"]),
        ("gst:videotestsrc ! nosuchelement ! appsink", ["cannot build the pipeline", "nosuchelement"]),
        ("gst:videotestsrc ! fakesink", ["no appsink"]),
        ("gst:videotestsrc ! appsink name=a ! appsink name=b", ["cannot build"]),
        ("gst:videotestsrc ! video/x-raw,format=RGB ! appsink", ["not-negotiated", "GRAY8", "videoconvert"]),
        ("gst:filesrc location=/nonexistent/x.raw ! appsink", ["filesrc", "/nonexistent/x.raw"]),
        ("gst:videotestsrc ! appsink name=s?sink=other", ["no element named 'other'"]),
        ("gst:videotestsrc ! appsink?speed=2", ["unknown parameter 'speed'", "sink"]),
    ],
)
def test_bad_pipelines_give_one_clear_error(uri, words):
    with pytest.raises(SourceError) as e:
        src = open_source(uri)
        src.open()
        try:
            read_all(src, limit=3, timeout=2.0)
        finally:
            src.close()
    msg = str(e.value)
    for w in words:
        assert w in msg, msg


def test_a_stream_error_after_start_is_a_source_error_with_gstreamers_message():
    src = open_source(
        "gst:videotestsrc ! video/x-raw,format=GRAY8,width=32,height=32 ! identity name=flaky error-after=4 ! appsink"
    )
    src.open()
    frames = []
    try:
        with pytest.raises(SourceError) as e:
            for _ in range(50):
                if (f := src.read(2.0)) is not None:
                    frames.append(f)
    finally:
        src.close()
    assert "flaky" in str(e.value) and "pipeline error" in str(e.value)
    assert 1 <= len(frames) <= 4


def test_ring_slot_hint_from_caps():
    cfg = parse_source_uri("gst:videotestsrc ! video/x-raw,format=GRAY16_LE,width=2048,height=1536 ! appsink")
    assert cfg.max_frame_bytes() == 2048 * 1536 * 2
    assert parse_source_uri("gst:filesrc location=a.mkv ! decodebin ! appsink").max_frame_bytes() is None


# ============================================================================ the preview sink


def _verdict(i: int) -> Verdict:
    return Verdict(
        seq=i,
        frame_id=f"f{i:03d}",
        station="T",
        result=Result.NG if i % 3 == 0 else Result.OK,
        reasons=[Reason(code=ReasonCode.OVERHANG_MIN, index=2, value_mm=0.3, limit_mm=0.45)] if i % 3 == 0 else [],
        anode_tips=[(900.0, 800.0 + 10 * k) for k in range(10)],
        cathode_tips=[(960.0, 805.0 + 10 * k) for k in range(9)],
        roi=(850, 760, 1050, 940),
    )


def test_render_preview_is_the_fixed_canvas():
    cfg = PreviewConfig(width=640)
    p = Preview(cfg)
    img = np.random.default_rng(0).integers(0, 4096, (2048, 2048)).astype(np.uint16)
    g = p.grab(img)
    assert g.k == 3 and g.image.shape == (683, 683) and g.image.base is None  # a copy, not a view of the slot
    out = render_preview(g, _verdict(0), canvas_size(cfg.width))
    assert out.shape == (360, 640, 3) and out.dtype == np.uint8 and out.any()


@pytest.fixture
def receiver():
    """A second GStreamer pipeline: udpsrc -> depay -> decode -> appsink, on a free loopback port."""
    port = free_udp_port()
    pipe = Gst.parse_launch(
        f'udpsrc address=127.0.0.1 port={port} caps="{RTP_CAPS}" ! rtpjitterbuffer latency=100 '
        "! rtph264depay ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false"
    )
    pipe.set_state(Gst.State.PLAYING)
    sink = pipe.get_by_name("sink")
    frames: list[tuple[int, int]] = []

    def pull(timeout_s: float = 0.0) -> None:
        while (s := sink.try_pull_sample(int(timeout_s * Gst.SECOND))) is not None:
            st = s.get_caps().get_structure(0)
            frames.append((st.get_value("width"), st.get_value("height")))

    yield port, frames, pull
    pipe.set_state(Gst.State.NULL)


@pytest.mark.parametrize("fmt", ["mkv", "mp4"])
def test_preview_streams_rtp_and_records_segments_that_play_back(tmp_path, receiver, fmt):
    port, received, pull = receiver
    rec = tmp_path / "rec"
    cfg = PreviewConfig(enabled=True, port=port, fps=20, width=480, record_dir=rec, segment_s=1, record_format=fmt)
    p = Preview(cfg, log_json=False)
    p.start()
    try:
        assert p.wait_ready(60), p.failed
        img = np.random.default_rng(1).integers(0, 4096, (1024, 1024)).astype(np.uint16)
        accepted = 0
        for i in range(40):  # ~2.5 s of frames at ~16 fps: three 1-s segments
            while not p.due():
                time.sleep(0.005)
            accepted += p.offer(p.grab(img, 12), _verdict(i))
            time.sleep(0.06)
            pull()
    finally:
        stats = p.close()
    pull(1.0)
    assert stats is not None and not stats["errors"], stats
    assert accepted == p.offered - p.dropped and stats["frames"] == accepted > 0
    assert stats["encoded"] == stats["frames"]
    # RTP on loopback: the frames arrive, decoded, at the configured size
    assert len(received) >= accepted // 2, (len(received), accepted)
    assert set(received) == {canvas_size(480)}
    # the recording: segmented, and every frame that went in plays back
    files = sorted(rec.glob(f"preview-*.{fmt}"))
    assert [str(f) for f in files] == stats["files"] and len(files) >= 2
    assert sum(play_count(f) for f in files) == stats["frames"]
    n = stats["frames"]
    print(
        f"preview {fmt}: {accepted} offered+accepted, {n} encoded, {len(received)} received over RTP, "
        f"{len(files)} segments; render {stats['render_ms'] / n:.1f} ms/frame, "
        f"convert+encode {stats['encode_ms'] / n:.1f} ms/frame"
    )


def test_offer_never_blocks_and_drops_when_the_preview_is_behind(tmp_path):
    cfg = PreviewConfig(enabled=True, port=free_udp_port(), fps=60, width=320)
    p = Preview(cfg, log_json=False)
    p.start()
    try:
        assert p.wait_ready(60), p.failed
        img = np.zeros((512, 512), np.uint8)
        g = p.grab(img)
        t = time.perf_counter()
        results = [p.offer(g, _verdict(i)) for i in range(50)]  # far faster than the process can draw
        offer_s = time.perf_counter() - t
    finally:
        stats = p.close()
    assert p.offered == 50 and p.dropped > 0 and results.count(True) == 50 - p.dropped
    assert stats["frames"] == 50 - p.dropped
    print(f"50 offers in {offer_s * 1000:.1f} ms, {p.dropped} dropped")


@pytest.mark.parametrize("bad", ["host", "record_dir"])
def test_preview_that_cannot_start_is_reported_not_raised(tmp_path, bad):
    (tmp_path / "a_file").write_text("x")
    cfg = PreviewConfig(
        enabled=True,
        host="no-such-host.invalid" if bad == "host" else "127.0.0.1",
        port=free_udp_port(),
        width=320,
        record_dir=tmp_path / "a_file" / "rec" if bad == "record_dir" else None,
    )
    p = Preview(cfg, log_json=False)
    p.start()
    assert not p.wait_ready(60)
    try:
        for i in range(3):  # offers after a failure are refused, never raised
            assert p.offer(p.grab(np.zeros((64, 64), np.uint8)), _verdict(i)) is False
    finally:
        p.close()
    assert p.failed is not None and ("no-such-host.invalid" in p.failed or "record_dir" in p.failed), p.failed


def test_daemon_streams_the_preview_of_its_verdicts(tmp_path, receiver):
    """The daemon's hook end to end: sim frames -> verdicts -> preview offered -> RTP received + recorded."""
    import json
    import os
    import subprocess
    import sys

    port, received, pull = receiver
    rec = tmp_path / "rec"
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        f'[preview]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nfps = 8\nwidth = 480\n'
        f'record_dir = "{rec}"\nsegment_s = 60\n'
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("NOTIFY_SOCKET", None)
    cmd = [sys.executable, "-m", "inspectd.pipeline.run", "--config", str(cfg), "--source",
           "sim:?size=512&fps=10&count=30&seed=2", "--tips", "labels", "--exit-at-end", "--workers", "1",
           "--pub", "tcp://127.0.0.1:*", "--query", "tcp://127.0.0.1:*", "--metrics-port", "-1", "--verdict-log", "all",
           "--journal", str(tmp_path / "journal.sqlite"), "--archive-dir", str(tmp_path / "ng")]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            pull(0.1)
        log = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    pull(0.5)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, log[-3000:]
    verdicts = [e for e in events if e.get("event") == "verdict"]
    assert len(verdicts) == 30
    stopped = [e for e in events if e.get("event") == "preview_stopped"]
    assert stopped and stopped[0]["frames"] >= 1 and not stopped[0].get("errors"), log[-3000:]
    shown = stopped[0]["frames"]
    assert shown <= 30  # fps=8 at a 10 fps source: the rate budget skips frames
    assert len(received) >= 1 and set(received) == {canvas_size(480)}
    files = sorted(rec.glob("preview-*.mkv"))
    assert len(files) == 1 and play_count(files[0]) == shown
    print(f"daemon: 30 verdicts, {shown} preview frames encoded, {len(received)} received over RTP")


def test_kill9_of_the_preview_process_costs_no_verdict(tmp_path):
    """The preview is its own process: killing it is logged, and every frame still gets its verdict."""
    import os
    import signal

    from test_daemon import Daemon, journal_rows

    cfg = tmp_path / "station.toml"
    cfg.write_text('[preview]\nenabled = true\nhost = "127.0.0.1"\nport = 5999\nfps = 8\nwidth = 480\n')
    d = Daemon(tmp_path, "--config", str(cfg), "--source", "sim:?size=512&fps=10&count=40&seed=2", "--tips", "labels",
               "--exit-at-end", "--workers", "1", "--journal", str(tmp_path / "j.sqlite"))  # fmt: skip
    try:
        pid = d.event("preview_started", 60)["pid"]
        d.wait_for(lambda e: e.get("event") == "verdict" and e["seq"] >= 5, 30, "5 verdicts")
        os.kill(pid, signal.SIGKILL)
        failed = d.event("preview_failed", 30)
        assert "preview process exited" in failed["msg"] and "verdicts unaffected" in failed["msg"]
        assert d.wait(60) == 0
    finally:
        d.close()
    rows = journal_rows(tmp_path / "j.sqlite")
    assert len(rows) == 40 and [r["seq"] for r in rows] == list(range(1, 41))
    assert not any(r["result"] in ("ERROR", "TIMEOUT") for r in rows)
