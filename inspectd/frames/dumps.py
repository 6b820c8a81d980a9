"""Frame dumps on disk (docs/contracts.md §3): read and write, one bad file never stops the rest.

Three layouts are read:
- inspectd's own: `<stem>.tiff` (or .tif/.png/.jpg/.jpeg/.bmp) with an optional `<stem>.json` sidecar;
- X-ray-PBD's: `img/<stem>.<ext>`, `neg_location/<stem>.npy` (anode points) and
  `pos_location/<stem>.npy` (cathode points), each (N, 2) `[x, y]`;
- a labelled image set: `images/<stem>.<ext>` with sidecars in `labels/<stem>.json`
  (the layout of shared/data/real).
Reading yields `Frame` or `FrameReadError` per stem, in name order, so a replay
can give a corrupt frame its ERROR verdict and carry on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from pydantic import ValidationError

from inspectd.frames.model import Frame, FrameError, Sidecar, TipLabels, as_points, check_image

IMAGE_EXTS = (".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class FrameReadError:
    """A frame that could not be read: what the replay turns into an ERROR verdict."""

    frame_id: str
    path: Path
    message: str


MAX_FRAME_BYTES = 2**28  # 256 MiB: a 16-bit 8192 x 16384 detector; a header claiming more is refused unread


def _check_size(path: Path, shape: tuple, itemsize: int, max_bytes: int) -> None:
    n = int(np.prod(shape, dtype=np.int64)) * itemsize
    if n > max_bytes:
        dims = "x".join(str(d) for d in shape)
        raise FrameError(
            f"{path.name}: header claims a {dims} frame ({n / 2**20:.4g} MiB), over the {max_bytes / 2**20:.4g} MiB "
            f"a frame may have; not decoded"
        )


def _decode_tiff(path: Path, max_bytes: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise FrameError(f"{path.name}: TIFF holds no image page")
        if len(tif.pages) > 1:
            raise FrameError(f"{path.name}: TIFF has {len(tif.pages)} pages; a frame is a single page")
        page = tif.pages[0]
        _check_size(path, page.shape, np.dtype(page.dtype).itemsize, max_bytes)  # before any allocation
        return page.asarray()


def _jpeg_is_complete(data: bytes) -> bool:
    # libjpeg fills a truncated file with grey and only warns; the end-of-image
    # marker is the cheap, reliable check.
    return data.rstrip(b"\x00").endswith(b"\xff\xd9")


def _decode_other(path: Path, max_bytes: int) -> np.ndarray:
    data = path.read_bytes()
    if not data:
        raise FrameError(f"{path.name}: empty file")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26:  # IHDR: width, height, bit depth
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        _check_size(path, (h, w), max(1, data[24] // 8) * 4, max_bytes)  # up to 4 channels before the mono check
    if path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_is_complete(data):
        raise FrameError(f"{path.name}: truncated JPEG (no end-of-image marker)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(f"{path.name}: not a decodable {path.suffix.lstrip('.').upper()} image")
    return img


def read_image(path: Path, max_bytes: int = MAX_FRAME_BYTES) -> np.ndarray:
    """Read one frame file into a 2-D uint8/uint16 array or raise FrameError naming the problem.

    A 3-channel file is accepted only when its channels are identical (grey
    content saved as colour, as some station exports do); real colour is an error.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise FrameError(f"{path.name}: empty file")
        if path.suffix.lower() in (".tif", ".tiff"):
            img = _decode_tiff(path, max_bytes)
        else:
            img = _decode_other(path, max_bytes)
    except FrameError:
        raise
    except Exception as e:  # tifffile/cv2 raise many types for corrupt data
        raise FrameError(f"{path.name}: cannot decode ({type(e).__name__}: {e})") from e
    if img.ndim == 3 and img.shape[2] in (3, 4):
        colour = img[..., :3]
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]):
            img = np.ascontiguousarray(colour[..., 0])
        else:
            raise FrameError(f"{path.name}: {img.shape[2]}-channel colour image; an X-ray frame must be mono")
    return check_image(img, path.name)


def read_sidecar(path: Path) -> Sidecar:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"{path.name}: unreadable sidecar ({e})") from e
    if not isinstance(raw, dict):
        raise FrameError(f"{path.name}: sidecar must be a JSON object")
    try:
        return Sidecar.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise FrameError(f"{path.name}: sidecar key {key}: {first['msg']}") from e


def _read_npy_points(path: Path, what: str) -> list[tuple[float, float]]:
    try:
        arr = np.load(path, allow_pickle=False)
        pts = as_points(arr, what)
    except (OSError, ValueError) as e:
        raise FrameError(f"{path.name}: {e}") from e
    return [(float(x), float(y)) for x, y in pts]


def is_pbd_layout(root: Path) -> bool:
    return (root / "img").is_dir() and ((root / "neg_location").is_dir() or (root / "pos_location").is_dir())


def _frame_files(root: Path) -> list[Path]:
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    stems: dict[str, Path] = {}
    for p in sorted(files):
        # one frame per stem; prefer TIFF (the dump format) over exports of it
        if p.stem not in stems or p.suffix.lower() in (".tif", ".tiff"):
            stems[p.stem] = p
    return [stems[s] for s in sorted(stems)]


def is_labelled_images_layout(root: Path) -> bool:
    """`images/` + `labels/<stem>.json` (the layout of shared/data/real)."""
    return (root / "images").is_dir() and (root / "labels").is_dir()


def list_dump(root: Path | str) -> list[Path]:
    """The frame files of a dump, in the order they will be replayed."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dump directory not found: {root}")
    if is_pbd_layout(root):
        return _frame_files(root / "img")
    if is_labelled_images_layout(root):
        return _frame_files(root / "images")
    return _frame_files(root)


def read_frame(path: Path, max_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Read one frame file and its sidecar (or PBD point files); raises FrameError.

    A file whose header claims more than `max_bytes` of pixels is refused
    before anything is allocated for it (that frame's ERROR names the file).
    """
    path = Path(path)
    image = read_image(path, max_bytes)
    stem = path.stem
    if path.parent.name == "img" and is_pbd_layout(path.parent.parent):
        root = path.parent.parent
        neg, pos = root / "neg_location" / f"{stem}.npy", root / "pos_location" / f"{stem}.npy"
        labels = None
        if neg.exists() or pos.exists():
            labels = TipLabels(
                anode_tips=_read_npy_points(neg, "anode points") if neg.exists() else [],
                cathode_tips=_read_npy_points(pos, "cathode points") if pos.exists() else [],
            )
        meta = Sidecar(labels=labels)
    else:
        side = path.with_suffix(".json")
        if path.parent.name == "images" and is_labelled_images_layout(path.parent.parent):
            side = path.parent.parent / "labels" / f"{stem}.json"
        meta = read_sidecar(side) if side.exists() else Sidecar()
    if meta.bit_depth and image.dtype == np.uint8 and meta.bit_depth > 8:
        raise FrameError(f"{path.name}: sidecar says {meta.bit_depth}-bit but the file is 8-bit")
    return Frame(frame_id=stem, image=image, meta=meta)


def iter_dump(root: Path | str) -> Iterator[Frame | FrameReadError]:
    """Every frame of a dump in name order; unreadable ones come as FrameReadError."""
    for path in list_dump(root):
        try:
            yield read_frame(path)
        except FrameError as e:
            yield FrameReadError(frame_id=path.stem, path=path, message=str(e))


def write_frame(root: Path | str, frame: Frame) -> Path:
    """Write `<frame_id>.tiff` (+ `.json` sidecar) into a dump directory; returns the image path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    check_image(frame.image, frame.frame_id)
    path = root / f"{frame.frame_id}.tiff"
    tifffile.imwrite(path, frame.image, photometric="minisblack")
    path.with_suffix(".json").write_text(frame.meta.to_json() + "\n", encoding="utf-8")
    return path
