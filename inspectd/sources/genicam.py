"""`genicam:[SERIAL]?cti=PATH&pixel_format=auto&...` — a GenICam detector through Harvesters (GenTL).

The GenTL producer (``.cti``) comes from ``cti=`` (a file, or a folder of them)
or, the standard way, from every ``.cti`` file in the folders named by
``GENICAM_GENTL64_PATH``. The device is the first one found, or the one whose
serial number is SERIAL (``model=`` and ``user_id=`` narrow it further).

Parameters (all optional; a parameter not given leaves the device as it is):

- ``pixel_format``: ``auto`` (default: the deepest mono format the device
  offers), ``Mono8``, ``Mono10``, ``Mono12``, ``Mono14``, ``Mono16``, or the
  packed ``Mono10p``, ``Mono12p``, ``Mono14p``, ``Mono10Packed``,
  ``Mono12Packed`` (unpacked here). 10–16-bit formats arrive as uint16 with
  ``Sidecar.bit_depth`` set.
- ``width``, ``height``, ``offset_x``, ``offset_y``, ``binning`` (both axes),
  ``exposure_us``, ``gain``, ``fps``: written to the standard SFNC nodes;
  a device that lacks a node, or a value outside the node's range, is a
  `SourceError` naming the node and the range.
- ``trigger``: ``off`` (free-run), ``software`` (the source fires
  TriggerSoftware whenever it wants a frame, paced by ``fps`` if given), or
  ``line0``..``line9`` (hardware FrameStart trigger on that line).
- ``timeout_ms`` (default 1000): in free-run (or after a software trigger) a
  frame is expected at least this often; each such period without one counts
  a timeout. ``lost_after`` (default 3) timeouts in a row, or any GenTL error
  from the acquisition, mean the device is lost.

Acquisition follows the Harvesters maintainers' advice: ``ia.fetch(timeout=…)``
always (never an unbounded wait) in a ``with`` block, and the pixels are copied
out of the buffer before it is queued back to the producer. Incomplete buffers
are counted and come out as `FrameReadError` (an ERROR verdict for that frame).
The device timestamp and frame id go into the sidecar (``device_timestamp``,
``device_frame_id``) when the producer gives them; the part id comes from a
chunk named like ``ChunkPartId`` when the device has one, else it stays None.

On device loss the connection is torn down and re-made from a background
thread with exponential backoff (0.5 s doubling to 10 s); meanwhile `read()`
raises `DeviceLost` at once (the daemon counts a source error and backs off),
so the acquisition thread never hangs. `health` reports connected,
reconnects, losses, incomplete, timeouts, frames and the last error.

This module is the plugin (``SCHEME``, the config, `GenicamSource`,
``create``); the rest lives beside it:

- `inspectd.sources.pixel_formats`: the mono pixel formats and
  `payload_to_image` (unpacking, no Harvesters needed);
- `inspectd.sources.genicam_nodes`: `find_producers`, device descriptions and
  the node-map helpers (`set_node`, `try_set_node`, ...);
- `inspectd.sources.genicam_device`: `Connection` (the open device:
  configure, triggers, part-id chunk, close), `DeviceLost`, `GenicamHealth`;
- `inspectd.sources.genicam_buffer`: a buffer's image (straight into a ring
  slot) and the device's frame id and timestamp.

`PixelFormatError`, `payload_to_image`, `find_producers` and `DeviceLost`
stay importable from here.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from inspectd.frames import Frame, FrameReadError, Sidecar
from inspectd.osthread import named_thread
from inspectd.sources.base import Alloc, Pacer, SourceConfigBase, SourceError
from inspectd.sources.genicam_device import Connection, DeviceLost, GenicamHealth, IncompleteBuffer
from inspectd.sources.genicam_nodes import ENV_PATH, find_producers
from inspectd.sources.genicam_buffer import buffer_image, buffer_stamps
from inspectd.sources.pixel_formats import PixelFormatError, PixelFormatName, payload_to_image

try:  # guarded import: harvesters/genicam are the optional `genicam` extra
    from genicam.gentl import TimeoutException as GenTLTimeout
    from harvesters.core import DeviceInfo  # noqa: F401  (only to learn here whether harvesters is installed)

    _IMPORT_ERROR: Exception | None = None
except ImportError as e:  # pragma: no cover - exercised only where the extra is missing
    _IMPORT_ERROR = e

__all__ = [  # the plugin, and the parts that moved out but stay importable from here
    "CONFIG",
    "SCHEME",
    "DeviceLost",
    "GenicamSource",
    "GenicamSourceConfig",
    "PixelFormatError",
    "config_from_uri",
    "create",
    "find_producers",
    "payload_to_image",
]

SCHEME = "genicam"
TARGET_FIELD = "serial"
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0

# ------------------------------------------------------------------ config


class GenicamSourceConfig(SourceConfigBase):
    type: Literal["genicam"] = "genicam"
    serial: str | None = Field(None, description="device serial number; default: the first device found")
    cti: Path | None = Field(None, description=f"GenTL producer file or folder; default: ${ENV_PATH}")
    pixel_format: PixelFormatName = "auto"
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    offset_x: int | None = Field(None, ge=0)
    offset_y: int | None = Field(None, ge=0)
    binning: int | None = Field(None, ge=1, le=64)
    exposure_us: float | None = Field(None, gt=0)
    gain: float | None = None
    fps: float | None = Field(None, gt=0, le=100000)
    trigger: str | None = Field(None, description="off | software | line0..line9; default: as the device is")
    timeout_ms: int = Field(1000, ge=10, le=600000)
    lost_after: int = Field(3, ge=1, le=1000, description="timeouts in a row that mean the device is lost")
    model: str | None = None
    user_id: str | None = None

    @field_validator("serial", "model", "user_id", mode="before")
    @classmethod
    def _blank_is_none(cls, v):
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("trigger", mode="before")
    @classmethod
    def _trigger(cls, v):
        if v is None:
            return None
        s = str(v).strip().lower()
        if not re.fullmatch(r"off|software|line[0-9]", s):
            raise ValueError("expected off, software or line0..line9")
        return s

    def max_frame_bytes(self) -> int | None:
        if self.width is None or self.height is None:
            return None  # the device decides; the ring's default slot (2048x2048x16 bit) must hold it
        return self.width * self.height * (1 if self.pixel_format == "Mono8" else 2)


CONFIG = GenicamSourceConfig


def config_from_uri(target: str, params: dict[str, str]) -> GenicamSourceConfig:
    target = target.strip().strip("/")
    data: dict[str, Any] = dict(params)
    if target:
        if "serial" in data:
            raise SourceError("serial given twice (genicam:SERIAL and serial=)")
        data["serial"] = target
    return GenicamSourceConfig.model_validate(data)


# ------------------------------------------------------------------ the source


class GenicamSource:
    def __init__(self, cfg: GenicamSourceConfig):
        self.cfg = cfg
        self.name = f"genicam:{cfg.serial or ''}"
        self.health = GenicamHealth()
        self._conn: Connection | None = None
        self._opened = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reconnector: threading.Thread | None = None
        self._attempt = 0
        self._next_attempt: float | None = None
        self._lost_at: float | None = None
        self.last_reconnect_s: float | None = None  # loss to first frame-ready connection
        self._k = 0
        self.paused = False  # the daemon cannot account for frames now: the device is stopped (AcquisitionStop)
        self._pacer = Pacer(cfg.fps if cfg.trigger == "software" and cfg.fps else 0.0)
        import structlog

        self.log = structlog.get_logger("inspectd.sources")

    # -------------------------------------------------------------- open / close

    def open(self) -> None:
        # Harvesters logs GenTL errors with tracebacks on stderr; the source reports each one itself, in one line
        logging.getLogger("harvesters").setLevel(logging.CRITICAL)
        logging.getLogger("harvesters.core").setLevel(logging.CRITICAL)
        if _IMPORT_ERROR is not None:
            raise SourceError(
                f"the genicam source needs harvesters and genicam (pip install 'inspectd[genicam]'): {_IMPORT_ERROR}"
            )
        if self._opened:
            self.close()
        self._stop.clear()
        conn = Connection(self.cfg)
        try:
            conn.open()
        except SourceError as e:
            raise SourceError(f"genicam source: {e}") from e
        self._adopt(conn)
        self._opened = True
        self.log.info(
            "genicam_opened", device=conn.device, pixel_format=conn.pixel_format, triggered=conn.triggered,
            part_id_chunk=conn.part_node_name,
        )  # fmt: skip

    @property
    def frame_bytes(self) -> int | None:
        """Size of the frames the open device delivers (the daemon checks its ring slots against it)."""
        conn = self._conn
        return getattr(conn, "frame_bytes", None) if conn is not None else None

    def _adopt(self, conn: Connection) -> None:
        with self._lock:
            self._conn = conn
            self.health.connected = True
            self.health.device = conn.device
            self.health.pixel_format = conn.pixel_format
            self.name = f"genicam:{conn.serial or ''}"

    def close(self) -> None:
        self._stop.set()
        t = self._reconnector
        if t is not None and t.is_alive():
            t.join(timeout=RECONNECT_MAX_S + 5.0)
        self._reconnector = None
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.health.connected = False
        self._opened = False

    # -------------------------------------------------------------- pause / resume (the daemon's journal is full)

    def pause(self) -> None:
        """Stop the device's acquisition (AcquisitionStop): frames are not taken, not exposed and dropped."""
        conn = self._conn
        self.paused = True
        if conn is not None and conn.ia is not None and conn.ia.is_acquiring():
            conn.ia.stop()
            self.log.warning("genicam_paused", device=conn.device)

    def resume(self) -> None:
        """Start acquiring again after `pause`."""
        conn = self._conn
        self.paused = False
        if conn is not None and conn.ia is not None and not conn.ia.is_acquiring():
            conn.ia.start()
            conn.t_progress = time.monotonic()
            conn.trigger_outstanding_since = None
            self.log.info("genicam_resumed", device=conn.device)

    # -------------------------------------------------------------- device loss

    def _lose(self, conn: Connection, why: str) -> DeviceLost:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        self.health.connected = False
        self.health.losses += 1
        self.health.last_error = why
        self._lost_at = time.monotonic()
        self._attempt = 0
        self._next_attempt = time.monotonic() + RECONNECT_FIRST_S
        self.log.warning("genicam_lost", device=conn.device, msg=why)
        self._reconnector = named_thread(self._reconnect_loop, "inspectd-genicam-reconnect", args=(conn,))
        self._reconnector.start()
        return DeviceLost(f"genicam {conn.device}: device lost ({why}); reconnecting")

    def _reconnect_loop(self, old: Connection) -> None:
        old.close()
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            self._attempt += 1
            self._next_attempt = time.monotonic() + delay
            if self._stop.wait(delay):
                return
            conn = Connection(self.cfg)
            try:
                conn.open()
            except Exception as e:
                self.health.last_error = f"reconnect attempt {self._attempt}: {e}"
                self.log.warning("genicam_reconnect_failed", attempt=self._attempt, retry_in_s=min(delay * 2, RECONNECT_MAX_S), msg=str(e))
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            if self._stop.is_set():
                conn.close()
                return
            self._adopt(conn)
            self.health.reconnects += 1
            down = time.monotonic() - self._lost_at if self._lost_at else None
            self.last_reconnect_s = down
            self.log.info("genicam_reconnected", device=conn.device, attempt=self._attempt, down_s=round(down or 0, 3))
            return

    # -------------------------------------------------------------- read

    def read(self, timeout_s: float) -> Frame | FrameReadError | None:
        return self.read_into(timeout_s, None)

    def read_into(self, timeout_s: float, alloc: Alloc | None) -> Frame | FrameReadError | None:
        """`read`, the image copied out of the producer's buffer straight into `alloc(shape, dtype)` when that
        gives an array (the daemon's frame-ring slot), else into a new one."""
        t_end = time.monotonic() + max(0.0, timeout_s)
        conn = self._conn
        if conn is None:
            if not self._opened:
                raise SourceError("genicam: read() before open()")
            wait = max(0.0, (self._next_attempt or 0.0) - time.monotonic())
            raise DeviceLost(
                f"genicam {self.health.device}: device lost ({self.health.last_error}); "
                f"reconnecting (attempt {max(1, self._attempt)}, next try in {wait:.1f} s)"
            )
        ia = conn.ia
        if self.paused:  # stopped on purpose: not a lost device
            time.sleep(min(0.05, max(0.0, t_end - time.monotonic())))
            return None
        if ia is None or not ia.is_valid() or not ia.is_acquiring():
            raise self._lose(conn, "the image acquirer stopped acquiring")
        if self.cfg.trigger == "software" and conn.trigger_outstanding_since is None:
            if not self._pacer.wait(max(0.0, t_end - time.monotonic())):
                return None
            try:
                conn.fire_software_trigger()
            except Exception as e:
                raise self._lose(conn, f"TriggerSoftware failed: {type(e).__name__}: {e}") from e
        left = max(0.001, t_end - time.monotonic())  # fetch(timeout=0) would wait forever
        try:
            with ia.fetch(timeout=left) as buf:
                return self._take(conn, buf, alloc)
        except IncompleteBuffer:
            self.health.incomplete += 1
            conn.trigger_outstanding_since = None
            k = self._k
            self._k += 1
            return FrameReadError(
                frame_id=self._frame_id(conn, k),
                path=Path(self.name),
                message=f"{self.name}: incomplete buffer from the device ({self.health.incomplete} so far)",
            )
        except GenTLTimeout:
            return self._timed_out(conn)
        except Exception as e:  # a GenTL/GenApi error, or the acquirer torn down underneath us
            raise self._lose(conn, f"{type(e).__name__}: {e}".rstrip(": ")) from e

    def _timed_out(self, conn: Connection) -> None:
        now = time.monotonic()
        if not conn.expecting():
            conn.t_progress = now  # waiting for a hardware trigger is not a stall
            return None
        since = conn.trigger_outstanding_since if conn.trigger_outstanding_since is not None else conn.t_progress
        if now - max(since, conn.t_progress) < self.cfg.timeout_ms / 1000.0:
            return None
        self.health.timeouts += 1
        conn.stalls += 1
        conn.t_progress = now
        conn.trigger_outstanding_since = None  # a software trigger is fired again
        if conn.stalls >= self.cfg.lost_after:
            raise self._lose(conn, f"no frame for {conn.stalls} x {self.cfg.timeout_ms} ms")
        return None

    def _frame_id(self, conn: Connection, k: int) -> str:
        return f"genicam-{conn.serial or 'dev'}-{k:06d}"

    def _take(self, conn: Connection, buf: Any, alloc: Alloc | None = None) -> Frame | FrameReadError:
        """Copy the image out of `buf` (still owned by us: it is queued back when the with block ends)."""
        t_ns = time.time_ns()
        conn.t_progress = time.monotonic()
        conn.stalls = 0
        conn.trigger_outstanding_since = None
        k = self._k
        self._k += 1
        frame_id = self._frame_id(conn, k)
        extra: dict[str, Any] = {"camera": conn.device, **buffer_stamps(buf)}
        try:
            image, bits = buffer_image(buf, alloc)
            part_id = conn.part_id()
        except Exception as e:
            return FrameReadError(frame_id=frame_id, path=Path(self.name), message=f"{self.name}: {e}")
        self.health.frames += 1
        meta = Sidecar(part_id=part_id, bit_depth=bits, t_acquired_ns=t_ns, **extra)
        try:
            return Frame(frame_id=frame_id, image=image, meta=meta)
        except Exception as e:  # e.g. an image smaller than 16 px
            return FrameReadError(frame_id=frame_id, path=Path(self.name), message=f"{self.name}: {e}")


def create(cfg: GenicamSourceConfig) -> GenicamSource:
    return GenicamSource(cfg)
