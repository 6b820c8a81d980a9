"""Frame sources: the `FrameSource` protocol and URI parsing through a registry of plugins.

A source is named by a URI (docs/acquisition.md): ``replay:DIR?fps=10&loop=1``,
``sim:?seed=1&fps=10``, later ``genicam:SERIAL`` and ``gst:PIPELINE``.
The part before the first ``:`` is the scheme; it picks a plugin module in
``inspectd/sources/`` (Frigate's detector-plugin pattern). Each plugin module
holds:

- ``SCHEME``: the URI scheme it serves;
- a pydantic config model with ``type: Literal["<scheme>"]`` (the
  discriminator) and ``extra="forbid"``, built from the URI by
  ``config_from_uri(target, params)``;
- a guarded import of its library (a missing optional dependency is a clear
  `SourceError` when that source is chosen, never at import of the package);
- ``create(config) -> FrameSource``.

Adding a camera is adding a file. A module that fails to import is reported
when its scheme is asked for, with the import error.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, ValidationError

import inspectd.sources as pkg
from inspectd.frames import Frame, FrameReadError

__all__ = [
    "EndOfStream",
    "FrameSource",
    "SourceConfigBase",
    "SourceError",
    "Alloc",
    "available_schemes",
    "open_source",
    "parse_source_uri",
]

class SourceError(ValueError):
    """A source URI or source that cannot be used; the message names the part that is wrong."""


class EndOfStream(Exception):
    """A finite source (replay without loop, sim with count) has delivered its last frame."""


Alloc = Callable[[tuple[int, int], Any], Any]
"""(shape, dtype) -> an array for the next frame's pixels (a frame-ring slot), or None: see `read_into`."""


@runtime_checkable
class FrameSource(Protocol):
    """What the daemon's acquisition loop reads from.

    `read(timeout_s)` returns the next `Frame` (with `meta.t_acquired_ns` set
    where the source knows the acquisition time), a `FrameReadError` for a
    frame that arrived but cannot be used (it still gets its ERROR verdict),
    or None when nothing arrived within `timeout_s`. It raises `EndOfStream`
    when a finite source is done. It never blocks longer than `timeout_s`
    (plus the time to decode one frame).

    A source may also offer `read_into(timeout_s, alloc)`: the same, with the
    pixels written into `alloc(shape, dtype)` when that returns an array (the
    daemon passes its frame-ring slot: the frame crosses host memory once).
    """

    name: str

    def open(self) -> None: ...

    def read(self, timeout_s: float) -> Frame | FrameReadError | None: ...

    def close(self) -> None: ...


class SourceConfigBase(BaseModel):
    """Base of every plugin's config: unknown URI parameters are errors."""

    model_config = ConfigDict(extra="forbid")

    def max_frame_bytes(self) -> int | None:
        """Largest frame this source will deliver, if known before opening (sizes the ring slots)."""
        return None


@dataclass(frozen=True)
class _Plugin:
    scheme: str
    module: ModuleType | None
    error: BaseException | None


@functools.cache
def _registry() -> dict[str, _Plugin]:
    """Import every module of this package that declares SCHEME (once per process)."""
    reg: dict[str, _Plugin] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        name = f"{pkg.__name__}.{info.name}"
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # a broken plugin must not break the others
            reg[info.name] = _Plugin(info.name, None, e)
            continue
        scheme = getattr(mod, "SCHEME", None)
        if scheme:
            reg[scheme] = _Plugin(scheme, mod, None)
    return reg


def available_schemes() -> list[str]:
    return sorted(s for s, p in _registry().items() if p.module is not None)


def _split(uri: str) -> tuple[str, str, dict[str, str]]:
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError("empty source URI; expected e.g. replay:DIR?fps=10 or sim:?seed=1&fps=10")
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep:
        hint = f"{uri}:" if uri.lower() in _registry() else f"replay:{uri}"
        raise SourceError(f"source URI {uri!r} has no scheme: expected <scheme>:..., e.g. {hint}")
    if not scheme:
        raise SourceError(f"source URI {uri!r} has an empty scheme before ':'")
    scheme = scheme.lower()
    target, _, query = rest.partition("?")
    params: dict[str, str] = {}
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as e:
            raise SourceError(f"source URI {uri!r}: malformed query {query!r} (expected key=value&key=value)") from e
        for k, v in pairs:
            if k in params:
                raise SourceError(f"source URI {uri!r}: parameter {k!r} given twice")
            params[k] = v
    return scheme, unquote(target), params


def parse_source_uri(uri: str) -> SourceConfigBase:
    """The validated plugin config for `uri`; SourceError names the part that is wrong."""
    scheme, target, params = _split(uri)
    reg = _registry()
    plugin = reg.get(scheme)
    if plugin is None:
        known = ", ".join(available_schemes()) or "none"
        raise SourceError(f"source URI {uri!r}: unknown scheme {scheme!r} (known: {known})")
    if plugin.module is None:
        raise SourceError(f"source {scheme!r} cannot be loaded: {type(plugin.error).__name__}: {plugin.error}")
    try:
        return plugin.module.config_from_uri(target, params)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or scheme
            if err["type"] == "extra_forbidden":
                skip = {"type", getattr(plugin.module, "TARGET_FIELD", None)}
                allowed = ", ".join(k for k in plugin.module.CONFIG.model_fields if k not in skip)
                problems.append(f"unknown parameter {key!r} (allowed: {allowed})")
            else:
                got = err.get("input")
                problems.append(
                    f"parameter {key!r}: {err['msg']}" + (f" (got {got!r})" if isinstance(got, str) else "")
                )
        raise SourceError(f"source URI {uri!r}: " + "; ".join(problems)) from e
    except SourceError as e:
        raise SourceError(f"source URI {uri!r}: {e}") from e


def open_source(uri_or_config: str | SourceConfigBase) -> FrameSource:
    """Create (not yet open) the source a URI or plugin config names."""
    cfg = parse_source_uri(uri_or_config) if isinstance(uri_or_config, str) else uri_or_config
    plugin = _registry().get(cfg.type)  # type: ignore[attr-defined]
    if plugin is None or plugin.module is None:
        raise SourceError(f"no source plugin for type {cfg.type!r}")  # type: ignore[attr-defined]
    return plugin.module.create(cfg)


class Pacer:
    """A monotonic schedule at `fps` (0: no pacing). `wait(timeout_s)` is True when the next frame is due.

    The schedule does not drift (frame k is due at t0 + k/fps); when the reader
    falls more than one period behind (a slow decode, a paused process), it is
    re-anchored at now instead of bursting to catch up, and `lagged` counts it.
    """

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._due: float | None = None
        self.lagged = 0

    def wait(self, timeout_s: float) -> bool:
        import time

        if self.period == 0.0:
            return True
        now = time.monotonic()
        if self._due is None:
            self._due = now
        delay = self._due - now
        if delay > 0:
            if delay > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return False
            time.sleep(delay)
            now = time.monotonic()
        if now - self._due > self.period:
            self.lagged += 1
            self._due = now
        self._due += self.period
        return True
