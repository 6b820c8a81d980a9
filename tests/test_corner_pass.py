"""The correction's in-ROI corner pass: full-frame coordinates, and it finds the tips."""

import numpy as np

from inspectd.config import Config
from inspectd.evaluation.corner_eval import recall_for_frames, sim_frames
from inspectd.inspection.stages import ROI_CORNER_PAD, locate, roi_corners


def test_roi_corners_are_full_frame_and_inside_padded_roi():
    img8, tips = next(sim_frames(1000, 1, seed=901))
    cfg = Config()
    _, roi = locate(img8, cfg)
    c = roi_corners(img8, roi, cfg)
    assert c.dtype == np.float32 and c.shape[1] == 3 and 0 < len(c) <= cfg.correction.n
    assert c[:, 0].min() >= roi.x0 - ROI_CORNER_PAD and c[:, 0].max() < roi.x1 + ROI_CORNER_PAD
    assert c[:, 1].min() >= roi.y0 - ROI_CORNER_PAD and c[:, 1].max() < roi.y1 + ROI_CORNER_PAD
    # the same pixel content gives the same corner, wherever the crop starts (same frame size: the
    # pass scales its radii with max(H, W))
    shifted = np.zeros_like(img8)
    shifted[40:, 24:] = img8[:-40, :-24]
    from inspectd.inspection.roi import Roi

    assert roi.tip_band is not None
    bx0, by0, bx1, by1 = roi.tip_band
    assert roi.x0 <= bx0 < bx1 <= roi.x1 and roi.y0 <= by0 < by1 <= roi.y1
    assert by1 + ROI_CORNER_PAD + 40 <= img8.shape[0] and bx1 + ROI_CORNER_PAD + 24 <= img8.shape[1]
    r2 = Roi(roi.x0 + 24, roi.y0 + 40, roi.x1 + 24, roi.y1 + 40, roi.orientation, (bx0 + 24, by0 + 40, bx1 + 24, by1 + 40))
    c2 = roi_corners(shifted, r2, cfg)
    assert np.allclose(np.sort(c2[:, 0] - 24)[:50], np.sort(c[:, 0])[:50])


def test_recall_grows_with_n_and_is_high_at_2048():
    out = recall_for_frames(sim_frames(1000, 3, seed=902), (5.0,))
    r = out["recall"]
    assert out["tips"] > 50 and out["frames_without_roi"] == 0
    assert r[128][5.0] <= r[512][5.0] <= r[2048][5.0]
    assert r[2048][5.0] >= 0.9


def test_locate_lowers_fast_threshold_on_a_blurred_frame():
    from inspectd.config import CornerConfig, RoiConfig
    from inspectd.sim import SimOptions, render_frame
    from inspectd.inspection.corners import detect_corners
    from inspectd.inspection.roi import find_roi
    from inspectd.imaging.window import to_8bit

    f = render_frame(1, 2, SimOptions())  # a heavily blurred 2048² render of the demo dump
    img8 = to_8bit(f.image, f.bit_depth)
    assert find_roi(img8, detect_corners(img8, CornerConfig()), RoiConfig()) is None
    _, roi = locate(img8, Config())
    tips = np.vstack([f.anode_tips, f.cathode_tips])
    assert all(roi.x0 <= x < roi.x1 and roi.y0 <= y < roi.y1 for x, y in tips)


HARRIS_ORDER = {"rank": "harris", "max_angle_deg": 45.0, "nms_frac": 0.003, "snap_to_line_end": False, "subpix_win": 3}


def _with(cfg: Config, **correction) -> Config:
    return cfg.model_copy(update={"correction": cfg.correction.model_copy(update=correction)})


def test_real_recall_at_n512(real_dir):
    """The 8 labelled real frames: measured 1.000 within 5 px at N = 512 (0.988 with the earlier
    Harris order + angle priority + cornerSubPix, 0.931 with Harris order alone)."""
    from inspectd.evaluation.corner_eval import real_frames

    cfg = Config()
    out = recall_for_frames(real_frames(real_dir), (5.0,), cfg)
    base = recall_for_frames(real_frames(real_dir), (5.0,), _with(cfg, **HARRIS_ORDER))
    assert out["tips"] == 334
    assert out["recall"][512][5.0] >= 0.99
    assert out["recall"][128][5.0] > base["recall"][128][5.0]


def test_sim_recall_at_n512_meets_the_target():
    """Blurred sim frames are where Harris order spent the budget on grain: 6 frames at 1000² (seed
    902), measured 0.987 at N = 512 (Harris order: 0.967); the issue's target is 0.98."""
    frames = list(sim_frames(1000, 6, seed=902))
    cfg = Config()
    out = recall_for_frames(frames, (5.0,), cfg)["recall"]
    base = recall_for_frames(frames, (5.0,), _with(cfg, **HARRIS_ORDER))["recall"]
    assert out[512][5.0] >= 0.98
    assert out[256][5.0] > base[256][5.0]
