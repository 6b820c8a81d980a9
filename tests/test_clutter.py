"""Periodic clutter (issue #16): a rack or a threaded rod with no stack is never read as a cell, and
clutter beside or above a stack does not move the ROI off it. Runs the shipped model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspectd.config import Config
from inspectd.frames import Frame, Sidecar
from inspectd.inspection.stages import Inspector
from inspectd.sim import SimOptions, render_frame
from inspectd.tips.hrnet import load_detector
from inspectd.verdict import ReasonCode, Result

@pytest.fixture(scope="module")
def inspector():
    cfg = Config()  # the gate's limits are the shipped model card's calibration
    return Inspector(cfg, load_detector(cfg.engine))


def _clutter_only(kind: str, period: int, seed: int) -> np.ndarray:
    """A bright beam with a toothed rack (teeth along x, like a comb of layers) and/or a threaded rod."""
    r = np.random.default_rng(seed)
    img = np.full((1000, 1000), 210, np.float32)
    if kind in ("rack", "both"):
        x0, y0 = int(r.uniform(200, 500)), int(r.uniform(150, 400))
        cv2.rectangle(img, (x0 - 200, y0), (x0, y0 + period * 30), 40, -1)
        for k in range(30):
            y = y0 + k * period
            cv2.rectangle(img, (x0, y), (x0 + int(r.uniform(60, 70)), y + period // 2), 60, -1)
    if kind in ("rod", "both"):
        cx = int(r.uniform(600, 800))
        pts = [(cx - (25 if k % 2 else 0), 100 + k * period / 2) for k in range(60)]
        pts += [(cx + 60, 100 + 30 * period), (cx + 60, 100)]
        cv2.fillPoly(img, [np.round(np.array(pts)).astype(np.int32)], 50)
    img = cv2.GaussianBlur(img, (0, 0), 1.2) + r.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["rack", "rod", "both"])
def test_clutter_without_a_stack_is_no_stack(inspector, kind):
    """The rack's teeth and the rod's thread make a comb the model reads as tips (a model trained with
    the real frames at weight 6 read rack 12 as an OK cell); behind them is a plain block, not the layers
    of a stack body, so the ROI search finds no stack (layer_profiles.body_layering)."""
    for period, seed in ((8, 0), (12, 1), (10, 2), (9, 3)):
        img = _clutter_only(kind, period, seed)
        v = inspector.inspect(Frame(frame_id=f"{kind}", image=img, meta=Sidecar(bit_depth=8, mm_per_px=0.02)), 0).verdict
        assert v.result is Result.ERROR, (kind, period, [r.code for r in v.reasons][:3])
        assert [r.code for r in v.reasons] == [ReasonCode.NO_STACK], (kind, period, v.reasons[:3])


def test_stack_beside_periodic_clutter_keeps_its_roi(inspector):
    """Rack, rod or ribs next to the stack: the ROI holds every labelled tip, and a frame whose ROI missed the
    stack is never OK or NG. Known gap (docs/roi.md): frame 7, where the densest corner cluster sits on the
    stack's corner next to a clamp jaw, gets its ROI on the jaw: ERROR (NO_TIPS, or NO_STACK for the two
    tips the current model finds there), never a verdict."""
    missed = []
    for i in range(8):
        f = render_frame(8006, i, SimOptions(size=1000, families=("teeth",), family_rate=1.0))
        frame = Frame(frame_id=f"t{i}", image=f.image, meta=Sidecar(bit_depth=f.bit_depth, mm_per_px=f.mm_per_px))
        v = inspector.inspect(frame, 0).verdict
        tips = np.vstack([f.anode_tips, f.cathode_tips])
        x0, y0, x1, y1 = v.roi or (0, 0, 0, 0)
        if not np.all((tips[:, 0] >= x0) & (tips[:, 0] < x1) & (tips[:, 1] >= y0) & (tips[:, 1] < y1)):
            missed.append(i)
            assert v.result is Result.ERROR, (i, v.result)
    assert missed in ([], [7]), missed
