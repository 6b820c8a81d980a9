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
"""

from __future__ import annotations

import ctypes
import glob
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from inspectd.frames import Frame, FrameReadError, Sidecar
from inspectd.sources.base import Pacer, SourceConfigBase, SourceError

try:  # guarded import: harvesters/genicam are the optional `genicam` extra
    from genicam.genapi import EInterfaceType
    from genicam.genapi import GenericException as GenApiError
    from genicam.genapi import LogicalErrorException
    from genicam.genapi import is_available as _node_available
    from genicam.genapi import is_writable as _node_writable
    from genicam.gentl import TimeoutException as GenTLTimeout
    from harvesters.core import Callback, DeviceInfo, Harvester, ImageAcquirer

    _IMPORT_ERROR: Exception | None = None
except ImportError as e:  # pragma: no cover - exercised only where the extra is missing
    _IMPORT_ERROR = e
    Callback = object  # type: ignore[assignment,misc]

SCHEME = "genicam"
TARGET_FIELD = "serial"
ENV_PATH = "GENICAM_GENTL64_PATH"
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0

# ------------------------------------------------------------------ pixel formats

# name -> (bits per pixel, layout): "u8"/"u16" unpacked, "lsb" PFNC packed (Mono10p...), "gige" GigE Vision packed
PIXEL_FORMATS: dict[str, tuple[int, str]] = {
    "Mono8": (8, "u8"),
    "Mono10": (10, "u16"),
    "Mono12": (12, "u16"),
    "Mono14": (14, "u16"),
    "Mono16": (16, "u16"),
    "Mono10p": (10, "lsb"),
    "Mono12p": (12, "lsb"),
    "Mono14p": (14, "lsb"),
    "Mono10Packed": (10, "gige"),
    "Mono12Packed": (12, "gige"),
}
# `auto` picks the first of these the device offers: deepest first, unpacked before packed (less CPU)
AUTO_ORDER = ["Mono16", "Mono14", "Mono14p", "Mono12", "Mono12p", "Mono12Packed", "Mono10", "Mono10p", "Mono10Packed", "Mono8"]
PixelFormatName = Literal[
    "auto", "Mono8", "Mono10", "Mono12", "Mono14", "Mono16",
    "Mono10p", "Mono12p", "Mono14p", "Mono10Packed", "Mono12Packed",
]  # fmt: skip


class PixelFormatError(ValueError):
    """A payload that cannot be turned into a mono image (unsupported format, short buffer)."""


def _packed_bytes(npx: int, bits: int, layout: str) -> int:
    """Bytes that hold `npx` packed pixels (GigE Vision "Packed" spends 3 bytes per 2 pixels even at 10 bits)."""
    if layout == "gige":
        return -(-npx // 2) * 3
    return -(-npx * bits // 8)


def _unpack_groups(rows: np.ndarray, bits: int, layout: str, npx: int) -> np.ndarray:
    """Unpack each row of packed bytes `rows` (2-D uint8) into `npx` pixels (2-D uint16)."""
    if layout == "lsb":  # PFNC "p": a little-endian bit stream, pixel i at bits [i*b, (i+1)*b)
        group_px = 8 // math.gcd(bits, 8)
        group_bytes = group_px * bits // 8
    else:  # GigE Vision "Packed": 2 pixels in 3 bytes, high bits in bytes 0 and 2, low bits in byte 1
        group_px, group_bytes = 2, 3
    h, nbytes = rows.shape
    groups = -(-npx // group_px)
    if nbytes < groups * group_bytes:  # the last group of a row may be partial: pad with zeros
        rows = np.concatenate([rows, np.zeros((h, groups * group_bytes - nbytes), np.uint8)], axis=1)
    g = rows[:, : groups * group_bytes].reshape(h, groups, group_bytes)
    if layout == "lsb":
        v = np.zeros((h, groups), np.uint64)
        for i in range(group_bytes):
            v |= g[:, :, i].astype(np.uint64) << np.uint64(8 * i)
        mask = np.uint64((1 << bits) - 1)
        px = np.stack([(v >> np.uint64(bits * j)) & mask for j in range(group_px)], axis=-1).astype(np.uint16)
    else:
        lo_bits = bits - 8
        lo_mask = (1 << lo_bits) - 1
        b0, b1, b2 = (g[:, :, i].astype(np.uint16) for i in range(3))
        p0 = (b0 << lo_bits) | (b1 & lo_mask)
        p1 = (b2 << lo_bits) | ((b1 >> 4) & lo_mask)
        px = np.stack([p0, p1], axis=-1)
    return px.reshape(h, groups * group_px)[:, :npx]


def payload_to_image(
    raw: np.ndarray | bytes | memoryview, pixel_format: str, width: int, height: int, padding_x: int = 0
) -> tuple[np.ndarray, int]:
    """A GenTL image payload as a new 2-D uint8/uint16 array (never a view of `raw`), and its bit depth.

    `raw` holds the payload bytes from the start of the image; `padding_x` is
    GenTL's BUFFER_INFO_PADDING_X (bytes appended to every line). Unpacked
    10–16-bit formats are little-endian 16-bit words; packed formats are the
    PFNC LSB-first ``...p`` layout (lines packed back to back when there is no
    line padding) or the GigE Vision ``...Packed`` layout.
    """
    if pixel_format not in PIXEL_FORMATS:
        supported = ", ".join(PIXEL_FORMATS)
        raise PixelFormatError(f"pixel format {pixel_format!r} is not supported (supported: {supported})")
    bits, layout = PIXEL_FORMATS[pixel_format]
    if width <= 0 or height <= 0:
        raise PixelFormatError(f"{pixel_format} payload with an empty size {width}x{height}")
    if padding_x < 0:
        raise PixelFormatError(f"negative line padding {padding_x}")
    buf = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1).view(np.uint8)
    if layout in ("u8", "u16"):
        bpp = 1 if layout == "u8" else 2
        line = width * bpp
        stride = line + padding_x
        need = stride * height
        if buf.size < need:
            raise PixelFormatError(
                f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {need}"
                + (f" (lines of {line} + {padding_x} padding bytes)" if padding_x else "")
            )
        rows = buf[:need].reshape(height, stride)[:, :line]
        img = np.array(rows, copy=True, order="C")  # the copy: the buffer goes back to the producer after this
        if bpp == 2:
            img = img.view(np.dtype("<u2")).astype(np.uint16, copy=False).reshape(height, width)
        return img, bits
    if padding_x == 0:  # packed back to back: the whole image is one bit stream
        need = _packed_bytes(width * height, bits, layout)
        if buf.size < need:
            raise PixelFormatError(f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {need}")
        img = _unpack_groups(buf[:need].reshape(1, need), bits, layout, width * height).reshape(height, width)
    else:  # every line starts on a byte boundary, followed by padding_x bytes
        line = _packed_bytes(width, bits, layout)
        stride = line + padding_x
        if buf.size < stride * height:
            raise PixelFormatError(
                f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {stride * height} "
                f"(lines of {line} + {padding_x} padding bytes)"
            )
        img = _unpack_groups(buf[: stride * height].reshape(height, stride)[:, :line], bits, layout, width)
    return np.ascontiguousarray(img, dtype=np.uint16), bits


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


# ------------------------------------------------------------------ producers and devices


def find_producers(cti: Path | None, env: dict[str, str] | None = None) -> list[str]:
    """The .cti files to load: `cti` (a file or a folder), else every .cti in the folders of $GENICAM_GENTL64_PATH."""
    env = os.environ if env is None else env
    if cti is not None:
        p = Path(cti).expanduser()
        if p.is_dir():
            found = sorted(glob.glob(str(p / "*.cti")))
            if not found:
                raise SourceError(f"cti={cti}: the folder holds no .cti file")
            return found
        if not p.is_file():
            raise SourceError(f"cti={cti}: no such GenTL producer file")
        return [str(p)]
    raw = env.get(ENV_PATH, "")
    folders = [f for f in raw.split(os.pathsep) if f.strip()]
    if not folders:
        raise SourceError(f"no GenTL producer: give cti=PATH or set {ENV_PATH} (it is unset or empty)")
    found = []
    for f in folders:
        found += [c for c in sorted(glob.glob(os.path.join(f, "*.cti"))) if c not in found]
    if not found:
        raise SourceError(f"no GenTL producer (.cti) in {ENV_PATH}={raw!r}; searched: {', '.join(folders)}")
    return found


def _info(d: Any, attr: str) -> str | None:
    try:
        v = getattr(d, attr)
    except Exception:
        return None
    return None if v in (None, "") else str(v)


def _describe(d: Any) -> str:
    parts = [f"serial {_info(d, 'serial_number') or '?'}"]
    for attr, label in (("model", "model"), ("user_defined_name", "user id")):
        v = _info(d, attr)
        if v:
            parts.append(f"{label} {v}")
    return " ".join(parts)


# ------------------------------------------------------------------ node map


def _node(nm: Any, name: str):
    try:
        n = nm.get_node(name)
    except LogicalErrorException:
        return None
    try:
        return n if _node_available(n) else None
    except GenApiError:
        return None


def _frame_bytes(nm: Any, pixel_format: str | None) -> int | None:
    """Bytes of one delivered frame (Mono8 -> uint8, deeper -> uint16) as configured, or None if unknown."""
    w, h = _node(nm, "Width"), _node(nm, "Height")
    try:
        if w is None or h is None:
            return None
        return int(w.value) * int(h.value) * (1 if pixel_format == "Mono8" else 2)
    except Exception:
        return None


def _first_node(nm: Any, names: tuple[str, ...]):
    for name in names:
        n = _node(nm, name)
        if n is not None:
            return name, n
    return None, None


def _set(nm: Any, names: tuple[str, ...], value: Any, param: str, device: str, what: str | None = None) -> None:
    """Write `value` to the first of `names` the device has; SourceError names the node, the value and the range.

    `what` is how the error names the setting (default ``param=value``).
    """
    name, node = _first_node(nm, names)
    what = what or f"{param}={value}"
    if node is None:
        also = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
        raise SourceError(f"{what}: the device ({device}) has no node {names[0]}{also}")
    kind = node.node.principal_interface_type
    if kind == EInterfaceType.intfIEnumeration:
        offered = list(node.symbolics)
        if str(value) not in offered:
            raise SourceError(f"{what}: {name} does not offer {value!r} (it offers: {', '.join(offered)})")
    elif kind in (EInterfaceType.intfIInteger, EInterfaceType.intfIFloat):
        try:
            lo, hi = node.min, node.max
        except GenApiError:
            lo = hi = None
        if lo is not None and not lo <= value <= hi:
            raise SourceError(f"{what}: {name} must be within {lo}..{hi}")
        if kind == EInterfaceType.intfIInteger and lo is not None:
            try:
                inc = int(node.inc)
            except GenApiError:
                inc = 1
            if inc > 1 and (int(value) - int(lo)) % inc:
                raise SourceError(f"{what}: {name} must be {lo} + a multiple of {inc} (range {lo}..{hi})")
            value = int(value)
    try:
        if node.value == value:
            return
    except GenApiError:
        pass
    if not _node_writable(node):
        raise SourceError(f"{what}: {name} is not writable on the device now")
    try:
        node.value = value
    except GenApiError as e:
        msg = str(e).split(" : ")[0].strip()
        raise SourceError(f"{what}: the device refused {name} = {value!r}: {msg}") from e


def _try_set(nm: Any, name: str, value: Any) -> bool:
    """Best effort (auto modes off, enables): True when the node exists and took the value."""
    node = _node(nm, name)
    if node is None:
        return False
    try:
        if node.value != value and _node_writable(node):
            node.value = value
        return True
    except GenApiError:
        return False


PART_ID_RE = re.compile(r"^(Chunk)?Part_?I[Dd](Value)?$")


# ------------------------------------------------------------------ a connection


class DeviceLost(SourceError):
    """The device is gone (or not answering); the source is reconnecting. Raised by `read()` meanwhile."""


class _IncompleteBuffer(Exception):
    pass


class _RaiseOnIncomplete(Callback):  # type: ignore[misc,valid-type]
    """Harvesters re-queues an incomplete buffer and calls this; raising ends fetch() so it is counted."""

    def emit(self, context: Any = None) -> None:
        raise _IncompleteBuffer()


@dataclass
class GenicamHealth:
    connected: bool = False
    reconnects: int = 0  # successful reconnections after a loss
    losses: int = 0  # times the device was declared lost
    incomplete: int = 0  # incomplete buffers (each an ERROR verdict)
    timeouts: int = 0  # timeout_ms periods without the frame that was expected
    frames: int = 0
    last_error: str | None = None
    device: str | None = None
    pixel_format: str | None = None


class _Connection:
    """One Harvester + ImageAcquirer, configured and acquiring."""

    def __init__(self, cfg: GenicamSourceConfig):
        self.cfg = cfg
        self.h = None
        self.ia = None
        self.device = "?"
        self.serial = None
        self.pixel_format = None
        self.frame_bytes: int | None = None  # one delivered frame, from Width x Height once configured
        self.triggered = False  # frames come only on a trigger: waiting is not a timeout
        self.part_node = None
        self.part_node_name = None
        self.trigger_outstanding_since: float | None = None
        self.t_progress = time.monotonic()
        self.stalls = 0

    # -------------------------------------------------------------- open

    def open(self) -> None:
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        cfg = self.cfg
        ctis = find_producers(cfg.cti)
        for c in ctis:
            try:
                ctypes.CDLL(c)  # a file that is not a loadable GenTL library: say so (Harvesters would just skip it)
            except OSError as e:
                raise SourceError(f"GenTL producer {c} cannot be loaded: {e}") from e
        self.h = h = Harvester()
        for c in ctis:
            h.add_file(c)
        try:
            h.update()
        except Exception as e:
            raise SourceError(f"GenTL producer {', '.join(ctis)}: device enumeration failed: {e}") from e
        devices = list(h.device_info_list)
        if not devices:
            raise SourceError(f"no GenICam device found through {', '.join(ctis)}")
        wanted = [
            (attr, want, label)
            for attr, want, label in (
                ("serial_number", cfg.serial, "serial"),
                ("model", cfg.model, "model"),
                ("user_defined_name", cfg.user_id, "user id"),
            )
            if want is not None
        ]
        match = [d for d in devices if all(_info(d, a) == w for a, w, _ in wanted)]
        if not match:
            want_s = " ".join(f"{label} {w!r}" for _, w, label in wanted)
            seen = "; ".join(_describe(d) for d in devices)
            raise SourceError(f"no device with {want_s} (seen: {seen})")
        info = match[0]
        self.serial = _info(info, "serial_number")
        self.device = _describe(info)
        try:
            self.ia = ia = h.create(info)
        except Exception as e:
            raise SourceError(f"cannot open device {self.device}: {type(e).__name__}: {e}") from e
        self._configure(ia.remote_device.node_map)
        self.frame_bytes = _frame_bytes(ia.remote_device.node_map, self.pixel_format)
        ia.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _RaiseOnIncomplete())
        try:
            ia.start()
        except Exception as e:
            raise SourceError(f"device {self.device}: cannot start acquisition: {type(e).__name__}: {e}") from e
        self.t_progress = time.monotonic()

    def _configure(self, nm: Any) -> None:
        cfg, dev = self.cfg, self.device
        # pixel format first: it changes the ranges of the others
        pf_node = _node(nm, "PixelFormat")
        if pf_node is None:
            raise SourceError(f"the device ({dev}) has no node PixelFormat")
        offered = list(pf_node.symbolics)
        if cfg.pixel_format == "auto":
            pick = next((f for f in AUTO_ORDER if f in offered), None)
            if pick is None:
                raise SourceError(
                    f"pixel_format=auto: PixelFormat offers no mono format inspectd reads "
                    f"(it offers: {', '.join(offered)}; inspectd reads: {', '.join(AUTO_ORDER)})"
                )
        else:
            pick = cfg.pixel_format
        _set(nm, ("PixelFormat",), pick, "pixel_format", dev)
        self.pixel_format = pick
        _try_set(nm, "AcquisitionMode", "Continuous")
        if cfg.binning is not None:
            _set(nm, ("BinningHorizontal",), cfg.binning, "binning", dev)
            _set(nm, ("BinningVertical",), cfg.binning, "binning", dev)
        # offsets to 0 before the size (the size's range shrinks with the offset), then the requested offsets
        if cfg.offset_x is not None:
            _set(nm, ("OffsetX",), 0, "offset_x", dev)
        if cfg.offset_y is not None:
            _set(nm, ("OffsetY",), 0, "offset_y", dev)
        if cfg.width is not None:
            _set(nm, ("Width",), cfg.width, "width", dev)
        if cfg.height is not None:
            _set(nm, ("Height",), cfg.height, "height", dev)
        if cfg.offset_x is not None:
            _set(nm, ("OffsetX",), cfg.offset_x, "offset_x", dev)
        if cfg.offset_y is not None:
            _set(nm, ("OffsetY",), cfg.offset_y, "offset_y", dev)
        if cfg.exposure_us is not None:
            _try_set(nm, "ExposureAuto", "Off")
            _set(nm, ("ExposureTime", "ExposureTimeAbs"), float(cfg.exposure_us), "exposure_us", dev)
        if cfg.gain is not None:
            _try_set(nm, "GainAuto", "Off")
            name, node = _first_node(nm, ("Gain", "GainRaw"))
            value: float | int = cfg.gain
            if node is not None and node.node.principal_interface_type == EInterfaceType.intfIInteger:
                value = int(round(cfg.gain))
            _set(nm, ("Gain", "GainRaw"), value, "gain", dev)
        if cfg.trigger is not None:
            self._set_trigger(nm)
        else:
            mode = _node(nm, "TriggerMode")
            try:
                self.triggered = mode is not None and str(mode.value) == "On"
            except GenApiError:
                self.triggered = False
        if cfg.fps is not None:
            _try_set(nm, "AcquisitionFrameRateEnable", True)
            _set(nm, ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), float(cfg.fps), "fps", dev)
        self._find_part_id_chunk(nm)

    def _set_trigger(self, nm: Any) -> None:
        cfg, dev = self.cfg, self.device
        what = f"trigger={cfg.trigger}"
        sel = _node(nm, "TriggerSelector")
        if sel is not None and "FrameStart" in list(sel.symbolics):
            _set(nm, ("TriggerSelector",), "FrameStart", "trigger", dev, what)
        if cfg.trigger == "off":
            if _node(nm, "TriggerMode") is not None:
                _set(nm, ("TriggerMode",), "Off", "trigger", dev, what)
            self.triggered = False
            return
        source = "Software" if cfg.trigger == "software" else f"Line{cfg.trigger[4:]}"
        _set(nm, ("TriggerMode",), "On", "trigger", dev, what)
        _set(nm, ("TriggerSource",), source, "trigger", dev, what)
        if cfg.trigger == "software" and _node(nm, "TriggerSoftware") is None:
            raise SourceError(f"trigger=software: the device ({dev}) has no node TriggerSoftware")
        self.triggered = True

    def _find_part_id_chunk(self, nm: Any) -> None:
        try:
            names = [n.node.name for n in nm.nodes]
        except Exception:
            return
        chunk = next((n for n in names if PART_ID_RE.match(n)), None)
        if chunk is None:
            return
        sel = _node(nm, "ChunkSelector")
        if sel is not None:
            entry = next((s for s in sel.symbolics if PART_ID_RE.match(s) or PART_ID_RE.match("Chunk" + s)), None)
            if entry is not None:
                _try_set(nm, "ChunkModeActive", True)
                if _try_set(nm, "ChunkSelector", entry):
                    _try_set(nm, "ChunkEnable", True)
        self.part_node_name = chunk
        self.part_node = _node(nm, chunk) or nm.get_node(chunk)

    # -------------------------------------------------------------- acquire

    def fire_software_trigger(self) -> None:
        self.ia.remote_device.node_map.TriggerSoftware.execute()
        self.trigger_outstanding_since = time.monotonic()

    def expecting(self) -> bool:
        """A frame is due (so waiting counts towards timeouts)."""
        return not self.triggered or self.trigger_outstanding_since is not None

    def part_id(self) -> str | None:
        if self.part_node is None:
            return None
        try:
            v = self.part_node.value
        except Exception:
            return None
        s = str(v).strip() if v is not None else ""
        return s or None

    def close(self) -> None:
        ia, h = self.ia, self.h
        self.ia = self.h = None
        self.part_node = None
        if ia is not None:
            try:
                ia.destroy()
            except Exception:
                pass
        if h is not None:
            try:
                h.reset()
            except Exception:
                pass


# ------------------------------------------------------------------ the source


class GenicamSource:
    def __init__(self, cfg: GenicamSourceConfig):
        self.cfg = cfg
        self.name = f"genicam:{cfg.serial or ''}"
        self.health = GenicamHealth()
        self._conn: _Connection | None = None
        self._opened = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reconnector: threading.Thread | None = None
        self._attempt = 0
        self._next_attempt: float | None = None
        self._lost_at: float | None = None
        self.last_reconnect_s: float | None = None  # loss to first frame-ready connection
        self._k = 0
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
        conn = _Connection(self.cfg)
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

    def _adopt(self, conn: _Connection) -> None:
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

    # -------------------------------------------------------------- device loss

    def _lose(self, conn: _Connection, why: str) -> DeviceLost:
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
        self._reconnector = threading.Thread(
            target=self._reconnect_loop, args=(conn,), name="inspectd-genicam-reconnect", daemon=True
        )
        self._reconnector.start()
        return DeviceLost(f"genicam {conn.device}: device lost ({why}); reconnecting")

    def _reconnect_loop(self, old: _Connection) -> None:
        old.close()
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            self._attempt += 1
            self._next_attempt = time.monotonic() + delay
            if self._stop.wait(delay):
                return
            conn = _Connection(self.cfg)
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
                return self._take(conn, buf)
        except _IncompleteBuffer:
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

    def _timed_out(self, conn: _Connection) -> None:
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

    def _frame_id(self, conn: _Connection, k: int) -> str:
        return f"genicam-{conn.serial or 'dev'}-{k:06d}"

    def _take(self, conn: _Connection, buf: Any) -> Frame | FrameReadError:
        """Copy the image out of `buf` (still owned by us: it is queued back when the with block ends)."""
        t_ns = time.time_ns()
        conn.t_progress = time.monotonic()
        conn.stalls = 0
        conn.trigger_outstanding_since = None
        k = self._k
        self._k += 1
        frame_id = self._frame_id(conn, k)
        extra: dict[str, Any] = {"camera": conn.device}
        try:
            fid = int(buf.module.frame_id)
            extra["device_frame_id"] = fid
        except Exception:
            pass
        try:
            ts = int(buf.timestamp)
            if ts:
                extra["device_timestamp"] = ts
                extra["device_timestamp_hz"] = int(buf.timestamp_frequency)
        except Exception:
            pass
        try:
            comps = [c for c in buf.payload.components if getattr(c, "data_format", None) in PIXEL_FORMATS]
            if not comps:
                got = [getattr(c, "data_format", "?") for c in buf.payload.components]
                raise PixelFormatError(f"no mono image component in the buffer (components: {got or 'none'})")
            c = comps[0]
            fmt = c.data_format
            if PIXEL_FORMATS[fmt][1] in ("u8", "u16"):
                raw = c.data.view(np.uint8)  # Harvesters' view of the buffer; payload_to_image copies
            else:  # packed: unpack the raw bytes ourselves
                raw = np.frombuffer(buf.module.raw_buffer, np.uint8)[int(c.data_offset) :]
            image, bits = payload_to_image(raw, fmt, int(c.width), int(c.height), int(c.x_padding or 0))
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
