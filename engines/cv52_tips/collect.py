"""Per-class threshold, nested over the family folds: collect each fold model's tips (threshold 0.2, with scores)
on its held-out family, for offline threshold choice.  collect.py -> runs/thr/tips.npz-ish json"""
import json, sys, os
from pathlib import Path
import numpy as np
from inspectd.config import Config
from inspectd.backends.onnxruntime import OnnxRuntimeConfig
from inspectd.backends import load_engine
from inspectd.tips.hrnet import HrnetDetector
from inspectd.inspection.stages import preprocess, locate
from inspectd.frames.dumps import iter_dump
R = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cv52")
out = {}
for fold in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["clear", "blur", "shadow", "tray", "fork", "guanyu", "1600"]):
    m = R / fold / "model.onnx"
    eng = load_engine(OnnxRuntimeConfig(model=m), load=True)
    card = json.loads(m.with_suffix(".json").read_text())
    class TTA:
        def __init__(self, e): self.e = e
        def load(self): self.e.load()
        def infer(self, b):
            h1 = np.asarray(self.e.infer(b))
            h2 = np.asarray(self.e.infer(np.ascontiguousarray(b[:, :, ::-1, :])))[:, :, ::-1, :]
            return 0.5 * (h1 + h2)
    det = HrnetDetector(TTA(eng) if os.environ.get("TTA") else eng, m.with_suffix(".json"), threshold=0.2)
    cfg = Config()
    for fr in iter_dump(R / fold / "test"):
        img8 = preprocess(fr)
        _, roi = locate(img8, cfg)
        t = det.detect(fr, img8, roi)
        a, c = fr.meta.labels.arrays()
        out[fr.frame_id] = dict(fold=fold, card_thr=card["decode"]["threshold"],
            a=np.column_stack([t.anode, t.anode_score]).tolist(), c=np.column_stack([t.cathode, t.cathode_score]).tolist(),
            ga=a.tolist(), gc=c.tolist())
        print(fold, fr.frame_id, len(t.anode), len(t.cathode), len(a), len(c), flush=True)
json.dump(out, open(sys.argv[3] if len(sys.argv) > 3 else "runs/thr/tips.json", "w"))
