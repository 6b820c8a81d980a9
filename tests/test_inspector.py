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
