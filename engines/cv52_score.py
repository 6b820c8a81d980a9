"""Score the family-grouped folds of engines/real_cv52.sh on their held-out real frames (docs/accuracy.md).

Usage from the repo root: .venv/bin/python engines/cv52_score.py [OUT=runs/cv52]
(the series folds: FOLDS=s0,s1,s2,s3 .venv/bin/python engines/cv52_score.py runs/cv52s)
Each fold model is replayed on its held-out family only (gate off, correction off; then correction on; then the
gate on), the verdicts are pooled over the folds and scored against the checked labels of all 52 frames, per
capture family and overall. Baseline in the same run: baf52edf (runs/dr/shipped, never trained on a real frame),
replayed on the same frames. Prints markdown rows and writes OUT/cv52.json.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

R = Path(__file__).resolve().parents[1]
I = str(R / ".venv/bin/inspectd")
OUT = R / (sys.argv[1] if len(sys.argv) > 1 else "runs/cv52")
BASELINE = R / "runs/dr/shipped/model.onnx"  # baf52edf, never trained on a real frame
FOLDS = os.environ.get("FOLDS", "clear,blur,shadow,tray,fork,guanyu,1600").split(",")  # FOLDS=s0,s1,s2,s3: SERIES=1 folds
FAMILY = [("YXTP", "1600²"), ("guanyu-fork", "guanyu-fork"), ("guanyu", "guanyu-tip"), ("fork_interference", "fork"),
          ("lose_point", "lose_point"), ("tray", "tray"), ("shadow", "separator_shadow"), ("blur", "blur"),
          ("clear", "clear")]  # fmt: skip


def family(stem: str) -> str:
    return next(f for k, f in FAMILY if (stem.startswith(k) if k == "YXTP" else k in stem))


def replay(model: Path, dump: Path, tag: str, gate: bool, correction: bool) -> list[str]:
    o = OUT / "score" / tag
    o.mkdir(parents=True, exist_ok=True)
    cfg = f'[engine]\nmodel = "{model}"\n[gate]\nenabled = {str(gate).lower()}\n[correction]\nenabled = {str(correction).lower()}\n'
    (o / "cfg.toml").write_text(cfg)
    if not (o / "v.jsonl").exists():
        subprocess.run([I, "replay", str(dump), "-c", str(o / "cfg.toml"), "--out", str(o / "v.jsonl")],
                       check=True, capture_output=True, cwd=R)  # fmt: skip
    return (o / "v.jsonl").read_text().splitlines()


def calibrate(model: Path, fold: str) -> None:
    """The fold's own gate, as the shipped model's: calibrated on clean held-out simulator frames (seeds 920-922)."""
    from inspectd.evaluation.gate_eval import calibrate_gate, write_gate

    card = json.loads(model.with_suffix(".json").read_text())
    if card.get("gate", {}).get("frames"):
        return
    pairs = []
    for d in ("base", "broad", "b8"):
        dump = R / "runs/dr/gatecal" / d
        lines = replay(model, dump, f"{fold}-gatecal-{d}", gate=False, correction=False)
        pairs.append((dump, OUT / "score" / f"{fold}-gatecal-{d}" / "v.jsonl"))
        assert lines
    write_gate(model, calibrate_gate(pairs))


def score(lines: list[str], name: str) -> dict:
    """eval on exactly the frames of `lines` (a linked dump of those frames with their checked labels)."""
    from inspectd.labelling.workflow import assemble

    p = OUT / "score" / f"{name}.jsonl"
    p.write_text("\n".join(lines) + "\n")
    dump = OUT / "score" / "dumps" / name
    if dump.exists():  # made again each time: the frames of a name grow as folds finish
        shutil.rmtree(dump)
    assemble(R / "../shared/data/real/images", R / "engines/labels/real", dump,
             only={json.loads(ln)["frame_id"] for ln in lines})  # fmt: skip
    r = subprocess.run([I, "eval", str(dump), str(p), "--json"], check=True, capture_output=True, text=True, cwd=R)
    return json.loads(r.stdout)


def row(name: str, r: dict) -> str:
    e, pc = r["error_px"], r["per_class"]
    return (f"| {name} | {r['n_images']} | {e['median']:.2f} | {e['p95']:.2f} | {e['p99']:.2f} | {100 * r['miss_rate']:.1f} | "
            f"{100 * pc['anode']['miss_rate']:.1f} / {100 * pc['cathode']['miss_rate']:.1f} | {100 * r['false_tip_rate']:.1f} | "
            f"{100 * r['nme']:.3f} | {r['pck']['1%']:.3f} |")  # fmt: skip


def main() -> None:
    if not (OUT / "real52").exists():
        subprocess.run([I, "label", "assemble", "--images", "../shared/data/real/images", "--labels", "engines/labels/real",
                        "--out", str(OUT / "real52")], check=True, capture_output=True, cwd=R)  # fmt: skip
    runs = {"folds": [], "folds+correction": [], "folds, gate on": [], "baf52edf (no real frame)": []}
    for fold in FOLDS:
        m, test = OUT / fold / "model.onnx", OUT / fold / "test"
        if not m.exists():
            print(f"fold {fold}: no model yet", file=sys.stderr)
            continue
        runs["folds"] += replay(m, test, f"{fold}-fold", gate=False, correction=False)
        runs["folds+correction"] += replay(m, test, f"{fold}-corr", gate=False, correction=True)
        if not os.environ.get("NO_GATE"):  # NO_GATE=1: skip the fold gates (4 x 1400 simulated frames replayed)
            calibrate(m, fold)
            runs["folds, gate on"] += replay(m, test, f"{fold}-gate", gate=True, correction=False)
        if BASELINE.exists():  # the sim-only baseline, where it was exported
            runs["baf52edf (no real frame)"] += replay(BASELINE, test, f"{fold}-baf", gate=False, correction=False)
    report = {}
    print("| model | frames | median px | p95 px | p99 px | missed % | anode / cathode missed % | false % | NME % | PCK@1% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, lines in runs.items():
        if not lines:
            continue
        report[name] = {"all": score(lines, name.split()[0] + "-all")}
        print(row(name, report[name]["all"]))
    print("\nper family, folds (held out) vs baf52edf on the same frames:\n")
    print("| family | frames | median px | p95 px | p99 px | missed % | anode / cathode missed % | false % | NME % | PCK@1% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for fam in [f for _, f in FAMILY]:
        for name in ("folds", "baf52edf (no real frame)"):
            sel = [ln for ln in runs[name] if family(json.loads(ln)["frame_id"]) == fam]
            if sel:
                r = score(sel, f"{name.split()[0]}-{fam}")
                report.setdefault(name, {})[fam] = r
                print(row(f"{fam} ({'fold' if name == 'folds' else 'baf52edf'})", r))
    # the previous recipe (e81e4d95's: trained on the unchecked proposals), its folds held out the same 1000²
    # families: both recipes on the same frames, scored against the checked labels
    old = []
    for fam, fold in (("clear", "clear"), ("blur", "blur"), ("separator_shadow", "shadow"), ("tray", "tray")):
        m = R / f"runs/dr/cvw2_{fam}/model.onnx"
        if m.exists() and (OUT / fold / "test").exists():
            old += [ln for ln in replay(m, OUT / fold / "test", f"{fold}-prev", gate=False, correction=False)
                    if family(json.loads(ln)["frame_id"]) == fam]  # fmt: skip
    if old:
        same = {json.loads(ln)["frame_id"] for ln in old} & {json.loads(ln)["frame_id"] for ln in runs["folds"]}
        old = [ln for ln in old if json.loads(ln)["frame_id"] in same]
        new = [ln for ln in runs["folds"] if json.loads(ln)["frame_id"] in same]
        report["previous_recipe"] = {"previous": score(old, "prev-recipe"), "this": score(new, "this-recipe")}
        print("\nthe previous recipe's folds (proposed labels) vs this recipe's (checked labels), same held-out frames:\n")
        print(row("previous recipe", report["previous_recipe"]["previous"]))
        print(row("this recipe", report["previous_recipe"]["this"]))
    if not runs["folds, gate on"]:
        (OUT / "cv52.json").write_text(json.dumps(report, indent=1))
        return
    # the gate on held-out real frames: which frames had a tip error (missed or false tip, gate off), which it stopped
    stopped = {json.loads(ln)["frame_id"] for ln in runs["folds, gate on"]
               if json.loads(ln)["result"] == "ERROR"}  # fmt: skip
    err, clean = [], []
    for ln in runs["folds"]:
        fid = json.loads(ln)["frame_id"]
        r = score([ln], f"frame-{fid}")
        (err if r["n_missed"] + r["n_false"] > 0 else clean).append(fid)
    report["gate"] = {"error_frames": len(err), "caught": len(set(err) & stopped),
                      "clean_frames": len(clean), "clean_stopped": len(set(clean) & stopped)}  # fmt: skip
    g = report["gate"]
    print(f"\ngate on held-out real frames: catches {g['caught']}/{g['error_frames']} frames with a tip error, "
          f"stops {g['clean_stopped']}/{g['clean_frames']} without one")
    (OUT / "cv52.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
