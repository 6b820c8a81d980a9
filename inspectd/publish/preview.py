"""Live preview for the operator's monitor: annotated frames as H.264 over RTP/UDP, optionally recorded.

Off the critical path by construction:

- the daemon asks `Preview.due()` when a result arrives (a clock check against
  ``preview.fps``; no frame is touched when it says no), copies a decimated
  view of the frame's ring slot with `grab()` (every k-th pixel, k chosen so
  the copy is still about ``preview.width`` wide: ~1 MB for a 2048² frame),
  and after publishing the verdict hands both to `offer()`, which never blocks:
  the hand-off queue holds 2 items, and a full queue drops the preview frame
  (counted);
- a separate process (spawned) draws the overlay (`inspectd.imaging.overlay`,
  the picture of the NG archive), letterboxes it into a fixed
  ``width`` x ``height`` canvas and pushes it into a GStreamer pipeline::

    appsrc ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast ! tee
      tee. ! queue leaky ! rtph264pay config-interval=-1 ! udpsink host=HOST port=PORT
      tee. ! queue ! splitmuxsink (matroskamux|mp4mux, a file every segment_s)   [if record_dir]

A failure of the preview (no GStreamer, an unreachable host, a full disk) is
logged and stops the preview only; verdicts are never affected.

Watch it with (docs/acquisition.md)::

    gst-launch-1.0 udpsrc port=5600 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96" \\
      ! rtpjitterbuffer latency=50 ! rtph264depay ! avdec_h264 ! videoconvert ! autovideosink sync=false
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from inspectd.config import PreviewConfig
from inspectd.imaging.overlay import render_overlay
from inspectd.imaging.region import Box
from inspectd.imaging.window import to_8bit
from inspectd.observability import configure_logging, get_logger
from inspectd.verdict import Verdict

QUEUE_SIZE = 2
RTP_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"
EOS_TIMEOUT_S = 10.0


@dataclass
class Grab:
    """A decimated copy of a frame, taken while its ring slot is still held."""

    image: np.ndarray  # every k-th pixel of the frame
    k: int
    bit_depth: int


def canvas_size(width: int) -> tuple[int, int]:
    """The fixed output size: `width` x 9/16 `width`, both even (I420)."""
    w = width - width % 2
    h = int(round(w * 9 / 16))
    return w, h - h % 2


def letterbox(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`img` (BGR) scaled to fit `size` (w, h), centred on black."""
    import cv2

    w, h = size
    s = min(w / img.shape[1], h / img.shape[0])
    nw, nh = max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def render_preview(grab: Grab, verdict, size: tuple[int, int]) -> np.ndarray:
    """The overlay of `verdict` on a decimated frame, letterboxed into `size` (BGR uint8)."""
    k = grab.k
    img8 = to_8bit(grab.image, grab.bit_depth)
    v = verdict.model_copy(
        update={
            "anode_tips": [(x / k, y / k) for x, y in verdict.anode_tips],
            "cathode_tips": [(x / k, y / k) for x, y in verdict.cathode_tips],
        }
    )
    roi = None
    if verdict.roi is not None:
        x0, y0, x1, y1 = (int(round(c / k)) for c in verdict.roi)
        roi = Box(x0, y0, x1, y1)
    panel = size[0] // 2 if roi is not None else size[0]
    return letterbox(render_overlay(img8, v, roi=roi, width=panel), size)


def build_pipeline_description(cfg: PreviewConfig, fps: Fraction, size: tuple[int, int], record_to: str | None) -> str:
    w, h = size
    key_int = max(1, int(round(float(fps) * 2)))  # an IDR at least every 2 s: late viewers start quickly
    desc = (
        f"appsrc name=src is-live=true format=time block=false max-bytes={w * h * 3 * 4} "
        f"caps=video/x-raw,format=BGR,width={w},height={h},framerate={fps.numerator}/{fps.denominator} "
        "! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate={cfg.bitrate_kbps} key-int-max={key_int} "
        "! video/x-h264,profile=constrained-baseline ! tee name=t "
        "t. ! queue leaky=downstream max-size-buffers=8 max-size-time=0 max-size-bytes=0 "
        f'! rtph264pay config-interval=-1 pt=96 mtu=1400 ! udpsink name=udp host="{cfg.host}" port={cfg.port} '
        "sync=false async=false"
    )
    if record_to is not None:
        desc += (
            " t. ! queue max-size-buffers=64 max-size-time=0 max-size-bytes=0 "
            f'! splitmuxsink name=rec location="{record_to}" muxer={muxer_name(cfg)} '
            f"max-size-time={int(cfg.segment_s * 1e9)} max-size-bytes=0 send-keyframe-requests=true"
        )
    return desc


def muxer_name(cfg: PreviewConfig) -> str:
    return "matroskamux" if cfg.record_format == "mkv" else "mp4mux"


# ============================================================================ the preview process


def _preview_main(cfg_json: str, q, conn, log_level: str, log_json: bool) -> None:  # pragma: no cover - child
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's: it drains, then stops us with the sentinel
    parent = os.getppid()
    configure_logging(log_level, log_json)
    log = get_logger(proc="preview")
    cfg = PreviewConfig.model_validate_json(cfg_json)
    stats = {"frames": 0, "render_ms": 0.0, "encode_ms": 0.0, "encoded": 0, "errors": []}
    try:
        import warnings

        from inspectd.sources.gst import preload_libgcc_s

        preload_libgcc_s()  # before GStreamer loads libunwind (see there)
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImportWarning)
            from gi.repository import GLib, Gst, GstApp  # noqa: F401

        Gst.init(None)
    except (ImportError, ValueError) as e:
        conn.send(("error", f"preview: GStreamer is not available ({e}); run `make sysdeps`"))
        _drain(q, parent)
        return
    import socket

    try:  # udpsink drops packets for an unresolvable host silently: say it here, once
        socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_DGRAM)
    except OSError as e:
        conn.send(("error", f"preview: cannot resolve preview.host {cfg.host!r}: {e}"))
        _drain(q, parent)
        return
    fps = Fraction(cfg.fps).limit_denominator(1001)
    size = canvas_size(cfg.width)
    record_to = None
    if cfg.record_dir is not None:
        try:
            cfg.record_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            conn.send(("error", f"preview: cannot create record_dir {cfg.record_dir}: {e}"))
            _drain(q, parent)
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        record_to = str(cfg.record_dir / f"preview-{stamp}-%05d.{cfg.record_format}")
    desc = build_pipeline_description(cfg, fps, size, record_to)
    try:
        pipe = Gst.parse_launch(desc)
    except GLib.Error as e:
        conn.send(("error", f"preview: cannot build the GStreamer pipeline: {e.message}"))
        _drain(q, parent)
        return
    src = pipe.get_by_name("src")
    bus = pipe.get_bus()
    pushed: deque[float] = deque()  # push times; x264enc (zerolatency) emits one buffer per input, in order

    def on_encoded(_pad, _info):
        t = pushed.popleft() if pushed else None
        if t is not None:
            stats["encode_ms"] += (time.perf_counter() - t) * 1000.0
            stats["encoded"] += 1
        return Gst.PadProbeReturn.OK

    pipe.get_by_name("enc").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_encoded)
    if pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        err = _bus_error(Gst, bus) or "state change failed"
        conn.send(("error", f"preview: cannot start the GStreamer pipeline: {err}"))
        pipe.set_state(Gst.State.NULL)
        _drain(q, parent)
        return
    conn.send(("ready", {"size": size, "fps": float(fps), "record": record_to, "rtp": f"{cfg.host}:{cfg.port}"}))
    log.info("preview_started", size=f"{size[0]}x{size[1]}", fps=float(fps), rtp=f"{cfg.host}:{cfg.port}",
             record=record_to, pid=os.getpid())  # fmt: skip
    t0: int | None = None
    last_pts = -1
    duration = int(Gst.SECOND / float(fps))
    failed = False
    while True:
        try:
            item = q.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the daemon died without stopping us: finalise the recording
                log.warning("preview_orphaned", msg="daemon gone: closing the recording")
                break
            continue
        if item is None:
            break
        err = _bus_error(Gst, bus)
        if err and not failed:
            failed = True
            stats["errors"].append(err)
            log.error("preview_failed", msg=f"preview stopped (verdicts unaffected): {err}")
        if failed:
            continue
        grab, verdict_json = item
        try:
            t = time.perf_counter()
            bgr = render_preview(grab, Verdict.from_json(verdict_json), size)
            stats["render_ms"] += (time.perf_counter() - t) * 1000.0
        except Exception as e:  # a drawing bug costs this preview frame only
            log.warning("preview_frame_failed", msg=f"{type(e).__name__}: {e}")
            continue
        now = time.monotonic_ns()
        t0 = now if t0 is None else t0
        pts = max(now - t0, last_pts + 1_000_000)  # strictly increasing for the encoder and muxers
        last_pts = pts
        buf = Gst.Buffer.new_wrapped(bgr.tobytes())
        buf.pts, buf.duration = pts, duration
        pushed.append(time.perf_counter())
        if src.push_buffer(buf) != Gst.FlowReturn.OK:
            pushed.pop()
            continue
        stats["frames"] += 1
    # drain: EOS finalises the recording (moov atom / cues) before NULL
    src.end_of_stream()
    msg = bus.timed_pop_filtered(int(EOS_TIMEOUT_S * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg is not None and msg.type == Gst.MessageType.ERROR:
        e, _ = msg.parse_error()
        stats["errors"].append(f"{msg.src.get_name()}: {e.message}")
    elif msg is None:
        stats["errors"].append(f"no EOS within {EOS_TIMEOUT_S:g} s: the last recording may be incomplete")
    pipe.set_state(Gst.State.NULL)
    if record_to is not None:
        stats["files"] = sorted(str(p) for p in Path(record_to).parent.glob(Path(record_to).name.replace("%05d", "*")))
    log.info("preview_stopped", frames=stats["frames"], errors=stats["errors"] or None)
    with contextlib.suppress(Exception):
        conn.send(("stats", stats))


def _bus_error(Gst, bus) -> str | None:
    msg = bus.pop_filtered(Gst.MessageType.ERROR)
    if msg is None:
        return None
    err, debug = msg.parse_error()
    return f"{msg.src.get_name() if msg.src else 'pipeline'}: {err.message}"


def _drain(q, parent: int) -> None:
    """After a failed start: consume offers until the sentinel (or the daemon is gone)."""
    import os

    while os.getppid() == parent:
        try:
            if q.get(timeout=1.0) is None:
                return
        except queue.Empty:
            continue


# ============================================================================ the daemon's side


class Preview:
    """The daemon's handle on the preview process. Nothing here blocks the caller."""

    def __init__(self, cfg: PreviewConfig, log=None, log_level: str = "info", log_json: bool = True):
        self.cfg = cfg
        self.log = log
        self.log_level, self.log_json = log_level, log_json
        self.period = 1.0 / cfg.fps
        self._next = 0.0
        self.offered = self.dropped = 0
        self.failed: str | None = None
        self.info: dict | None = None
        self.stats: dict | None = None
        self._proc = None
        self._q = None
        self._conn = None

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self._q = ctx.Queue(maxsize=QUEUE_SIZE)
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_preview_main,
            args=(self.cfg.model_dump_json(), self._q, child, self.log_level, self.log_json),
            name="inspectd-preview",
            daemon=True,
        )
        self._proc.start()
        child.close()

    def _poll(self) -> None:
        if self.failed is None and self._proc is not None and not self._proc.is_alive() and self.stats is None:
            self.failed = f"preview process exited (code {self._proc.exitcode})"
            if self.log is not None:
                self.log.error("preview_failed", msg=f"{self.failed} (verdicts unaffected)")
        while self._conn is not None and self._conn.poll():
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                self._conn = None
                break
            if kind == "ready":
                self.info = payload
            elif kind == "error":
                self.failed = payload
                if self.log is not None:
                    self.log.error("preview_failed", msg=f"{payload} (verdicts unaffected)")
            elif kind == "stats":
                self.stats = payload

    def wait_ready(self, timeout_s: float) -> bool:
        """For tests and tools: wait until the pipeline plays (True) or failed (False)."""
        end = time.monotonic() + timeout_s
        while self.info is None and self.failed is None and time.monotonic() < end:
            if self._conn is not None:
                self._conn.poll(0.05)
            self._poll()
        return self.info is not None

    def due(self, now: float | None = None) -> bool:
        """True when the rate budget allows a preview frame now (no frame is touched to decide)."""
        if self._proc is None or self.failed is not None:
            return False
        now = time.monotonic() if now is None else now
        return now >= self._next

    def grab(self, image: np.ndarray, bit_depth: int | None = None) -> Grab:
        """Copy every k-th pixel of `image` (a ring-slot view), about `preview.width` wide; books the frame slot."""
        now = time.monotonic()
        # a steady schedule at preview.fps; re-anchored when frames came rarer than that
        self._next = self._next + self.period if now - self._next < self.period else now + self.period
        k = max(1, image.shape[1] // self.cfg.width)
        small = np.ascontiguousarray(image[::k, ::k])
        return Grab(small, k, bit_depth or (8 if image.dtype == np.uint8 else 16))

    def offer(self, grab: Grab, verdict) -> bool:
        """Hand a grabbed frame and its published verdict to the preview; False when dropped (queue full)."""
        self._poll()
        if self._q is None or self.failed is not None:
            return False
        self.offered += 1
        try:
            self._q.put_nowait((grab, verdict.to_json()))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout_s: float = 15.0) -> dict | None:
        """Stop the preview: EOS finalises the recording. Returns the process's stats, if it sent them."""
        if self._proc is None:
            return self.stats
        end = time.monotonic() + timeout_s
        while True:  # the sentinel must get in; the child keeps consuming
            try:
                self._q.put(None, timeout=0.2)
                break
            except queue.Full:
                if time.monotonic() > end or not self._proc.is_alive():
                    break
        while self._proc.is_alive() and time.monotonic() < end:
            self._poll()
            self._proc.join(0.1)
        self._poll()
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2.0)
        self._proc = None
        self._q.close()
        self._q.cancel_join_thread()
        return self.stats
