"""GenTL producers, device descriptions and GenApi node-map helpers for the `genicam:` source.

Split out of `inspectd.sources.genicam`, which re-exports `find_producers`.
The helpers take a Harvesters node map (``ia.remote_device.node_map``) and
turn GenApi failures into `SourceError` messages that name the node, the
value and its range. Not a source plugin: it defines no ``SCHEME``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from inspectd.sources.base import SourceError

try:  # guarded import: genicam is the optional `genicam` extra (genicam.py reports it missing when opened)
    from genicam.genapi import EInterfaceType
    from genicam.genapi import GenericException as GenApiError
    from genicam.genapi import LogicalErrorException
    from genicam.genapi import is_available as _node_available
    from genicam.genapi import is_writable as _node_writable
except ImportError:  # pragma: no cover - exercised only where the extra is missing
    pass

ENV_PATH = "GENICAM_GENTL64_PATH"

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


def device_attr(d: Any, attr: str) -> str | None:
    """A DeviceInfo attribute as a non-empty string or None (producers fill them unevenly, some raise)."""
    try:
        v = getattr(d, attr)
    except Exception:
        return None
    return None if v in (None, "") else str(v)


def describe_device(d: Any) -> str:
    """How messages and logs name a device: "serial S model M user id U" (the parts it has)."""
    parts = [f"serial {device_attr(d, 'serial_number') or '?'}"]
    for attr, label in (("model", "model"), ("user_defined_name", "user id")):
        v = device_attr(d, attr)
        if v:
            parts.append(f"{label} {v}")
    return " ".join(parts)


# ------------------------------------------------------------------ node map


def find_node(nm: Any, name: str):
    """The node `name` if the device has it and it is available now, else None (GenApi would raise instead)."""
    try:
        n = nm.get_node(name)
    except LogicalErrorException:
        return None
    try:
        return n if _node_available(n) else None
    except GenApiError:
        return None


def frame_bytes(nm: Any, pixel_format: str | None) -> int | None:
    """Bytes of one delivered frame (Mono8 -> uint8, deeper -> uint16) as configured, or None if unknown."""
    w, h = find_node(nm, "Width"), find_node(nm, "Height")
    try:
        if w is None or h is None:
            return None
        return int(w.value) * int(h.value) * (1 if pixel_format == "Mono8" else 2)
    except Exception:
        return None


def first_node(nm: Any, names: tuple[str, ...]):
    """(name, node) of the first of `names` the device has, else (None, None): SFNC and legacy names differ."""
    for name in names:
        n = find_node(nm, name)
        if n is not None:
            return name, n
    return None, None


def set_node(nm: Any, names: tuple[str, ...], value: Any, param: str, device: str, what: str | None = None) -> None:
    """Write `value` to the first of `names` the device has; SourceError names the node, the value and the range.

    `what` is how the error names the setting (default ``param=value``).
    """
    name, node = first_node(nm, names)
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


def try_set_node(nm: Any, name: str, value: Any) -> bool:
    """Best effort (auto modes off, enables): True when the node exists and took the value."""
    node = find_node(nm, name)
    if node is None:
        return False
    try:
        if node.value != value and _node_writable(node):
            node.value = value
        return True
    except GenApiError:
        return False

