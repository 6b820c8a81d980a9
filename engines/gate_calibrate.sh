#!/bin/bash
# Calibrate a model's confidence gate into its card (evaluation/gate_calibration.py), from the repo root:
#   engines/gate_calibrate.sh [MODEL=engines/hrnet_tips.onnx] [OUT=runs/dr/eval/gatecal]
# Replays the 12 calibration sets of engines/broad.sh (sim seeds 920-931, 1400 frames, never trained on) with the
# gate off, then sets the card's `gate` from the frames whose tips were all right; those with a tip error decide
# which criteria get the fire budget.
set -euo pipefail
M=${1:-engines/hrnet_tips.onnx}; O=${2:-runs/dr/eval/gatecal}; CAL=runs/dr/gatecal
SETS="base broad b8 base2 broad2 b8_2 base3 broad3 b8_3 base4 broad4 b8_4"
mkdir -p $O
printf '[engine]\nmodel = "%s"\n[gate]\nenabled = false\n' "$M" > $O/cfg.toml
for d in $SETS; do
  [ -d $CAL/$d ] || { echo "missing $CAL/$d: run engines/broad.sh (its simulate lines) first" >&2; exit 2; }
  [ -f $O/cal_$d.jsonl ] || { .venv/bin/inspectd replay $CAL/$d -c $O/cfg.toml --out $O/cal_$d.jsonl.tmp >/dev/null &&
    mv $O/cal_$d.jsonl.tmp $O/cal_$d.jsonl; }
done
.venv/bin/python - "$M" "$O" $SETS <<'PY'
import json, sys
from pathlib import Path
from inspectd.evaluation.gate_eval import calibrate_gate, write_gate
M, O, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
g = calibrate_gate([(Path(f"runs/dr/gatecal/{d}"), Path(f"{O}/cal_{d}.jsonl")) for d in sets])
g["calibrated_on"] = [
    "sim seeds 920, 923, 926, 929 (150 frames each, 1000\u00b2 12-bit), 921, 924, 927, 930 (150 each, every family but "
    "invert at rate 0.2), 922, 925, 928, 931 (50 each, 8-bit): engines/broad.sh; never trained on"
]
print(json.dumps(g, indent=1)); print("written to", write_gate(Path(M), g))
PY
