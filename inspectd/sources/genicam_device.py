"""The open GenICam device behind the `genicam:` source: one Harvester + ImageAcquirer, configured and acquiring.

Split out of `inspectd.sources.genicam` (which re-exports `DeviceLost`):
`Connection` loads the producers, picks the device, writes the requested
settings (pixel format, ROI, exposure, gain, trigger, frame rate), finds the
part-id chunk and starts acquisition; `GenicamHealth` is the source's
counters. Not a source plugin: it defines no ``SCHEME``.
"""

from __future__ import annotations

import ctypes
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspectd.sources.base import SourceError
from inspectd.sources.genicam_nodes import (
    describe_device,
    device_attr,
    find_node,
    find_producers,
    first_node,
    frame_bytes,
    set_node,
    try_set_node,
)
from inspectd.sources.pixel_formats import AUTO_ORDER

if TYPE_CHECKING:
    from inspectd.sources.genicam import GenicamSourceConfig

try:  # guarded import: harvesters/genicam are the optional `genicam` extra (genicam.py reports it missing when opened)
    from genicam.genapi import EInterfaceType
    from genicam.genapi import GenericException as GenApiError
    from harvesters.core import Callback, Harvester, ImageAcquirer
except ImportError:  # pragma: no cover - exercised only where the extra is missing
    Callback = object  # type: ignore[assignment,misc]

PART_ID_RE = re.compile(r"^(Chunk)?Part_?I[Dd](Value)?$")


# ------------------------------------------------------------------ a connection


class DeviceLost(SourceError):
    """The device is gone (or not answering); the source is reconnecting. Raised by `read()` meanwhile."""


class IncompleteBuffer(Exception):
    """Raised out of ``ia.fetch()`` by `_RaiseOnIncomplete`; the source counts it and reports a FrameReadError."""


class _RaiseOnIncomplete(Callback):  # type: ignore[misc,valid-type]
    """Harvesters re-queues an incomplete buffer and calls this; raising ends fetch() so it is counted."""

    def emit(self, context: Any = None) -> None:
        raise IncompleteBuffer()


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


class Connection:
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
        match = [d for d in devices if all(device_attr(d, a) == w for a, w, _ in wanted)]
        if not match:
            want_s = " ".join(f"{label} {w!r}" for _, w, label in wanted)
            seen = "; ".join(describe_device(d) for d in devices)
            raise SourceError(f"no device with {want_s} (seen: {seen})")
        info = match[0]
        self.serial = device_attr(info, "serial_number")
        self.device = describe_device(info)
        try:
            self.ia = ia = h.create(info)
        except Exception as e:
            raise SourceError(f"cannot open device {self.device}: {type(e).__name__}: {e}") from e
        self._configure(ia.remote_device.node_map)
        self.frame_bytes = frame_bytes(ia.remote_device.node_map, self.pixel_format)
        ia.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _RaiseOnIncomplete())
        try:
            ia.start()
        except Exception as e:
            raise SourceError(f"device {self.device}: cannot start acquisition: {type(e).__name__}: {e}") from e
        self.t_progress = time.monotonic()

    def _configure(self, nm: Any) -> None:
        cfg, dev = self.cfg, self.device
        # pixel format first: it changes the ranges of the others
        pf_node = find_node(nm, "PixelFormat")
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
        set_node(nm, ("PixelFormat",), pick, "pixel_format", dev)
        self.pixel_format = pick
        try_set_node(nm, "AcquisitionMode", "Continuous")
        if cfg.binning is not None:
            set_node(nm, ("BinningHorizontal",), cfg.binning, "binning", dev)
            set_node(nm, ("BinningVertical",), cfg.binning, "binning", dev)
        # offsets to 0 before the size (the size's range shrinks with the offset), then the requested offsets
        if cfg.offset_x is not None:
            set_node(nm, ("OffsetX",), 0, "offset_x", dev)
        if cfg.offset_y is not None:
            set_node(nm, ("OffsetY",), 0, "offset_y", dev)
        if cfg.width is not None:
            set_node(nm, ("Width",), cfg.width, "width", dev)
        if cfg.height is not None:
            set_node(nm, ("Height",), cfg.height, "height", dev)
        if cfg.offset_x is not None:
            set_node(nm, ("OffsetX",), cfg.offset_x, "offset_x", dev)
        if cfg.offset_y is not None:
            set_node(nm, ("OffsetY",), cfg.offset_y, "offset_y", dev)
        if cfg.exposure_us is not None:
            try_set_node(nm, "ExposureAuto", "Off")
            set_node(nm, ("ExposureTime", "ExposureTimeAbs"), float(cfg.exposure_us), "exposure_us", dev)
        if cfg.gain is not None:
            try_set_node(nm, "GainAuto", "Off")
            name, node = first_node(nm, ("Gain", "GainRaw"))
            value: float | int = cfg.gain
            if node is not None and node.node.principal_interface_type == EInterfaceType.intfIInteger:
                value = int(round(cfg.gain))
            set_node(nm, ("Gain", "GainRaw"), value, "gain", dev)
        if cfg.trigger is not None:
            self._set_trigger(nm)
        else:
            mode = find_node(nm, "TriggerMode")
            try:
                self.triggered = mode is not None and str(mode.value) == "On"
            except GenApiError:
                self.triggered = False
        if cfg.fps is not None:
            try_set_node(nm, "AcquisitionFrameRateEnable", True)
            set_node(nm, ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), float(cfg.fps), "fps", dev)
        self._find_part_id_chunk(nm)

    def _set_trigger(self, nm: Any) -> None:
        cfg, dev = self.cfg, self.device
        what = f"trigger={cfg.trigger}"
        sel = find_node(nm, "TriggerSelector")
        if sel is not None and "FrameStart" in list(sel.symbolics):
            set_node(nm, ("TriggerSelector",), "FrameStart", "trigger", dev, what)
        if cfg.trigger == "off":
            if find_node(nm, "TriggerMode") is not None:
                set_node(nm, ("TriggerMode",), "Off", "trigger", dev, what)
            self.triggered = False
            return
        source = "Software" if cfg.trigger == "software" else f"Line{cfg.trigger[4:]}"
        set_node(nm, ("TriggerMode",), "On", "trigger", dev, what)
        set_node(nm, ("TriggerSource",), source, "trigger", dev, what)
        if cfg.trigger == "software" and find_node(nm, "TriggerSoftware") is None:
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
        sel = find_node(nm, "ChunkSelector")
        if sel is not None:
            entry = next((s for s in sel.symbolics if PART_ID_RE.match(s) or PART_ID_RE.match("Chunk" + s)), None)
            if entry is not None:
                try_set_node(nm, "ChunkModeActive", True)
                if try_set_node(nm, "ChunkSelector", entry):
                    try_set_node(nm, "ChunkEnable", True)
        self.part_node_name = chunk
        self.part_node = find_node(nm, chunk) or nm.get_node(chunk)

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

