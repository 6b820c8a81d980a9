#!/bin/bash
# The confidence gate on the family-held-out folds (docs/accuracy.md, confidence gate): each fold model replays the
# gate calibration sets of engines/broad.sh (runs/dr/gatecal) and its held-out family (runs/cv52/FOLD/test) with the
# gate off, its gate is calibrated on the simulated frames only, and scored on the real frames it never saw.
#   engines/cv52_tips/foldgate.sh [OUT=runs/thr/foldgate] [EXTRA engine TOML line, e.g. 'fill_breaks = true']
# Prints, per fold and pooled, the gate's figures and the held-out frames' tip figures (gate off).
set -euo pipefail
I=.venv/bin/inspectd; O=${1:-runs/thr/foldgate}; EXTRA=${2:-}; CAL=runs/dr/gatecal
SETS="base broad b8 base2 broad2 b8_2 base3 broad3 b8_3 base4 broad4 b8_4"
for fold in clear blur shadow tray 1600 guanyu fork; do
  mkdir -p $O/$fold
  printf '[engine]\nmodel = "runs/cv52/%s/model.onnx"\n%s\n[gate]\nenabled = false\n' $fold "$EXTRA" > $O/$fold/cfg.toml
  for d in $SETS test; do
    src=$CAL/$d; [ $d = test ] && src=runs/cv52/$fold/test
    [ -f $O/$fold/cal_$d.jsonl ] || [ $d = test -a -f $O/$fold/test.jsonl ] || {
      out=$O/$fold/cal_$d.jsonl; [ $d = test ] && out=$O/$fold/test.jsonl
      $I replay $src -c $O/$fold/cfg.toml --out $out.tmp >/dev/null 2>&1 && mv $out.tmp $out; }
  done
done
.venv/bin/python - "$O" $SETS <<'PY'
import json, sys
from pathlib import Path
from inspectd.evaluation.evaluate import evaluate_results
from inspectd.evaluation.gate_eval import calibrate_gate, gate_report
O, sets = sys.argv[1], sys.argv[2:]
tot, tips = {}, {}
for fold in ("clear", "blur", "shadow", "tray", "1600", "guanyu", "fork"):
    g = calibrate_gate([(Path(f"runs/dr/gatecal/{d}"), Path(f"{O}/{fold}/cal_{d}.jsonl")) for d in sets])
    r = gate_report(Path(f"runs/cv52/{fold}/test"), Path(f"{O}/{fold}/test.jsonl"), g)
    print(fold, {k: r[k] for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped")},
          {k: g[k] for k in ("squeeze_min", "doubt_max", "alternation_max", "fire_rate_bound")})
    for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped"):
        tot[k] = tot.get(k, 0) + r[k]
    e, _ = evaluate_results(Path(f"runs/cv52/{fold}/test"), Path(f"{O}/{fold}/test.jsonl"))
    for k in ("n_gt_tips", "n_pred_tips", "n_missed", "n_false"):
        tips[k] = tips.get(k, 0) + e[k]
    print("   tips: missed", e["n_missed"], "of", e["n_gt_tips"], "false", e["n_false"], "of", e["n_pred_tips"])
print("all folds", tot)
print(f"tips: missed {tips['n_missed']}/{tips['n_gt_tips']} ({100 * tips['n_missed'] / tips['n_gt_tips']:.2f} %), "
      f"false {tips['n_false']}/{tips['n_pred_tips']} ({100 * tips['n_false'] / tips['n_pred_tips']:.2f} %)")
PY
