"""The Table 1 ablation (inspectd.evaluation.ablation) on two simulated frames: row schema and metric sanity."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "engines" / "hrnet_tips.onnx"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="engines/hrnet_tips.onnx is absent")


def test_run_ablation_rows(tmp_path):
    from inspectd.evaluation.ablation import DECODERS, ROW_KEYS, VARIANTS, run_ablation
    from inspectd.sim.dump import simulate_dump
    from inspectd.sim.render import SimOptions

    dump = tmp_path / "sim"
    simulate_dump(dump, count=2, seed=7100, opts=SimOptions(size=1000, bit_depth=12))
    details: dict = {}
    rows = run_ablation({"sim": [dump]}, MODEL, max_frames=2, details=details)

    assert len(rows) == len(VARIANTS) * len(DECODERS)
    assert {(r["variant"], r["decoder"]) for r in rows} == {(v, d) for v, _ in VARIANTS for d in DECODERS}
    for r in rows:
        assert tuple(r) == ROW_KEYS
        assert r["dataset"] == "sim"
        assert r["n_images"] == 2
        for k in ("nme", "pck_0_5", "pck_1", "pcs_0_5", "pcs_1", "miss_rate"):
            assert r[k] is not None and 0.0 <= r[k] <= 1.0, (r["variant"], r["decoder"], k, r[k])
        assert r["pck_0_5"] <= r["pck_1"]
        assert r["pcs_0_5"] <= r["pcs_1"]
        assert r["median_px"] is not None and r["median_px"] >= 0.0
    # The model finds the tips on clean simulated frames: a sanity bound, not a target.
    base = next(r for r in rows if r["variant"] == "HRNet" and r["decoder"] == "dark")
    assert base["miss_rate"] < 0.2 and base["median_px"] < 3.0
    assert details["timing"]["sim"]["frames"] == 2
