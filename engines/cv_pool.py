"""Pool leave-one-family-out fold models over the 8 hand-checked real frames (docs/accuracy.md).

Usage from the repo root: .venv/bin/python engines/cv_pool.py runs/dr/cvw2_  (fold models PREFIX<family>/model.onnx,
the family test dumps runs/ft/cv2/<family>/test from engines/real_cv.sh); prints the pooled rows, the fold
models against the predecessor (runs/dr/shipped/model.onnx, a copy of baf52edf)."""
import json, subprocess, sys
from pathlib import Path
R = Path(__file__).resolve().parents[1]; I = str(R / ".venv/bin/inspectd")
prefix = sys.argv[1]; out = Path(f"{prefix}pooled"); out.mkdir(exist_ok=True)
def replay(model, dump, tag):
    o = out / tag; o.mkdir(exist_ok=True)
    (o / "cfg.toml").write_text(f'[engine]\nmodel = "{model}"\n[gate]\nenabled = false\n')
    subprocess.run([I, "replay", str(dump), "-c", str(o / "cfg.toml"), "--out", str(o / "v.jsonl")], check=True, capture_output=True, cwd=R)
    return (o / "v.jsonl").read_text()
pooled = {"shipped": "", "folds": ""}
for fam in ["clear", "blur", "separator_shadow", "tray"]:
    m = R / f"{prefix}{fam}/model.onnx"
    if not m.exists(): print("missing", fam); continue
    test = R / f"runs/ft/cv2/{fam}/test"
    pooled["folds"] += replay(m, test, f"{fam}-fold")
    pooled["shipped"] += replay(R / "runs/dr/shipped/model.onnx", test, f"{fam}-shipped")
for k, txt in pooled.items():
    (out / f"{k}.jsonl").write_text(txt)
    r = json.loads(subprocess.run([I, "eval", "../shared/data/real", str(out / f"{k}.jsonl"), "--json"], check=True, capture_output=True, text=True, cwd=R).stdout)
    e, pc = r["error_px"], r["per_class"]
    print(f"| {k} | {r['n_images']} | {e['median']:.2f} | {e['p95']:.2f} | {e['p99']:.2f} | {100*r['miss_rate']:.1f} | {100*pc['anode']['miss_rate']:.1f} / {100*pc['cathode']['miss_rate']:.1f} | {100*r['false_tip_rate']:.1f} | {100*r['nme']:.3f} | {r['pck']['1%']:.3f} |")
