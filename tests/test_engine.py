"""Engine backends (inspectd/backends) and the HrnetDetector on top of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspectd.backends import EngineError, OnnxRuntimeConfig, load_engine
from inspectd.config import Config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "engines" / "hrnet_tips.onnx"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from inspectd.training.export import export_onnx
    from inspectd.training.train import train
    from inspectd.sim import SimOptions
    from inspectd.sim.dump import simulate_dump

    root = tmp_path_factory.mktemp("engine")
    simulate_dump(root / "train", 2, 78, SimOptions(size=512, bit_depth=12))
    train(root / "train", root / "run", steps=2, variant="tiny", tile_w=96, tile_h=128, batch=2, threads=1, val_frames=0, warmup=1)
    path = root / "tiny.onnx"
    export_onnx(root / "run" / "last.pt", path, timing=False, log=lambda *_: None)
    return path


def test_engine_table_picks_the_backend_and_its_options(tmp_path):
    """`[engine] type` selects the plugin; each backend's own options validate in the station file."""
    from inspectd.backends import BACKENDS, TorchConfig
    from inspectd.config import ConfigError, load_config

    assert isinstance(Config().engine, OnnxRuntimeConfig)  # the default
    f = tmp_path / "s.toml"
    f.write_text('[engine]\ntype = "onnxruntime"\nmodel = "x.onnx"\nthreads = 3\nproviders = ["CPUExecutionProvider"]\n')
    e = load_config(f).engine
    assert isinstance(e, OnnxRuntimeConfig) and e.threads == 3 and e.model == Path("x.onnx")
    f.write_text('[engine]\ntype = "torch"\nmodel = "x.pt"\ndevice = "cuda:1"\n')
    e = load_config(f).engine
    assert isinstance(e, TorchConfig) and e.device == "cuda:1"
    assert sorted(BACKENDS) == ["onnxruntime", "tensorrt", "torch"]
    # an option of another backend, a bad device, an unknown backend: errors naming the key
    for body, needle in [
        ('type = "onnxruntime"\ndevice = "cuda"', "device"),
        ('type = "torch"\ndevice = "gpu0"', "device"),
        ('type = "tensorrt"\nprecision = "int4"', "precision"),
        ('type = "tensorrt"\nmax_hw = [1000, 1024]', "multiples of 32"),
        ('type = "nope"', "type must be one of"),
    ]:
        f.write_text("[engine]\n" + body + "\n")
        with pytest.raises(ConfigError, match=needle):
            load_config(f)


def test_a_provider_this_build_lacks_is_a_clear_error(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(EngineError, match="TensorrtExecutionProvider"):
        load_engine(OnnxRuntimeConfig(model=tmp_path / "x.onnx", providers=["TensorrtExecutionProvider"]))


def test_missing_model_is_a_clear_error(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(EngineError, match="not found"):
        load_engine(OnnxRuntimeConfig(model=tmp_path / "none.onnx"))


def test_onnxruntime_engine_protocol(tiny_onnx):
    from inspectd.backends.base import Engine

    eng = load_engine(OnnxRuntimeConfig(type="onnxruntime", model=tiny_onnx, threads=1), warmup=True)
    assert isinstance(eng, Engine)
    for shape in [(1, 1, 128, 96), (3, 1, 256, 192)]:
        y = eng.infer(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        assert y.shape == (shape[0], 2, shape[2] // 2, shape[3] // 2) and y.dtype == np.float32
    with pytest.raises(EngineError):
        eng.infer(np.zeros((1, 1, 100, 96), np.float32))


def test_torch_engine_matches_onnxruntime(tiny_onnx):
    pytest.importorskip("torch")
    from inspectd.backends.torch import TorchConfig, TorchEngine
    from inspectd.tips.card import load_card

    card = load_card(tiny_onnx)
    te = TorchEngine(TorchConfig(model=Path(card.training["checkpoint"]), threads=1))
    oe = load_engine(OnnxRuntimeConfig(model=tiny_onnx, threads=1))
    x = np.random.default_rng(1).standard_normal((2, 1, 128, 96)).astype(np.float32)
    assert np.abs(te.infer(x) - oe.infer(x)).max() < 1e-4


def test_torch_gpu_options_are_refused_on_the_cpu_and_a_missing_gpu_is_named(tiny_onnx, tmp_path):
    """Issue #19 item 6: fp16 / CUDA graphs on the CPU are config errors; a CUDA device torch cannot see is
    an EngineError at load naming it (never a silent CPU run under a GPU config)."""
    torch = pytest.importorskip("torch")
    from inspectd.backends.torch import TorchConfig, TorchEngine
    from inspectd.config import ConfigError, load_config
    from inspectd.tips.card import load_card

    f = tmp_path / "s.toml"
    for body in ('precision = "fp16"', "cuda_graphs = true"):
        f.write_text(f'[engine]\ntype = "torch"\nmodel = "x.pt"\n{body}\n')
        with pytest.raises(ConfigError, match="need device"):
            load_config(f)
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    te = TorchEngine(TorchConfig(model=Path(load_card(tiny_onnx).training["checkpoint"]), device="cuda"))
    with pytest.raises(EngineError, match="sees no CUDA GPU"):
        te.load()


def test_torch_engine_on_a_gpu_fp16_and_cuda_graphs_match_the_cpu(tiny_onnx):
    """GPU only (skipped here): fp32, fp16 and fp16 + CUDA graphs on CUDA against the CPU engine."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    from inspectd.backends.torch import TorchConfig, TorchEngine
    from inspectd.tips.card import load_card

    ck = Path(load_card(tiny_onnx).training["checkpoint"])
    cpu = TorchEngine(TorchConfig(model=ck, threads=1))
    x = np.random.default_rng(1).standard_normal((3, 1, 128, 96)).astype(np.float32)
    ref = cpu.infer(x)
    for kw, tol in (({}, 1e-3), ({"precision": "fp16"}, 2e-2), ({"precision": "fp16", "cuda_graphs": True}, 2e-2)):
        g = TorchEngine(TorchConfig(model=ck, device="cuda", **kw))
        for _ in range(2):  # the second call replays the captured graph
            assert np.abs(g.infer(x) - ref).max() < tol, kw
        assert np.abs(g.infer(x[:1]) - ref[:1]).max() < tol  # another shape: another graph


def test_hrnet_detector_plumbing(tiny_onnx):
    from inspectd.frames import Frame
    from inspectd.training.validation import roi_from_labels
    from inspectd.sim import SimOptions, render_frame
    from inspectd.tips.hrnet import HrnetDetector, load_detector
    from inspectd.tips.detector import DetectionUnavailable
    from inspectd.imaging.window import to_8bit

    det = load_detector(OnnxRuntimeConfig(model=tiny_onnx, threads=1))
    assert isinstance(det, HrnetDetector) and det.name.startswith("hrnet_tiny-") and len(det.name) == len("hrnet_tiny-") + 8
    sim = render_frame(5, 0, SimOptions(size=512, bit_depth=12))
    frame = Frame("f", sim.image)
    img8 = to_8bit(sim.image, 12)
    roi = roi_from_labels(sim.anode_tips, sim.cathode_tips, img8.shape)
    tips = HrnetDetector(det.engine, det.card, threshold=0.0).detect(frame, img8, roi)
    assert tips.anode.ndim == 2 and tips.anode.shape[1] == 2 and tips.cathode.shape[1] == 2
    with pytest.raises(DetectionUnavailable):
        det.detect(frame, img8, None)


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no trained model at {SHIPPED}")
def test_shipped_model_detects_sim_tips():
    """The shipped model on 3 simulator frames it never saw (seed 4242) does what its card says.

    Two bounds: the card's own held-out median error plus 50 % (a worse model
    or a broken decode path shipped under a card that claims better fails),
    and the issue's 0.5 px median target, which the shipped model meets.
    """
    pytest.importorskip("onnxruntime")
    from inspectd.config import CornerConfig
    from inspectd.frames import Frame
    from inspectd.evaluation.matching import default_gate, match_tips
    from inspectd.sim import SimOptions, render_frame
    from inspectd.inspection.corners import detect_corners
    from inspectd.tips.hrnet import load_detector
    from inspectd.inspection.roi import find_roi
    from inspectd.config import RoiConfig
    from inspectd.imaging.window import to_8bit

    det = load_detector(OnnxRuntimeConfig(model=SHIPPED))
    errs, miss, false, n_gt = [], 0, 0, 0
    for i in range(3):
        sim = render_frame(4242, i, SimOptions(size=1000, bit_depth=12, defect_rate=0.0))
        img8 = to_8bit(sim.image, 12)
        roi = find_roi(img8, detect_corners(img8, CornerConfig()), RoiConfig())
        assert roi is not None
        tips = det.detect(Frame(f"f{i}", sim.image), img8, roi)
        gate = default_gate(sim.anode_tips, sim.cathode_tips)
        for pred, gt in ((tips.anode, sim.anode_tips), (tips.cathode, sim.cathode_tips)):
            pairs, up, ug = match_tips(pred, gt, gate)
            errs += np.hypot(*(pred[pairs[:, 0]] - gt[pairs[:, 1]]).T).tolist()
            miss, false, n_gt = miss + len(ug), false + len(up), n_gt + len(gt)
    import json

    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    claimed = card["metrics"]["test"]["at_threshold"][card["decode"]["decoder"]]["median_px"]
    assert np.median(errs) <= 1.5 * claimed, (np.median(errs), claimed)
    assert np.median(errs) <= 0.5  # the synthetic target (measured 0.34 px on these 3 frames, 227 tips)
    assert miss / n_gt <= 0.02 and false / n_gt <= 0.02


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no trained model at {SHIPPED}")
def test_shipped_model_measures_a_pulled_back_cathode():
    """`overhang_long` cells (a cathode pulled back ~22 pitches behind its anodes) of the held-out
    test seed: with tiles reaching `[engine] back_pitches` = 40 behind the front, the pipeline finds
    that cathode and rejects the cell for OVERHANG_MAX with every cathode counted. (With ROI-sized
    tiles, back_pitches = 0, the step-8000 model missed all three: COUNT_MISMATCH.)"""
    pytest.importorskip("onnxruntime")
    from inspectd.config import Config
    from inspectd.frames import Frame, Sidecar
    from inspectd.inspection.stages import Inspector
    from inspectd.sim import SimOptions, render_frame
    from inspectd.tips.hrnet import load_detector

    cfg = Config()
    cfg = cfg.model_copy(update={"engine": OnnxRuntimeConfig(model=SHIPPED, back_pitches=40.0)})
    ins = Inspector(cfg, load_detector(cfg.engine))
    found = 0
    for i in (5, 9, 13):
        sim = render_frame(7000, i, SimOptions(size=1000, bit_depth=12))
        assert sim.defects == ["overhang_long"]
        meta = Sidecar(mm_per_px=sim.mm_per_px, bit_depth=12)
        v = ins.inspect(Frame(f"f{i}", sim.image, meta), seq=i).verdict
        assert v.result.value == "NG"
        codes = {r.code.value for r in v.reasons}
        found += "OVERHANG_MAX" in codes and len(v.cathode_tips) == len(sim.cathode_tips)
    assert found == 3, found


def test_tensorrt_plan_key_config_and_the_error_without_tensorrt(tmp_path):
    """What of the TensorRT engine runs without a GPU: config, plan cache key, and a clear error."""
    from inspectd.backends.tensorrt import TensorRtConfig, TensorRtEngine, plan_key, plan_path

    cfg = TensorRtConfig(model=tmp_path / "m.onnx")
    assert cfg.profile() == ((1, 1, 32, 32), (1, 1, 256, 352), (8, 1, 1024, 1024))
    base = plan_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0", cfg)
    assert len(base) == 16 and base == plan_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0", cfg)
    others = {
        plan_key("cd" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0", cfg),  # another network
        plan_key("ab" * 32, "10.10.0", "NVIDIA H100 80GB HBM3", "9.0", cfg),  # another TensorRT
        plan_key("ab" * 32, "10.9.0", "NVIDIA H200", "9.0", cfg),  # another GPU
        plan_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0", cfg.model_copy(update={"precision": "fp32"})),
        plan_key("ab" * 32, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0", cfg.model_copy(update={"max_batch": 16})),
    }
    assert base not in others and len(others) == 5
    assert plan_path(cfg, base) == tmp_path / f"m.{base}.plan"
    with pytest.raises(ValueError, match="opt_shape"):
        TensorRtConfig(opt_shape=(1, 1, 2048, 352))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(EngineError, match="needs TensorRT 10"):
            TensorRtEngine(cfg).load()


def test_daemon_workers_take_one_engine_thread_per_core_unless_the_station_says():
    """Unset `[engine] threads`: each worker gets cpu_count // workers (the workers are the parallelism);
    a station that sets it keeps its value."""
    import os

    from inspectd.config import load_config
    from inspectd.pipeline.workers import worker_engine_settings

    cfg = Config()
    assert worker_engine_settings(cfg)["threads"] == max(1, (os.cpu_count() or 1) // cfg.pipeline.workers)
    one = Config.model_validate({"pipeline": {"workers": 1}})
    assert worker_engine_settings(one)["threads"] == max(1, os.cpu_count() or 1)
    assert worker_engine_settings(load_config(overrides={"engine.threads": 3}))["threads"] == 3
