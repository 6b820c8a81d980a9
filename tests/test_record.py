"""`inspectd record`: what a source delivers becomes a dump that `inspectd replay` reads back.

Real subprocesses of the CLI, real sources (the simulator, a replay dump with a
corrupt file, GStreamer pipelines when GStreamer is installed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspectd.frames import Frame, Sidecar, list_dump, read_frame, write_frame
from helpers import cli





def replay_verdicts(dump: Path, out: Path, tips: str = "labels") -> list[dict]:
    cli("replay", dump, "--out", out, "--tips", tips, check=0)
    return [json.loads(line) for line in out.read_text().splitlines()]


def have_gst() -> bool:
    try:
        from inspectd.sources.gst import require_gst

        require_gst()
        return True
    except Exception:
        return False


needs_gst = pytest.mark.skipif(not have_gst(), reason="GStreamer Python bindings not installed: run make sysdeps")


def test_record_sim_then_replay_gives_the_simulators_verdicts(tmp_path):
    out = tmp_path / "rec"
    p = cli("record", "--source", "sim:?size=512&fps=0&seed=4&bit_depth=12", "--out", out, "--count", 6, check=0)
    assert "recorded 6 frames" in p.stdout
    files = list_dump(out)
    assert [f.name for f in files] == [f"sim-0004-{i:05d}.tiff" for i in range(6)]
    frame = read_frame(files[0])
    assert frame.image.dtype == np.uint16 and frame.image.shape == (512, 512)
    assert frame.meta.bit_depth == 12 and frame.meta.labels is not None and frame.meta.expected in ("OK", "NG")
    verdicts = replay_verdicts(out, tmp_path / "v.jsonl")
    assert [v["frame_id"] for v in verdicts] == [f.stem for f in files]
    # the oracle reads the recorded labels: the simulator's own expected results come back
    assert [v["result"] for v in verdicts] == [read_frame(f).meta.expected for f in files]


def test_unreadable_frames_are_counted_not_fatal(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_frame(src, Frame(f"f{i}", np.full((32, 40), 100 * i, np.uint16), Sidecar(bit_depth=12, part_id=f"P{i}")))
    (src / "f1b.tiff").write_bytes(b"II*\x00garbage")
    out = tmp_path / "rec"
    p = cli("record", "--source", f"replay:{src}?fps=0", "--out", out, "--count", 5, check=0)
    assert "recorded 4 frames" in p.stdout and "1 unreadable" in p.stdout
    assert "unreadable frame f1b" in p.stderr
    assert [f.stem for f in list_dump(out)] == ["f0", "f1", "f2", "f3"]
    back = read_frame(out / "f2.tiff")
    assert back.meta.part_id == "P2" and np.all(back.image == 200)


def test_bad_source_and_occupied_directory_are_usage_errors(tmp_path):
    p = cli("record", "--source", "nosuch:x", "--out", tmp_path / "a", check=2)
    assert "unknown scheme 'nosuch'" in p.stderr
    out = tmp_path / "b"
    cli("record", "--source", "sim:?size=256&fps=0", "--out", out, "--count", 1, check=0)
    p = cli("record", "--source", "sim:?size=256&fps=0", "--out", out, "--count", 1, check=2)
    assert "already holds 1 frames" in p.stderr


def test_a_source_that_ends_with_nothing_recorded_fails(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_frame(empty, Frame("only", np.zeros((32, 32), np.uint8)))
    (empty / "only.tiff").write_bytes(b"")  # the one frame is unreadable
    p = cli("record", "--source", f"replay:{empty}?fps=0", "--out", tmp_path / "rec", "--count", 3, check=1)
    assert "recorded 0 frames" in p.stderr and "the source ended" in p.stderr


@needs_gst
@pytest.mark.parametrize("fmt, name", [("GRAY8", "gray8"), ("GRAY16_LE", "gray16-le")])
def test_record_gst_then_replay(tmp_path, fmt, name):
    h, w = 48, 64
    dtype = np.uint8 if fmt == "GRAY8" else np.uint16
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, np.iinfo(dtype).max + 1, (h, w)).astype(dtype) for _ in range(5)]
    raw = tmp_path / "in.raw"
    raw.write_bytes(b"".join(i.astype(np.dtype(dtype).newbyteorder("<")).tobytes() for i in imgs))
    uri = (
        f"gst:filesrc location={raw} ! rawvideoparse format={name} width={w} height={h} framerate=10/1 "
        f"! appsink name=sink sync=false?prefix=cam1"
    )
    out = tmp_path / "rec"
    p = cli("record", "--source", uri, "--out", out, "--count", 5, check=0)
    assert "recorded 5 frames" in p.stdout
    files = list_dump(out)
    assert [f.stem for f in files] == [f"cam1-{i:06d}" for i in range(5)]
    for f, want in zip(files, imgs, strict=True):
        back = read_frame(f)
        np.testing.assert_array_equal(back.image, want)
        assert back.meta.model_extra["pts_ns"] == int(files.index(f) * 1e8)  # 10 fps stream time
    verdicts = replay_verdicts(out, tmp_path / "v.jsonl", tips="model")
    assert [v["frame_id"] for v in verdicts] == [f.stem for f in files]
    assert {v["result"] for v in verdicts} == {"ERROR"}  # noise, no cell in it: could not measure, which is right


@needs_gst
def test_record_gst_videotestsrc_stops_at_count(tmp_path):
    uri = "gst:videotestsrc ! video/x-raw,format=GRAY8,width=320,height=240 ! appsink sync=false"
    out = tmp_path / "rec"
    p = cli("record", "--source", uri, "--out", out, "--count", 12, check=0)
    assert "recorded 12 frames" in p.stdout and len(list_dump(out)) == 12
    p = cli("record", "--source", "gst:videotestsrc ! video/x-raw,format=RGB ! appsink", "--out", tmp_path / "x", check=2)
    assert "not-negotiated" in p.stderr and "videoconvert" in p.stderr
