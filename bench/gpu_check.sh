#!/bin/bash
# Issue #19: everything that needs an NVIDIA GPU, in one run (< 8 minutes), for a session with a lent device:
#   run(command="bench/gpu_check.sh", carry=[...]) ; results land in $OUT (or bench/results/ when OUT is unset).
# 1. the GPU tests (CUDA OFAST kernels against OpenCV on full frames; the torch engine on CUDA);
# 2. CUDA OFAST vs OpenCV's ORB at 2048² (median of 30 frames, same run, both timed on this machine);
# 3. the shipped model's tips on the torch engine (CUDA, fp16 + CUDA graphs) against ONNX Runtime on the CPU.
# Needs: the repo's venv or a python with numba-cuda, onnxruntime, opencv, torch (the GPU machine has them).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' | tr 'A-Z' 'a-z')
echo "gpu: ${gpu:-none}"
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_corners_cuda.py tests/test_engine.py -k "cuda or gpu" 2>&1 | tail -15 | tee "$OUT/gpu-tests-${gpu:-none}.txt"
timeout 200 $PY - "$OUT/$(date +%F)-${gpu:-none}-corners.json" <<'PYEOF'
import json, sys, time
import numpy as np
from inspectd.config import CornerConfig
from inspectd.imaging.window import to_8bit
from inspectd.inspection.corners import detect_oriented_corners
from inspectd.inspection.corners_cuda import CudaCorners
from inspectd.sim import SimOptions, render_frame
from scipy.spatial import cKDTree
frames = [to_8bit(render_frame(11, i, SimOptions(size=2048, bit_depth=12)).image, 12) for i in range(30)]
cfg = CornerConfig(n=512)
det = CudaCorners(cfg)
det.detect_oriented_corners(frames[0])  # compile
t_cpu, t_gpu, found = [], [], []
for img in frames:
    t0 = time.perf_counter(); c, _ = detect_oriented_corners(img, cfg); t1 = time.perf_counter()
    g, _ = det.detect_oriented_corners(img); t2 = time.perf_counter()
    t_cpu.append((t1 - t0) * 1e3); t_gpu.append((t2 - t1) * 1e3)
    found.append(float(np.mean(cKDTree(g[:, :2]).query(c[:, :2])[0] <= 1.0)))
r = {"frames": len(frames), "size": 2048, "n": 512, "opencv_ms_median": float(np.median(t_cpu)),
     "cuda_ms_median": float(np.median(t_gpu)), "ratio": float(np.median(t_cpu) / np.median(t_gpu)),
     "found_within_1px_min": min(found), "note": "cuda time includes the H2D copy of the frame and the host selection"}
print(json.dumps(r, indent=1)); json.dump(r, open(sys.argv[1], "w"), indent=1)
PYEOF
timeout 200 $PY - "$OUT/$(date +%F)-${gpu:-none}-torch-tips.json" <<'PYEOF'
import json, sys, time
import numpy as np
from inspectd.backends import load_engine
from inspectd.backends.onnxruntime import OnnxRuntimeConfig
from inspectd.backends.torch import TorchConfig
from inspectd.config import Config
from inspectd.evaluation.matching import match_tips
from inspectd.frames.dumps import iter_dump
from inspectd.inspection.stages import locate, preprocess
from inspectd.sim import SimOptions, render_frame
from inspectd.sim.dump import sim_frame_to_frame
from inspectd.tips.hrnet import HrnetDetector
card = "engines/hrnet_tips.json"
cpu = HrnetDetector(load_engine(OnnxRuntimeConfig(model="engines/hrnet_tips.onnx")), card)
out = {}
for name, kw in (("fp32", {}), ("fp16_graphs", {"precision": "fp16", "cuda_graphs": True})):
    gpu = HrnetDetector(load_engine(TorchConfig(model="engines/checkpoints/hrnet_w12s_real52.pt", device="cuda", **kw)), card)
    d, n_diff, t_c, t_g = [], 0, [], []
    for i in range(20):
        fr = sim_frame_to_frame(render_frame(11, i, SimOptions(size=2048, bit_depth=12)), 11, i, "GPU")
        img8 = preprocess(fr); _, roi = locate(img8, Config())
        t0 = time.perf_counter(); a = cpu.detect(fr, img8, roi); t1 = time.perf_counter(); b = gpu.detect(fr, img8, roi); t2 = time.perf_counter()
        t_c.append(t1 - t0); t_g.append(t2 - t1)
        for p, q in ((a.anode, b.anode), (a.cathode, b.cathode)):
            pairs, up, uq = match_tips(p, q, 2.0)
            n_diff += len(up) + len(uq)
            d += list(np.hypot(*(p[pairs[:, 0]] - q[pairs[:, 1]]).T))
    out[name] = {"frames": 20, "tips_max_px": float(np.max(d)), "tips_median_px": float(np.median(d)), "unmatched": n_diff,
                 "cpu_ms_median": 1e3 * float(np.median(t_c)), "gpu_ms_median": 1e3 * float(np.median(t_g[2:]))}
print(json.dumps(out, indent=1)); json.dump(out, open(sys.argv[1], "w"), indent=1)
PYEOF
