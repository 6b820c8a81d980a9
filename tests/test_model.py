"""The HRNet tip model: network shapes, training (loss, checkpoint/resume), ONNX export vs torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inspectd.nets.hrnet import VARIANTS, build_model, count_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = dict(variant="tiny", tile_w=96, tile_h=128, batch=2, threads=1, val_frames=0, warmup=1, log_every=1)


@pytest.fixture(scope="module")
def sim_dump(tmp_path_factory):
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump

    d = tmp_path_factory.mktemp("sim") / "train"
    simulate_dump(d, 3, 77, SimOptions(size=512, bit_depth=12))
    return d


@pytest.mark.parametrize("stride", [2, 4])
def test_tiny_forward_shape(stride):
    m = build_model("tiny", head_stride=stride).eval()
    with torch.no_grad():
        y = m(torch.zeros(2, 1, 128, 96))
    assert tuple(y.shape) == (2, 2, 128 // stride, 96 // stride)
    assert m.stride == stride


def test_variants_build():
    # the W18-small backbone with the chosen head stays small (docs/model.md has the measured figures)
    n = {v: count_params(build_model(v)) for v in ("w18s", "w12s")}
    assert 1.0e6 < n["w18s"] < 1.6e6 and 0.3e6 < n["w12s"] < 0.6e6
    assert set(VARIANTS) >= {"w18s", "w18s_v2", "w12s", "tiny"}


def test_few_steps_reduce_loss(sim_dump):
    from inspectd.tips.codec import HeatmapCodec
    from inspectd.tips.crop import InputSpec
    from inspectd.training.data import AugConfig, find_dumps, load_frames, make_batch_train
    from inspectd.training.train import TrainOptions, loss_fn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    spec = InputSpec(tile_w=96, tile_h=128)
    codec = HeatmapCodec()
    frames = load_frames(find_dumps(sim_dump), spec, AugConfig())
    x, y = make_batch_train(frames, spec, codec, AugConfig(), np.random.default_rng(0), 4)
    assert x.shape == (4, 1, 128, 96) and y.shape == (4, 2, 64, 48) and y.max() > 0.9
    m = build_model("tiny")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    o = TrainOptions()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(15):
        loss = loss_fn(m(xt), yt, o)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_checkpoint_resume_is_exact(sim_dump, tmp_path):
    from inspectd.training.train import train

    full = train(sim_dump, tmp_path / "full", steps=6, **TINY)
    part = train(sim_dump, tmp_path / "part", steps=6, stop_at=3, **TINY)
    assert part["step"] == 3 and (tmp_path / "part" / "last.pt").is_file()
    resumed = train(sim_dump, tmp_path / "part", resume=True)
    assert resumed["step"] == 6
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-6, abs=1e-9)
    log = (tmp_path / "part" / "train.log").read_text()
    assert "resumed from" in log


def test_batch_workers_give_the_same_run(sim_dump, tmp_path):
    """Batches made by worker processes (--workers) are the loop's own: same losses, step for step,
    also across a resume that changes the worker count."""
    from inspectd.training.train import train

    inline = train(sim_dump, tmp_path / "inline", steps=5, **TINY)
    part = train(sim_dump, tmp_path / "workers", steps=5, stop_at=2, workers=2, **TINY)
    assert part["step"] == 2
    resumed = train(sim_dump, tmp_path / "workers", resume=True, workers=3)
    assert resumed["loss"] == pytest.approx(inline["loss"], rel=1e-6, abs=1e-9)
    ck = torch.load(tmp_path / "workers" / "last.pt", map_location="cpu", weights_only=False)
    ck_inline = torch.load(tmp_path / "inline" / "last.pt", map_location="cpu", weights_only=False)
    losses = [h["loss"] for h in ck["history"] if "loss" in h]
    assert losses == pytest.approx([h["loss"] for h in ck_inline["history"] if "loss" in h], rel=1e-6)


def test_parallel_simulate_and_load_give_the_same_data(sim_dump, tmp_path):
    """simulate --workers and load_frames(workers=...) fork worker processes (inspectd.forking): the
    dump is the same byte for byte and the cached frames are the same, in the same order. This test
    process has used OpenCV's thread pool by now (rendering): the case that hung a forked child."""
    from inspectd.tips.crop import InputSpec
    from inspectd.training.data import AugConfig, load_frames
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump

    simulate_dump(tmp_path / "par", 3, 77, SimOptions(size=512, bit_depth=12), workers=2)
    files = sorted(p.name for p in sim_dump.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "par").iterdir())
    assert all((sim_dump / f).read_bytes() == (tmp_path / "par" / f).read_bytes() for f in files)
    spec = InputSpec(tile_w=96, tile_h=128)
    one = load_frames([sim_dump], spec, AugConfig())
    two = load_frames([sim_dump], spec, AugConfig(), workers=2)
    assert [f.frame_id for f in one] == [f.frame_id for f in two] and len(one) == 3
    assert all(np.array_equal(a.raw, b.raw) and np.array_equal(a.anode, b.anode) for a, b in zip(one, two))


def test_a_dead_batch_worker_stops_the_run_instead_of_hanging(sim_dump):
    """A worker killed (as the OOM killer would) used to leave the trainer waiting for its batch forever."""
    import os
    import signal
    import time

    from inspectd.tips.codec import HeatmapCodec
    from inspectd.tips.crop import InputSpec
    from inspectd.training.data import AugConfig, find_dumps, load_frames
    from inspectd.training.batches import BatchStream

    spec = InputSpec(tile_w=96, tile_h=128)
    frames = load_frames(find_dumps(sim_dump), spec, AugConfig())
    stream = BatchStream(frames, spec, HeatmapCodec(), AugConfig(), 0, 2, None, workers=2)
    try:
        x, _ = stream.get(0, 100)
        assert x.shape == (2, 1, 128, 96)
        os.kill(next(iter(stream._pool._processes)), signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="batch worker process died"):
            for step in range(1, 100):
                stream.get(step, 100)
        assert time.monotonic() - t0 < 60
    finally:
        stream.close()


def test_resume_takes_device_and_workers_from_this_call_not_the_checkpoint(sim_dump, tmp_path):
    """A run trained with --device cuda --workers 15 resumes on a CPU machine with a plain --resume."""
    from inspectd.training.train import train

    train(sim_dump, tmp_path / "run", steps=4, stop_at=2, **TINY)
    ck = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    ck["options"] |= {"device": "cuda", "workers": 15}
    torch.save(ck, tmp_path / "run" / "last.pt")
    res = train(sim_dump, tmp_path / "run", resume=True)
    assert res["step"] == 4
    assert "on cpu" in (tmp_path / "run" / "train.log").read_text()


def test_cuda_without_a_gpu_is_an_error_not_a_cpu_run(sim_dump, tmp_path):
    from inspectd.training.train import train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        train(sim_dump, tmp_path / "cuda", steps=1, device="cuda", **TINY)


def test_init_fine_tunes_from_a_checkpoint(sim_dump, tmp_path):
    """--init starts from another run's weights (here with wider tiles), with a fresh schedule."""
    from inspectd.nets.checkpoint import load_checkpoint
    from inspectd.training.train import train

    train(sim_dump, tmp_path / "base", steps=3, **TINY)
    base, _ = load_checkpoint(tmp_path / "base" / "last.pt")
    # lr ~ 0: after one step the weights are still the base run's, so they were loaded
    # (parameters only: batch-norm running statistics move with every forward pass)
    res = train(sim_dump, tmp_path / "ft", steps=1, init=str(tmp_path / "base" / "last.pt"), lr=1e-12,
                **{**TINY, "tile_w": 128})
    assert res["step"] == 1
    ft, ck = load_checkpoint(tmp_path / "ft" / "last.pt")
    for (k, a), b in zip(base.named_parameters(), ft.parameters()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert ck["options"]["init"].endswith("last.pt") and ck["input_spec"]["tile_w"] == 128
    assert "initialised from" in (tmp_path / "ft" / "train.log").read_text()
    fresh = train(sim_dump, tmp_path / "fresh", steps=1, lr=1e-12, **TINY)  # no init: other weights
    assert fresh["step"] == 1
    other, _ = load_checkpoint(tmp_path / "fresh" / "last.pt")
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(other.parameters(), base.parameters()))
    with pytest.raises(ValueError, match="differs"):  # another architecture cannot be initialised from it
        train(sim_dump, tmp_path / "bad", steps=1, init=str(tmp_path / "base" / "last.pt"), **{**TINY, "head_stride": 4})


def test_export_matches_torch(sim_dump, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from inspectd.tips.card import card_path, load_card, sha256_file
    from inspectd.training.export import export_onnx
    from inspectd.training.train import train

    train(sim_dump, tmp_path / "run", steps=2, **TINY)
    onnx_path = tmp_path / "tiny.onnx"
    card = export_onnx(tmp_path / "run" / "last.pt", onnx_path, timing=False, log=lambda *_: None)
    assert card.export["max_abs_diff"] < 1e-4
    assert card.export["opset"] >= 17
    c2 = load_card(card_path(onnx_path))
    assert c2.sha256 == sha256_file(onnx_path) and c2.model_id == f"hrnet_tiny-{c2.sha256[:8]}"
    assert c2.input_spec().tile_w == 96 and c2.codec().stride == 2
    assert c2.training["step"] == 2 and c2.training["data"][0]["sim_seeds"] == [77]
    # a threshold fixed by the caller is what ships; the calibration's own choice stays in the card
    fixed = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "fixed.onnx", calib=[str(sim_dump)], calib_frames=2,
                        threshold=0.77, timing=False, log=lambda *_: None)  # fmt: skip
    assert fixed.codec().threshold == 0.77 and fixed.metrics["calibration"]["threshold_fixed"] == 0.77
    assert "threshold" in fixed.metrics["calibration"]


def test_frame_weights_oversample_defect_kinds(sim_dump):
    from inspectd.tips.codec import HeatmapCodec
    from inspectd.tips.crop import InputSpec
    from inspectd.training.data import AugConfig, find_dumps, frame_weights, load_frames, make_batch_train

    spec = InputSpec(tile_w=96, tile_h=128)
    frames = load_frames(find_dumps(sim_dump), spec, AugConfig())
    assert len(frames) == 3
    assert frame_weights(frames, {}) is None  # no oversampling: uniform draws
    frames[1] = dataclasses.replace(frames[1], defects=("extra_layer",))
    frames[2] = dataclasses.replace(frames[2], defects=("folded_tip",))
    p = frame_weights(frames, {"extra_layer": 4.0})
    np.testing.assert_allclose(p, [1 / 6, 4 / 6, 1 / 6])
    x, y = make_batch_train(frames, spec, HeatmapCodec(), AugConfig(), np.random.default_rng(0), 5, p)
    assert x.shape == (5, 1, 128, 96) and y.shape == (5, 2, 64, 48)
    # a dump's weight (labelled real frames beside simulated ones) multiplies the defect weight
    assert all(f.source == str(find_dumps(sim_dump)[0]) for f in frames)
    frames[0] = dataclasses.replace(frames[0], source="/data/real/images")
    p = frame_weights(frames, {"extra_layer": 4.0}, {"real": 3.0})
    np.testing.assert_allclose(p, [3 / 8, 4 / 8, 1 / 8])
    np.testing.assert_allclose(frame_weights(frames, {}, {"real": 3.0}), [3 / 5, 1 / 5, 1 / 5])


def test_train_takes_a_labelled_real_dump_beside_a_simulated_one(sim_dump, real_dir, tmp_path):
    """Station adaptation: real frames (images/ + labels/) in the same run as simulator frames, weighted."""
    from inspectd.labelling.workflow import assemble
    from inspectd.training.train import train

    stems = {"10-20-10__NULL_1_1_duofuduo_sangdun-clear", "17-05-07__NULL_1_2_duofuduo_sangdun-blur"}
    assert assemble(real_dir / "images", real_dir / "labels", tmp_path / "real", only=stems) == 2
    res = train([str(sim_dump), str(tmp_path / "real")], tmp_path / "run", steps=3, dump_weights={"real": 4.0}, **TINY)
    log = (tmp_path / "run" / "train.log").read_text()
    assert res["step"] == 3 and "cached 2 frames from" in log and '"real": ' in log
    # the card names the real frames a model saw (the images/ folder is what training records)
    from inspectd.training.export import describe_dumps

    real, sim = describe_dumps([tmp_path / "real" / "images", sim_dump])
    assert real["frames"] == 2 and real["real_frames"] == sorted(stems) and real["label_quality"] == {"checked": 2}
    assert real["image_shape"] == ["(1000, 1000)"] and "real_frames" not in sim and sim["frames"] > 0


def test_int8_variant_of_the_shipped_model_keeps_finding_tips(sim_dump, tmp_path):
    """`python -m inspectd.training.quantize`: an int8 model and card the detector loads, compared with fp32.

    Calibrated and measured on the same 3 small frames: this checks the tool and that
    quantisation keeps the model working, not the held-out figures (docs/model.md)."""
    pytest.importorskip("onnxruntime.quantization")
    from inspectd.backends import OnnxRuntimeConfig
    from inspectd.tips.card import load_card, sha256_file
    from inspectd.training.quantize import main
    from inspectd.tips.hrnet import load_detector

    src = REPO / "engines" / "hrnet_tips.onnx"
    out = tmp_path / "tips-int8.onnx"
    rc = main([str(src), str(out), "--calib", str(sim_dump), "--test", str(sim_dump), "--calib-tiles", "4",
               "--test-frames", "3", "--rounds", "1", "--json", str(tmp_path / "cmp.json")])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "cmp.json").read_text())
    fp, q = res["models"]["fp32"], res["models"]["int8"]
    assert q["size_bytes"] < 0.5 * fp["size_bytes"]  # int8 weights
    assert fp["n_labelled"] > 20
    assert q["miss_rate"] <= fp["miss_rate"] + 0.05 and q["median_px"] < 1.0, q  # int8 still finds the tips
    card = load_card(out)
    assert card.sha256 == sha256_file(out) and card.model_id != load_card(src).model_id
    assert card.metrics["int8_vs_fp32"]["models"]["int8"]["median_px"] == q["median_px"]
    det = load_detector(OnnxRuntimeConfig(model=out), warmup=False)
    assert det.name == card.model_id
