#!/bin/bash
# The confidence gate on the family-held-out folds (docs/accuracy.md, confidence gate): each fold model replays the
# gate calibration sets of engines/broad.sh (runs/dr/gatecal) and its held-out family (runs/cv52/FOLD/test) with the
# gate off, its gate is calibrated on the simulated frames only, and scored on the real frames it never saw.
#   engines/cv52_tips/foldgate.sh [OUT=runs/thr/foldgate]
set -euo pipefail
I=.venv/bin/inspectd; O=${1:-runs/thr/foldgate}; CAL=runs/dr/gatecal
SETS="base broad b8 base2 broad2 b8_2 base3 broad3 b8_3 base4 broad4 b8_4"
for fold in clear blur shadow tray 1600 guanyu fork; do
  mkdir -p $O/$fold
  printf '[engine]\nmodel = "runs/cv52/%s/model.onnx"\n[gate]\nenabled = false\n' $fold > $O/$fold/cfg.toml
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
from inspectd.evaluation.gate_eval import calibrate_gate, gate_report
O, sets = sys.argv[1], sys.argv[2:]
tot = {}
for fold in ("clear", "blur", "shadow", "tray", "1600", "guanyu", "fork"):
    g = calibrate_gate([(Path(f"runs/dr/gatecal/{d}"), Path(f"{O}/{fold}/cal_{d}.jsonl")) for d in sets])
    r = gate_report(Path(f"runs/cv52/{fold}/test"), Path(f"{O}/{fold}/test.jsonl"), g)
    print(fold, {k: r[k] for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped")},
          {k: g[k] for k in ("squeeze_min", "doubt_max", "alternation_max", "fire_rate_bound")})
    for k in ("frames", "frames_with_tip_error", "caught", "clean_frames", "clean_stopped"):
        tot[k] = tot.get(k, 0) + r[k]
print("all folds", tot)
PY
