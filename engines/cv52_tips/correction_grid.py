"""The paper's corner correction (§2.3) on held-out real frames, over its N and δ (issue #15).

From the repo root, after the folds are trained (engines/real_cv52.sh):
  .venv/bin/python engines/cv52_tips/correction_grid.py [ROOT=runs/cv52s_w6] [FOLDS=s0,s1,s2t65,s3] [OUT=runs/thr/corrgrid]
Each fold model replays the frames it never saw, correction off and then on at every (N, δ) of the grid; the
verdicts are pooled over the folds and scored against the checked labels of all 52 frames (`inspectd eval`).
Prints one markdown row per setting and writes OUT/grid.json.
"""
import json
import subprocess
import sys
from pathlib import Path

R = Path(__file__).resolve().parents[2]
I = str(R / ".venv/bin/inspectd")
ROOT = R / (sys.argv[1] if len(sys.argv) > 1 else "runs/cv52s_w6")
FOLDS = (sys.argv[2] if len(sys.argv) > 2 else "s0,s1,s2t65,s3").split(",")
OUT = R / (sys.argv[3] if len(sys.argv) > 3 else "runs/thr/corrgrid")
GRID = [(n, d) for n in (128, 512, 2048) for d in (2.0, 3.0, 5.0)]


def replay(fold: str, tag: str, correction: str) -> list[str]:
    o = OUT / fold / tag
    o.mkdir(parents=True, exist_ok=True)
    (o / "cfg.toml").write_text(f'[engine]\nmodel = "{ROOT / fold / "model.onnx"}"\n[gate]\nenabled = false\n'
                                f"[correction]\n{correction}\n")  # fmt: skip
    if not (o / "v.jsonl").exists():
        subprocess.run([I, "replay", str(ROOT / fold / "test"), "-c", str(o / "cfg.toml"), "--out", str(o / "v.jsonl.tmp")],
                       check=True, capture_output=True, cwd=R)  # fmt: skip
        (o / "v.jsonl.tmp").rename(o / "v.jsonl")
    return (o / "v.jsonl").read_text().splitlines()


def score(lines: list[str], tag: str) -> dict:
    p = OUT / f"{tag}.jsonl"
    p.write_text("\n".join(lines) + "\n")
    dump = ROOT / "real52"
    if not dump.exists():
        subprocess.run([I, "label", "assemble", "--images", "../shared/data/real/images", "--labels", "engines/labels/real",
                        "--out", str(dump)], check=True, capture_output=True, cwd=R)  # fmt: skip
    r = subprocess.run([I, "eval", str(dump), str(p), "--json"], check=True, capture_output=True, text=True, cwd=R)
    return json.loads(r.stdout)


def main() -> None:
    settings = [("off", "enabled = false")] + [(f"n{n}-d{d:g}", f"enabled = true\nn = {n}\ndelta_px = {d}") for n, d in GRID]
    report = {}
    print("| correction | median px | p95 px | p99 px | missed % | false % | NME % | PCK@1% |")
    print("|---|---|---|---|---|---|---|---|")
    for tag, toml in settings:
        lines = [ln for fold in FOLDS for ln in replay(fold, tag, toml)]
        r = score(lines, tag)
        e = r["error_px"]
        report[tag] = {"median_px": e["median"], "p95_px": e["p95"], "p99_px": e["p99"], "miss_rate": r["miss_rate"],
                       "false_rate": r["false_tip_rate"], "nme": r["nme"], "pck_1pct": r["pck"]["1%"], "frames": r["n_images"]}  # fmt: skip
        print(f"| {tag} | {e['median']:.2f} | {e['p95']:.2f} | {e['p99']:.2f} | {100 * r['miss_rate']:.1f} | "
              f"{100 * r['false_tip_rate']:.1f} | {100 * r['nme']:.3f} | {r['pck']['1%']:.3f} |")  # fmt: skip
    (OUT / "grid.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
