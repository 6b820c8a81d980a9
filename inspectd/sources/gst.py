"""`gst:PIPELINE` — any GStreamer pipeline that ends in an `appsink`, as a live source.

Examples (docs/acquisition.md has more)::

    gst:videotestsrc num-buffers=20 ! video/x-raw,format=GRAY8,width=640,height=480 ! appsink name=sink
    gst:filesrc location=/data/run.mkv ! matroskademux ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink
    gst:aravissrc camera-name=DET-01 ! video/x-raw,format=GRAY16_LE ! appsink name=sink

The appsink must deliver ``video/x-raw`` in ``GRAY8`` (→ uint8 frames) or
``GRAY16_LE`` (→ uint16 frames); when the pipeline sets no caps on the
appsink they are set to exactly these, so a pipeline that cannot produce them
fails to negotiate with an error that says so (put
``videoconvert ! video/x-raw,format=GRAY8`` before the sink). Every frame is
copied out of its `GstBuffer` (row padding removed) before the buffer goes back.

Frame ids: ``<prefix>-<n>``, n counting the frames this source delivered
(buffer offsets are not frame numbers for every element: rawvideoparse puts
byte offsets there). Timestamps: for a live pipeline the buffer's PTS is
mapped through the pipeline clock to wall-clock ns (the moment the frame was
captured, as the source stamped it); for a non-live one (a file, a test
source) the PTS is stream time, so the frame is stamped when it is pulled.
Either way the sidecar keeps the buffer's ``pts_ns`` (and ``buffer_offset``
when set), so gaps in a camera's stream stay visible.

Parameters after ``?`` (the pipeline itself must not contain ``?``):
``sink`` (appsink name; default: the only appsink), ``max_buffers`` (appsink
queue bound when the pipeline leaves it unbounded; default 16),
``prefix`` (frame id prefix; default ``gst``), ``station``, ``bit_depth``
(significant bits of GRAY16 frames for the sidecar, e.g. 12; default 16).

End of stream → `EndOfStream`; a pipeline error → `SourceError` carrying
GStreamer's message and the element that posted it; `read(timeout_s)` waits in
``appsink.try_pull_sample`` and never longer than ``timeout_s``.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from inspectd.frames import Frame, FrameError, FrameReadError, Sidecar
from inspectd.sources.base import EndOfStream, SourceConfigBase, SourceError


def preload_libgcc_s() -> None:
    """Put libgcc_s in the global symbol scope before GStreamer is loaded.

    Debian's libgstreamer links libunwind, and gi opens it RTLD_GLOBAL, so
    libunwind's ``_Unwind_RaiseException`` would shadow libgcc_s's for every
    library resolved later. A C++ exception thrown afterwards (torch's JIT
    tracer throws them on purpose) then crashes the process (SIGSEGV/SIGABRT).
    This was seen here, when `torch.onnx.export` ran in a pytest session that had
    initialised GStreamer; the same problem is ros2/rclpy#1149. Loading libgcc_s first makes
    the lookups find the right unwinder. Harmless when it is already loaded.
    """
    import ctypes
    import os

    try:
        ctypes.CDLL("libgcc_s.so.1", mode=os.RTLD_GLOBAL)
    except OSError:  # pragma: no cover - not glibc/gcc
        pass


try:  # guarded import: GStreamer is a system package (make sysdeps), not a pip dependency
    preload_libgcc_s()
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    gi.require_version("GstVideo", "1.0")
    with warnings.catch_warnings():  # gi's importer predates exec_module: an ImportWarning, harmless
        warnings.simplefilter("ignore", ImportWarning)
        from gi.repository import GLib, Gst, GstApp, GstVideo  # noqa: F401  (GstApp: appsink methods)

    _IMPORT_ERROR: Exception | None = None
except (ImportError, ValueError) as e:  # ValueError: gi present but the Gst typelib is not
    _IMPORT_ERROR = e

SCHEME = "gst"
TARGET_FIELD = "pipeline"
FORMATS = {"GRAY8": np.dtype(np.uint8), "GRAY16_LE": np.dtype("<u2")}
SINK_CAPS = "video/x-raw,format={GRAY8,GRAY16_LE}"
OPEN_TIMEOUT_S = 10.0

_init_lock = threading.Lock()


def require_gst() -> None:
    """Import and initialise GStreamer once, or raise SourceError saying how to install it."""
    if _IMPORT_ERROR is not None:
        raise SourceError(
            f"GStreamer is not available to this Python ({type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}); "
            "install it with `make sysdeps` (Debian python3-gi, gir1.2-gstreamer-1.0, gstreamer1.0-plugins-*)"
        )
    with _init_lock:
        if not Gst.is_initialized():
            Gst.init(None)


class GstSourceConfig(SourceConfigBase):
    type: Literal["gst"] = "gst"
    pipeline: str = Field(min_length=1)
    sink: str | None = Field(None, description="appsink name; default: the only appsink of the pipeline")
    max_buffers: int = Field(16, ge=1, le=10000, description="appsink queue bound if the pipeline sets none")
    prefix: str = Field("gst", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    station: str | None = None
    bit_depth: int = Field(16, ge=9, le=16, description="significant bits of GRAY16_LE frames (sidecar)")

    def max_frame_bytes(self) -> int | None:
        """From width=/height= in the pipeline's caps, if written there (2 bytes per pixel, to be safe)."""
        w = re.findall(r"\bwidth=(?:\(int\))?(\d+)", self.pipeline)
        h = re.findall(r"\bheight=(?:\(int\))?(\d+)", self.pipeline)
        if not w or not h:
            return None
        return max(int(x) for x in w) * max(int(y) for y in h) * 2


CONFIG = GstSourceConfig


def config_from_uri(target: str, params: dict[str, str]) -> GstSourceConfig:
    if not target.strip():
        raise SourceError(
            "gst needs a pipeline ending in appsink, e.g. "
            "gst:videotestsrc ! video/x-raw,format=GRAY8,width=640,height=480 ! appsink name=sink"
        )
    return GstSourceConfig.model_validate({"pipeline": target.strip(), **params})


def _bus_error(bus, wait_s: float = 0.0) -> str | None:
    """The first error on the bus as one line (element: message (debug)), or None (after up to `wait_s`)."""
    msg = bus.timed_pop_filtered(int(wait_s * Gst.SECOND), Gst.MessageType.ERROR)
    if msg is None:
        return None
    err, debug = msg.parse_error()
    where = msg.src.get_name() if msg.src is not None else "pipeline"
    text = f"{where}: {err.message}"
    if debug:
        text += f" ({debug.splitlines()[-1].strip()})"
    if "not-negotiated" in (debug or "") or "not negotiated" in err.message.lower():
        text += (
            "; the appsink takes only video/x-raw GRAY8 or GRAY16_LE: "
            "put `videoconvert ! video/x-raw,format=GRAY8` (or GRAY16_LE) before it"
        )
    return text


def sample_to_array(sample) -> np.ndarray:
    """A 2-D uint8/uint16 copy of a GRAY8/GRAY16_LE sample (row padding removed). Raises ValueError."""
    caps = sample.get_caps()
    if caps is None or caps.get_size() == 0:
        raise ValueError("sample without caps")
    s = caps.get_structure(0)
    fmt = s.get_value("format")
    if s.get_name() != "video/x-raw" or fmt not in FORMATS:
        raise ValueError(f"caps {caps.to_string()} are not video/x-raw GRAY8/GRAY16_LE")
    info = GstVideo.VideoInfo.new_from_caps(caps)
    width, height = info.width, info.height
    dtype = FORMATS[fmt]
    buf = sample.get_buffer()
    stride, offset = info.stride[0], info.offset[0]
    meta = GstVideo.buffer_get_video_meta(buf)
    if meta is not None:
        stride, offset = meta.stride[0], meta.offset[0]
    need = offset + stride * (height - 1) + width * dtype.itemsize
    size = buf.get_size()
    if size < need:
        raise ValueError(f"buffer of {size} bytes is too small for {width}x{height} {fmt} (stride {stride})")
    data = np.frombuffer(buf.extract_dup(offset, need), np.uint8)  # a copy out of the GstBuffer
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, width * dtype.itemsize), strides=(stride, 1))
    native = np.uint8 if dtype.itemsize == 1 else np.uint16
    return np.ascontiguousarray(rows).view(dtype).astype(native, copy=False)


class GstSource:
    def __init__(self, cfg: GstSourceConfig):
        require_gst()
        self.cfg = cfg
        short = cfg.pipeline if len(cfg.pipeline) <= 60 else cfg.pipeline[:57] + "..."
        self.name = f"gst:{short}"
        self.pipeline = None
        self.appsink = None
        self.bus = None
        self.live = False
        self.frames = 0
        self.unreadable = 0
        self._error: str | None = None

    # ------------------------------------------------------------------ open / close

    def _find_sink(self, pipe):
        if self.cfg.sink:
            el = pipe.get_by_name(self.cfg.sink)
            if el is None:
                raise SourceError(f"gst: no element named {self.cfg.sink!r} in the pipeline")
            if el.get_factory() is None or el.get_factory().get_name() != "appsink":
                raise SourceError(f"gst: element {self.cfg.sink!r} is a {el.get_factory().get_name()}, not an appsink")
            return el
        sinks = []
        it = pipe.iterate_recurse()
        while True:
            res, el = it.next()
            if res != Gst.IteratorResult.OK:
                break
            f = el.get_factory()
            if f is not None and f.get_name() == "appsink":
                sinks.append(el)
        if not sinks:
            raise SourceError("gst: the pipeline has no appsink; end it in `! appsink name=sink`")
        if len(sinks) > 1:
            names = ", ".join(s.get_name() for s in sinks)
            raise SourceError(f"gst: the pipeline has {len(sinks)} appsinks ({names}); pick one with ?sink=NAME")
        return sinks[0]

    def open(self) -> None:
        self.close()
        self._error = None
        try:
            pipe = Gst.parse_launch(self.cfg.pipeline)
        except GLib.Error as e:
            raise SourceError(f"gst: cannot build the pipeline: {e.message}") from e
        if not isinstance(pipe, Gst.Pipeline):  # a single element: wrap it
            wrapped = Gst.Pipeline.new("inspectd-gst")
            wrapped.add(pipe)
            pipe = wrapped
        sink = self._find_sink(pipe)
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string(SINK_CAPS))
        if sink.get_property("max-buffers") == 0:
            sink.set_property("max-buffers", self.cfg.max_buffers)
        sink.set_property("emit-signals", False)
        self.pipeline, self.appsink, self.bus = pipe, sink, pipe.get_bus()
        # PAUSED first: a live pipeline answers NO_PREROLL there (the standard liveness test)
        ret = pipe.set_state(Gst.State.PAUSED)
        self.live = ret == Gst.StateChangeReturn.NO_PREROLL
        if ret != Gst.StateChangeReturn.FAILURE:
            ret = pipe.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.ASYNC:
            ret, _, _ = pipe.get_state(int(OPEN_TIMEOUT_S * Gst.SECOND))
            if ret == Gst.StateChangeReturn.ASYNC:
                self.close()
                raise SourceError(f"gst: the pipeline did not start within {OPEN_TIMEOUT_S:g} s")
        if ret == Gst.StateChangeReturn.FAILURE:
            msg = _bus_error(self.bus, 1.0) or "the pipeline failed to start (no error message)"
            self.close()
            raise SourceError(f"gst: cannot start the pipeline: {msg}")
        err = _bus_error(self.bus)
        if err:
            self.close()
            raise SourceError(f"gst: pipeline error: {err}")

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.set_state(Gst.State.NULL)
        self.pipeline = self.appsink = self.bus = None

    # ------------------------------------------------------------------ reading

    def _raise_if_error(self) -> None:
        if self._error is None and self.bus is not None:
            self._error = _bus_error(self.bus)
        if self._error is not None:
            raise SourceError(f"gst: pipeline error: {self._error}")

    def _stamp(self, pts: int) -> int:
        now = time.time_ns()
        if not self.live or pts == Gst.CLOCK_TIME_NONE:
            return now
        clock = self.pipeline.get_clock()
        if clock is None:
            return now
        captured = self.pipeline.get_base_time() + pts  # in the pipeline clock's time
        age = clock.get_time() - captured
        return now - age if 0 <= age < 60 * Gst.SECOND else now

    def read(self, timeout_s: float) -> Frame | FrameReadError | None:
        if self.appsink is None:
            raise SourceError("gst: read() before open()")
        self._raise_if_error()
        sample = self.appsink.try_pull_sample(max(0, int(timeout_s * Gst.SECOND)))
        if sample is None:
            self._raise_if_error()
            if self.appsink.is_eos():
                raise EndOfStream(self.name)
            return None
        buf = sample.get_buffer()
        frame_id = f"{self.cfg.prefix}-{self.frames:06d}"
        self.frames += 1
        pts = buf.pts
        t_ns = self._stamp(pts)
        try:
            img = sample_to_array(sample)
            extra = {}  # Sidecar keeps extra keys: what GStreamer said about this buffer
            if pts != Gst.CLOCK_TIME_NONE:
                extra["pts_ns"] = int(pts)
            if buf.offset != Gst.BUFFER_OFFSET_NONE:
                extra["buffer_offset"] = int(buf.offset)
            meta = Sidecar(
                station=self.cfg.station,
                bit_depth=8 if img.dtype == np.uint8 else self.cfg.bit_depth,
                t_acquired_ns=t_ns,
                **extra,
            )
            return Frame(frame_id=frame_id, image=img, meta=meta)
        except (ValueError, FrameError) as e:  # it still gets its ERROR verdict
            self.unreadable += 1
            msg = str(e) if str(e).startswith(frame_id) else f"{frame_id}: {e}"
            return FrameReadError(frame_id=frame_id, path=Path(self.name), message=msg)


def create(cfg: GstSourceConfig) -> GstSource:
    return GstSource(cfg)
