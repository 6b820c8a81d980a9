"""OFAST on the GPU (inspection/corners_cuda.py) and its step-by-step NumPy reference (inspection/ofast.py).

Three checks, each where it can run:
- the reference against OpenCV's ORB (the CPU path) on simulated and real frames: every corner of
  OpenCV's top-N found within 1 px (issue #19 asks >= 98 %; measured here: all, at the same pixel);
- the CUDA kernels against the reference through numba's CUDA simulator (a subprocess with
  NUMBA_ENABLE_CUDASIM=1: the same kernel source, run on the CPU), on small frames;
- the kernels on a real GPU, full frames, skipped without one (bench/gpu_check.sh runs it there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from inspectd.config import CornerConfig
from inspectd.frames.dumps import read_frame
from inspectd.imaging.window import to_8bit
from inspectd.inspection.corners import detect_oriented_corners
from inspectd.inspection.ofast import detect_oriented_corners_ref, fast_scores, retain_best

REPO = Path(__file__).resolve().parents[1]


def _sim_frames(n: int = 2):
    from inspectd.sim import SimOptions, render_frame

    for i in range(n):
        f = render_frame(4100, i, SimOptions(size=1000, bit_depth=12, defect_rate=0.3))
        yield f"sim{i}", to_8bit(f.image, 12)


def _real_frames(real_dir: Path, n: int = 4):
    paths = sorted((real_dir / "images").glob("*"))
    step = max(1, len(paths) // n)
    for p in paths[::step][:n]:
        fr = read_frame(p)
        yield p.stem, to_8bit(fr.image, fr.bit_depth)


def _parity(img8: np.ndarray, n: int) -> dict:
    ref_c, ref_a = detect_oriented_corners_ref(img8, n, CornerConfig().fast_threshold)
    cv_c, cv_a = detect_oriented_corners(img8, CornerConfig(n=n))
    assert len(cv_c) > 0
    d, j = cKDTree(ref_c[:, :2]).query(cv_c[:, :2])
    same = d == 0
    da = np.abs((cv_a[same] - ref_a[j[same]] + 180.0) % 360.0 - 180.0)
    rel = np.abs(cv_c[same, 2] - ref_c[j[same], 2]) / np.maximum(np.abs(cv_c[same, 2]), 1e-12)
    return {"found_1px": float(np.mean(d <= 1.0)), "n_cv": len(cv_c), "n_ref": len(ref_c),
            "angle_deg_max": float(da.max()) if da.size else 0.0, "score_rel_max": float(rel.max()) if rel.size else 0.0}  # fmt: skip


def test_fast_score_is_opencvs_corner_score_on_a_hand_made_corner():
    img = np.full((9, 9), 100, np.uint8)
    img[4, 4] = 160  # a bright point: all 16 circle pixels are 60 darker
    s = fast_scores(img, 10)
    assert s[4, 4] == 59  # the largest threshold at which it is still a corner (OpenCV: threshold - 1 of the last)
    assert s.sum() == 59
    assert fast_scores(img, 60)[4, 4] == 0


def test_retain_best_keeps_ties_at_the_cut_as_opencv_does():
    assert sorted(retain_best(np.array([5, 3, 3, 3, 1]), 2)) == [0, 1, 2, 3]
    assert sorted(retain_best(np.array([5, 4, 3]), 5)) == [0, 1, 2]


def test_the_reference_is_opencvs_orb_on_simulated_and_real_frames(real_dir):
    rows = {name: _parity(img, 512) for name, img in [*_sim_frames(), *_real_frames(real_dir)]}
    for name, r in rows.items():
        assert r["found_1px"] >= 0.98, (name, r)
        assert r["angle_deg_max"] <= 0.5, (name, r)  # OpenCV's fastAtan2 is good to ~0.3 deg
        assert r["score_rel_max"] <= 1e-5, (name, r)


_SIM_SCRIPT = r"""
import json, sys
import numpy as np
from inspectd.config import CornerConfig
from inspectd.inspection.corners_cuda import CudaCorners, cuda_available
from inspectd.inspection.ofast import detect_oriented_corners_ref
ok, why = cuda_available()
assert ok, why
out = {}
for name in sys.argv[1:]:
    img = np.load(name)
    c, a = CudaCorners(CornerConfig(n=64)).detect_oriented_corners(img)
    r, ra = detect_oriented_corners_ref(img, 64, CornerConfig().fast_threshold)
    out[name] = {"n": len(c), "n_ref": len(r), "same_xy": bool(np.array_equal(c[:, :2], r[:, :2])),
                 "score_rel": float(np.max(np.abs(c[:, 2] - r[:, 2]) / np.maximum(np.abs(r[:, 2]), 1e-12))) if len(r) else 0.0,
                 "angle": float(np.max(np.abs(a - ra))) if len(r) else 0.0}
print(json.dumps(out))
"""


def test_the_cuda_kernels_match_the_reference_in_numbas_cuda_simulator(tmp_path, real_dir):
    pytest.importorskip("numba_cuda", reason="numba-cuda (the gpu extra) is not installed")
    rng = np.random.default_rng(0)
    comb = np.full((104, 104), 60, np.uint8)
    for k in range(6):
        comb[20 + 10 * k : 25 + 10 * k, 20 : 60 + 4 * k] = 200
    comb = np.clip(comb + rng.normal(0, 4, comb.shape), 0, 255).astype(np.uint8)
    name, real = next(_real_frames(real_dir, 1))
    ys, xs = np.unravel_index(np.argmax(fast_scores(real, 10)), real.shape)  # a crop around a strong corner
    y0, x0 = int(np.clip(ys - 56, 0, real.shape[0] - 112)), int(np.clip(xs - 56, 0, real.shape[1] - 112))
    files = []
    for tag, img in (("comb", comb), ("real", np.ascontiguousarray(real[y0 : y0 + 112, x0 : x0 + 112]))):
        files.append(str(tmp_path / f"{tag}.npy"))
        np.save(files[-1], img)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", _SIM_SCRIPT, *files], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for f, row in res.items():
        assert row["n"] == row["n_ref"] > 0 and row["same_xy"], (f, row)
        assert row["score_rel"] <= 1e-5 and row["angle"] <= 1e-3, (f, row)


def test_the_cuda_kernels_on_a_gpu_match_opencv_on_full_frames(real_dir):
    cc = pytest.importorskip("inspectd.inspection.corners_cuda")
    ok, why = cc.cuda_available()
    if not ok or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip(f"no GPU here: {why or 'the CUDA simulator is on'}")
    det = cc.CudaCorners(CornerConfig(n=512))
    for name, img in [*_sim_frames(), *_real_frames(real_dir)]:
        cv_c, cv_a = detect_oriented_corners(img, CornerConfig(n=512))
        g_c, g_a = det.detect_oriented_corners(img)
        d, _ = cKDTree(g_c[:, :2]).query(cv_c[:, :2])
        assert np.mean(d <= 1.0) >= 0.98, name
