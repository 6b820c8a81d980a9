"""The sequential inspector never raises: every input gets exactly one verdict."""

import numpy as np
import pytest

from inspectd.config import Config
from inspectd.frames import Frame, FrameReadError, Sidecar
from inspectd.inspection.stages import Inspector
from inspectd.verdict import ReasonCode, Result
from inspectd.tips.detector import LabelOracle, NoDetector


def _inspect(image, detector=None, meta=None):
    ins = Inspector(Config(), detector or NoDetector())
    return ins.inspect(Frame("f", image, meta or Sidecar()), seq=7).verdict


@pytest.mark.parametrize(
    "name,image",
    [
        ("black", np.zeros((512, 512), np.uint8)),
        ("white16", np.full((512, 512), 65535, np.uint16)),
        ("constant", np.full((600, 800), 117, np.uint8)),
        ("noise", np.random.default_rng(0).integers(0, 256, (512, 512)).astype(np.uint8)),
        ("noise16", np.random.default_rng(1).integers(0, 4096, (512, 512)).astype(np.uint16)),
        ("gradient", np.tile(np.linspace(0, 255, 640).astype(np.uint8), (480, 1))),
    ],
)
def test_frames_without_a_stack_get_error_with_reason(name, image):
    v = _inspect(image)
    assert v.result is Result.ERROR, name
    assert v.seq == 7 and v.frame_id == "f"
    assert len(v.reasons) == 1 and v.reasons[0].message
    assert v.reasons[0].code in (ReasonCode.NO_STACK, ReasonCode.DETECTION_UNAVAILABLE), v.reasons[0]


def test_unreadable_frame_gets_error_verdict():
    ins = Inspector(Config(), NoDetector())
    v = ins.inspect(FrameReadError("bad", None, "bad.tiff: truncated"), seq=3).verdict
    assert v.result is Result.ERROR and v.reasons[0].code is ReasonCode.UNREADABLE_FRAME
    assert "truncated" in v.reasons[0].message and v.seq == 3


def test_oracle_without_labels_is_error_not_ok():
    img = np.zeros((512, 512), np.uint8)
    v = _inspect(img, detector=LabelOracle())
    assert v.result is Result.ERROR


def test_stage_bug_becomes_internal_error(monkeypatch):
    class Broken:
        name = "broken"

        def detect(self, frame, img8, roi):
            raise ZeroDivisionError("boom")

    from inspectd.inspection import stages

    # a detector that crashes needs a located stack to be reached
    monkeypatch.setattr(stages, "locate", lambda img8, cfg, backend=None: (np.zeros((0, 3), np.float32), _FakeRoi()))
    v = Inspector(Config(), Broken()).inspect(Frame("f", np.zeros((64, 64), np.uint8)), seq=1).verdict
    assert v.result is Result.ERROR and v.reasons[0].code is ReasonCode.INTERNAL
    assert "stage detect failed: ZeroDivisionError: boom" in v.reasons[0].message


class _FakeRoi:
    x0, y0, x1, y1 = 0, 0, 10, 10

    class orientation:  # noqa: N801
        name = "RIGHT"


def test_the_chain_reads_only_what_an_earlier_stage_filled():
    from dataclasses import fields

    from inspectd.inspection.stages import CHAIN, _Work

    known = {f.name for f in fields(_Work)}
    have = {"frame"}
    for st in CHAIN:
        assert set(st.reads) <= known and set(st.fills) <= known, st.name
        assert set(st.reads) <= have, f"{st.name} reads {set(st.reads) - have} before any stage fills it"
        have |= set(st.fills)
    assert [s.name for s in CHAIN] == ["preprocess", "locate", "detect", "refine", "measure"]


def test_a_defocused_stack_is_found_on_the_sharpened_frame_when_nothing_else_finds_it():
    """sim defocus family frame 3 (seed 8008): no corner pass finds a stack on the frame itself; the unsharp-masked
    copy does, and the ROI holds every anode tip (the tips are then read on the frame as it is)."""
    from inspectd.inspection.corner_backends import OpenCvCorners
    from inspectd.inspection.roi import find_roi
    from inspectd.inspection.stages import corner_attempts, locate, preprocess
    from inspectd.sim import SimOptions, render_frame

    f = render_frame(8008, 3, SimOptions(size=1000, bit_depth=12, families=("defocus",), family_rate=1.0))
    frame = Frame(frame_id="d3", image=f.image, meta=Sidecar(bit_depth=f.bit_depth, mm_per_px=f.mm_per_px))
    cfg, img8 = Config(), preprocess(frame)
    be = OpenCvCorners()
    assert all(find_roi(img8, be.detect_corners(img8, c), cfg.roi) is None for c in corner_attempts(cfg.corners, img8.shape))
    _, roi = locate(img8, cfg)
    a = f.anode_tips
    assert np.all((a[:, 0] >= roi.x0) & (a[:, 0] < roi.x1) & (a[:, 1] >= roi.y0) & (a[:, 1] < roi.y1))
