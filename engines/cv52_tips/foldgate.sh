#!/bin/bash
# The confidence gate on the family-held-out folds (docs/accuracy.md, confidence gate): each fold model replays the
# gate calibration sets of engines/broad.sh (runs/dr/gatecal) and its held-out family (runs/cv52/FOLD/test) with the
# gate off, its gate is calibrated on the simulated frames only, and scored on the real frames it never saw.
#   engines/cv52_tips/foldgate.sh [OUT=runs/thr/foldgate] [EXTRA engine TOML line, e.g. 'fill_breaks = true']
# ROOT (default runs/cv52) and FOLDS (default the 7 family folds) pick other folds, e.g. the series-grouped ones:
#   ROOT=runs/cv52s_w6 FOLDS="s0 s1 s2 s3" engines/cv52_tips/foldgate.sh runs/thr/foldgate_s_w6
# WRITE_GATE=1 also stores each fold's gate in its model card (engines/cv52_score.py then scores the gate with it).
# Prints, per fold and pooled, the gate's figures and the held-out frames' tip figures (gate off).
set -euo pipefail
I=.venv/bin/inspectd; O=${1:-runs/thr/foldgate}; EXTRA=${2:-}; CAL=runs/dr/gatecal
SETS="base broad b8 base2 broad2 b8_2 base3 broad3 b8_3 base4 broad4 b8_4"
ROOT=${ROOT:-runs/cv52}; FOLDS=${FOLDS:-"clear blur shadow tray 1600 guanyu fork"}
for fold in $FOLDS; do
  mkdir -p $O/$fold
  printf '[engine]\nmodel = "%s/%s/model.onnx"\n%s\n[gate]\nenabled = false\n' $ROOT $fold "$EXTRA" > $O/$fold/cfg.toml
  for d in $SETS test; do
    src=$CAL/$d; [ $d = test ] && src=$ROOT/$fold/test
    [ -f $O/$fold/cal_$d.jsonl ] || [ $d = test -a -f $O/$fold/test.jsonl ] || {
      out=$O/$fold/cal_$d.jsonl; [ $d = test ] && out=$O/$fold/test.jsonl
      $I replay $src -c $O/$fold/cfg.toml --out $out.tmp >/dev/null 2>&1 && mv $out.tmp $out; }
  done
done
.venv/bin/python - "$O" "$ROOT" "$FOLDS" $SETS <<'PY'
import json, os, sys
from pathlib import Path
from inspectd.evaluation.evaluate import evaluate_results
from inspectd.evaluation.gate_eval import calibrate_gate, gate_report, write_gate
O, root, folds, sets = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
tot, tips = {}, {}
for fold in folds:
    g = calibrate_gate([(Path(f"runs/dr/gatecal/{d}"), Path(f"{O}/{fold}/cal_{d}.jsonl")) for d in sets])
    r = gate_report(Path(f"{root}/{fold}/test"), Path(f"{O}/{fold}/test.jsonl"), g)
    if os.environ.get("WRITE_GATE") == "1":
        write_gate(Path(f"{root}/{fold}/model.onnx"), g)
    print(fold, {k: r[k] for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped")},
          {k: g[k] for k in ("squeeze_min", "doubt_max", "alternation_max", "fire_rate_bound")})
    for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped"):
        tot[k] = tot.get(k, 0) + r[k]
    e, _ = evaluate_results(Path(f"{root}/{fold}/test"), Path(f"{O}/{fold}/test.jsonl"))
    for k in ("n_gt_tips", "n_pred_tips", "n_missed", "n_false"):
        tips[k] = tips.get(k, 0) + e[k]
    print("   tips: missed", e["n_missed"], "of", e["n_gt_tips"], "false", e["n_false"], "of", e["n_pred_tips"])
print("all folds", tot)
print(f"tips: missed {tips['n_missed']}/{tips['n_gt_tips']} ({100 * tips['n_missed'] / tips['n_gt_tips']:.2f} %), "
      f"false {tips['n_false']}/{tips['n_pred_tips']} ({100 * tips['n_false'] / tips['n_pred_tips']:.2f} %)")
PY
