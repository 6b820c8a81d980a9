"""Frame sources: URI parsing through the plugin registry, replay pacing/looping/bad files, the simulator."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile

from inspectd.frames import Frame, FrameReadError, Sidecar, write_frame
from inspectd.sources import EndOfStream, FrameSource, SourceError, available_schemes, open_source, parse_source_uri
from helpers import read_all


@pytest.fixture
def dump(tmp_path):
    d = tmp_path / "dump"
    for i in range(4):
        img = np.full((64, 80), 100 + i, np.uint16)
        write_frame(d, Frame(f"f{i}", img, Sidecar(part_id=f"P{i}", bit_depth=12, t_acquired_ns=1_000 + i)))
    (d / "f1b.tiff").write_bytes(b"II*\x00garbage")  # sorts between f1 and f2
    return d




def test_registry_knows_replay_and_sim():
    assert {"replay", "sim"} <= set(available_schemes())
    cfg = parse_source_uri("replay:/data/dump?fps=2.5&loop=1")
    assert cfg.type == "replay" and str(cfg.dir) == "/data/dump" and cfg.fps == 2.5 and cfg.loop is True
    cfg = parse_source_uri("sim:?seed=7&size=512&bit_depth=8")
    assert cfg.type == "sim" and cfg.seed == 7 and cfg.size == 512 and cfg.bit_depth == 8
    assert parse_source_uri("sim:").fps == 10  # the documented default (docs/acquisition.md)


@pytest.mark.parametrize(
    "uri, words",
    [
        ("", ["empty source URI"]),
        ("/data/dump", ["no scheme", "replay:/data/dump"]),
        ("sim", ["no scheme", "sim:"]),
        ("ftp:/x", ["unknown scheme 'ftp'", "replay", "sim"]),
        ("genicam:123?binning=0", ["'binning'", "greater than or equal to 1"]),
        ("replay:", ["needs a dump directory"]),
        ("replay:/d?fps=fast", ["'fps'", "valid number", "'fast'"]),
        ("replay:/d?fps=-1", ["'fps'", "greater than or equal to 0"]),
        ("replay:/d?speed=2", ["unknown parameter 'speed'", "allowed: fps, loop, stamp"]),
        ("replay:/d?fps", ["malformed query"]),
        ("replay:/d?fps=1&fps=2", ["'fps' given twice"]),
        ("sim:?bit_depth=10", ["'bit_depth'", "8, 12 or 16"]),
        ("sim:somewhere", ["sim takes no path"]),
    ],
)
def test_bad_uris_name_the_wrong_part(uri, words):
    with pytest.raises(SourceError) as e:
        parse_source_uri(uri)
    for w in words:
        assert w in str(e.value)


def test_replay_missing_or_empty_dir(tmp_path):
    src = open_source(f"replay:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="not found"):
        src.open()
    src = open_source(f"replay:{tmp_path}")
    with pytest.raises(SourceError, match="no frame files"):
        src.open()


def test_replay_fast_bad_file_is_an_error_item_and_the_stream_goes_on(dump):
    src = open_source(f"replay:{dump}?fps=0")
    assert isinstance(src, FrameSource)
    src.open()
    t0 = time.time_ns()
    items = read_all(src)
    assert [i.frame_id for i in items] == ["f0", "f1", "f1b", "f2", "f3"]
    assert isinstance(items[2], FrameReadError) and "f1b.tiff" in items[2].message
    frames = [i for i in items if isinstance(i, Frame)]
    assert all(f.meta.t_acquired_ns >= t0 for f in frames)  # stamp=now: acquisition time of this run
    assert frames[0].meta.part_id == "P0" and frames[0].image.dtype == np.uint16
    with pytest.raises(EndOfStream):
        src.read(0.1)
    src.close()


def test_replay_stamp_file_keeps_the_sidecar_time(dump):
    src = open_source(f"replay:{dump}?fps=0&stamp=file")
    src.open()
    f = src.read(1.0)
    assert f.meta.t_acquired_ns == 1_000


def test_replay_resumes_after_the_journals_last_frame_unless_told_to_start_over(dump):
    """After a restart a replay used to play the dump from frame 0 again (18 frames published twice)."""
    src = open_source(f"replay:{dump}?fps=0")
    src.open()
    assert src.resume_after("f1b") == 3
    assert [i.frame_id for i in read_all(src, limit=10, timeout=0.5)] == ["f2", "f3"]
    src.open()
    assert src.resume_after("not-in-this-dump") is None
    assert read_all(src, limit=1, timeout=0.5)[0].frame_id == "f0"
    src.open()
    assert src.resume_after("f3") == 5 and read_all(src, limit=10, timeout=0.5) == []  # all played: ends at once
    looped = open_source(f"replay:{dump}?fps=0&loop=1")
    looped.open()
    assert looped.resume_after("f3") == 0 and read_all(looped, limit=1, timeout=0.5)[0].frame_id == "f0"
    again = open_source(f"replay:{dump}?fps=0&resume=0")
    again.open()
    assert again.resume_after("f1b") is None and read_all(again, limit=1, timeout=0.5)[0].frame_id == "f0"


def test_replay_paces_on_a_monotonic_schedule_and_loops(dump):
    src = open_source(f"replay:{dump}?fps=20&loop=1")
    src.open()
    t = time.monotonic()
    items = read_all(src, limit=12, timeout=0.5)
    dt = time.monotonic() - t
    # 12 frames at 20 fps: the first is due at once, the 12th 11 periods later
    assert 0.5 <= dt < 1.5, dt
    assert [i.frame_id for i in items[:6]] == ["f0", "f1", "f1b", "f2", "f3", "f0"]
    assert src.passes >= 2
    stamps = [i.meta.t_acquired_ns for i in items if isinstance(i, Frame)]
    gaps = np.diff(stamps) / 1e9
    assert np.all(gaps > 0.03) and np.all(gaps < 0.2), gaps


def test_replay_read_honours_its_timeout(dump):
    src = open_source(f"replay:{dump}?fps=2")
    src.open()
    assert src.read(1.0) is not None
    t = time.monotonic()
    assert src.read(0.05) is None  # next frame due in 0.5 s: nothing yet
    assert time.monotonic() - t < 0.3


def test_replay_max_frame_bytes_from_tiff_headers(dump):
    assert parse_source_uri(f"replay:{dump}").max_frame_bytes() == 64 * 80 * 2
    big = dump / "z.tiff"
    tifffile.imwrite(big, np.zeros((100, 120), np.uint8))
    assert parse_source_uri(f"replay:{dump}").max_frame_bytes() == 100 * 120
    (dump / "y.png").write_bytes(b"")  # not a TIFF: size unknown before decoding -> None (default slot size)
    assert parse_source_uri(f"replay:{dump}").max_frame_bytes() is None


def test_sim_live_frames_have_labels_and_unique_ids():
    src = open_source("sim:?seed=3&size=256&bit_depth=8&fps=0&count=3&pool=0")
    src.open()
    items = read_all(src)
    assert [f.frame_id for f in items] == ["sim-0003-00000", "sim-0003-00001", "sim-0003-00002"]
    f = items[0]
    assert f.image.shape == (256, 256) and f.image.dtype == np.uint8
    assert f.meta.labels is not None and len(f.meta.labels.anode_tips) > 3
    assert f.meta.t_acquired_ns > 0 and f.meta.expected in ("OK", "NG")
    assert parse_source_uri("sim:?size=2048&bit_depth=12").max_frame_bytes() == 2048 * 2048 * 2


def test_sim_pool_cycles_prerendered_frames_with_fresh_ids():
    src = open_source("sim:?seed=1&size=256&fps=0&count=5&pool=2")
    src.open()
    items = read_all(src)
    assert len({f.frame_id for f in items}) == 5 and src.pool_size == 2
    assert np.array_equal(items[0].image, items[2].image) and not np.array_equal(items[0].image, items[1].image)


def test_sim_auto_pool_when_rendering_cannot_keep_the_pace():
    src = open_source("sim:?seed=1&size=256&fps=1000&count=2")  # a 1 ms period: no renderer keeps it
    src.open()
    assert src.pool_size == 2 and src.render_ms > 0.5
    assert len(read_all(src)) == 2


def test_a_tiff_header_claiming_a_huge_frame_does_not_size_the_ring(tmp_path):
    """A 60-odd-byte TIFF claiming 65535 x 65535 px once made the daemon try to reserve 128 GiB for its ring."""
    import struct

    import tifffile

    from inspectd.sources import parse_source_uri

    tifffile.imwrite(tmp_path / "good.tiff", np.zeros((100, 120), np.uint16))
    small = tmp_path / "liar.tiff"
    tifffile.imwrite(small, np.zeros((2, 2), np.uint8))
    data = bytearray(small.read_bytes())
    for tag in (256, 257):  # ImageWidth, ImageLength: rewrite their values to 65535
        for typ in (3, 4):
            entry = struct.pack("<HHI", tag, typ, 1)
            i = data.find(entry)
            if i >= 0:
                data[i + 8 : i + 12] = struct.pack("<HH", 65535, 0) if typ == 3 else struct.pack("<I", 65535)
    small.write_bytes(bytes(data))
    with tifffile.TiffFile(small) as t:
        assert t.pages[0].shape == (65535, 65535)  # the header lies
    assert small.stat().st_size < 1000
    assert parse_source_uri(f"replay:{tmp_path}").max_frame_bytes() == 100 * 120 * 2
    # reading it refuses the claimed size before decoding anything, naming the file
    items = read_all(_opened(f"replay:{tmp_path}?fps=0"))
    bad = [i for i in items if isinstance(i, FrameReadError)]
    assert len(bad) == 1 and "liar.tiff: header claims a 65535x65535 frame (4096 MiB)" in bad[0].message


def _opened(uri: str):
    src = open_source(uri)
    src.open()
    return src


def test_a_frame_over_the_configured_maximum_is_refused_unread(tmp_path):
    """The station's maximum (replay ?max_mb=) is checked on the header, TIFF and PNG, before any allocation."""
    import cv2
    import tifffile

    tifffile.imwrite(tmp_path / "a.tiff", np.zeros((200, 300), np.uint16))  # 117 KiB of pixels
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((200, 300), np.uint16))
    tifffile.imwrite(tmp_path / "c.tiff", np.zeros((50, 60), np.uint16))
    items = read_all(_opened(f"replay:{tmp_path}?fps=0&max_mb=0.05"))
    assert [type(i).__name__ for i in items] == ["FrameReadError", "FrameReadError", "Frame"]
    assert "a.tiff: header claims a 200x300 frame (0.1144 MiB), over the 0.05 MiB" in items[0].message
    assert "b.png: header claims a 200x300 frame" in items[1].message
    assert len(read_all(_opened(f"replay:{tmp_path}?fps=0"))) == 3 and all(
        isinstance(i, Frame) for i in read_all(_opened(f"replay:{tmp_path}?fps=0"))
    )
