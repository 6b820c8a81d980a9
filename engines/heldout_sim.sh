#!/bin/bash
# A model on the held-out simulator sets (docs/accuracy.md): the seed-7000 test set and the 12 family sets of
# engines/broad.sh (seeds 8000-8011, invert excluded; never trained or calibrated on), replayed with the gate off;
# per set and pooled: median px, missed %, false %, overkill, escapes; then what the card's gate would stop
# (evaluation/gate_eval.gate_report on the same verdicts): the columns of docs/accuracy.md's gate table.
#   engines/heldout_sim.sh [MODEL=engines/hrnet_tips.onnx] [OUT=runs/he/<model hash>]
# Needs runs/ft/test (engines/real_cv.sh) and runs/dr/fam (engines/broad.sh). The card's gate is the one used.
set -euo pipefail
M=${1:-engines/hrnet_tips.onnx}
O=${2:-runs/he/$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['hash'][:8])" "${M%.onnx}.json")}
SETS="runs/ft/test/s1000_b12 $(for f in tail blunt rounded curl pitch dense teeth shadow defocus dose gain tilt; do echo runs/dr/fam/$f; done)"
mkdir -p $O
printf '[engine]\nmodel = "%s"\n[gate]\nenabled = false\n' "$M" > $O/cfg.toml
for d in $SETS; do
  [ -d $d ] || { echo "missing $d: run the simulate lines of engines/real_cv.sh and engines/broad.sh" >&2; exit 2; }
  v=$O/$(basename $d).jsonl
  [ -f $v ] || { .venv/bin/inspectd replay $d -c $O/cfg.toml --out $v.tmp >/dev/null && mv $v.tmp $v; }
done
.venv/bin/python - "$O" "$M" $SETS <<'PY'
import json, subprocess, sys
from pathlib import Path
from inspectd.evaluation.gate_eval import gate_report
O, M, sets = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
gate = json.loads(M.with_suffix(".json").read_text())["gate"]
tot = {"tips": 0, "missed": 0, "pred": 0, "false": 0, "ok": 0, "ng": 0, "overkill": 0, "escape": 0}
keys = ("clean_stopped", "clean_frames", "caught", "frames_with_tip_error", "overkill_gated", "good_frames", "escape_gated", "ng_frames")
g = dict.fromkeys(keys, 0)
print("| set | frames | median px | missed % | false % | overkill | escapes |")
print("|---|---|---|---|---|---|---|")
for d in sets:
    v = O / f"{Path(d).name}.jsonl"
    r = json.loads(subprocess.run([".venv/bin/inspectd", "eval", d, str(v), "--json"], check=True, capture_output=True, text=True).stdout)
    for k, rk in (("tips", "n_gt_tips"), ("missed", "n_missed"), ("pred", "n_pred_tips"), ("false", "n_false"),
                  ("ok", "n_expected_ok"), ("ng", "n_expected_ng"), ("overkill", "overkill"), ("escape", "escape")):
        tot[k] += int(r[rk] or 0)
    gr = gate_report(Path(d), v, gate)
    for k in keys:
        g[k] += gr[k]
    print(f"| {Path(d).name} | {r['n_images']} | {r['error_px']['median']:.2f} | {100 * r['miss_rate']:.2f} | "
          f"{100 * r['false_tip_rate']:.2f} | {r['overkill']}/{r['n_expected_ok']} | {r['escape']}/{r['n_expected_ng']} |")
print(f"| all | | | {100 * tot['missed'] / tot['tips']:.2f} | {100 * tot['false'] / max(1, tot['pred']):.2f} | "
      f"{tot['overkill']}/{tot['ok']} | {tot['escape']}/{tot['ng']} |  (gate off; {tot['tips']} tips)")
print(f"gate on: clean stopped {g['clean_stopped']}/{g['clean_frames']}, tip-error frames caught {g['caught']}/"
      f"{g['frames_with_tip_error']}, good cells not passed {g['overkill_gated']}/{g['good_frames']}, "
      f"escapes {g['escape_gated']}/{g['ng_frames']}")
PY
