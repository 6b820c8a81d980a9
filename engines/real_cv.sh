#!/bin/bash
# Leave-one-family-out fine-tunes over the hand-checked real families (docs/accuracy.md, "Real frames in the
# loop"): for each family, train on simulator frames + the proposed real labels of the other families, score
# on the family's hand-checked frames; "all" trains on every proposed frame. ~7 min per fold on 2 cores.
# Usage, from the repo root: engines/real_cv.sh [OUT=runs/ft]
set -euo pipefail
I=.venv/bin/inspectd
OUT=${1:-runs/ft}
REAL=../shared/data/real
[ -d $OUT/sim/s1000_b12 ] || $I simulate $OUT/sim/s1000_b12 --count 300 --seed 100 --size 1000 --bit-depth 12 --workers 2
[ -d $OUT/sim/s1600_b16 ] || $I simulate $OUT/sim/s1600_b16 --count 60 --seed 103 --size 1600 --bit-depth 16 --workers 2
[ -d $OUT/val/s1000_b12 ] || $I simulate $OUT/val/s1000_b12 --count 60 --seed 900 --size 1000 --bit-depth 12 --workers 2
[ -d $OUT/test/s1000_b12 ] || $I simulate $OUT/test/s1000_b12 --count 100 --seed 7000 --size 1000 --bit-depth 12 --workers 2
for fam in clear blur separator_shadow tray all; do
  O=$OUT/cv/$fam
  [ -f $O/model.onnx ] && continue
  rm -rf $O/real $O/test
  .venv/bin/python - "$fam" "$O" "$REAL" <<'PY'
import glob, os, sys
from inspectd.labelling.workflow import assemble
fam, out, real = sys.argv[1:]
hand = {os.path.basename(f)[:-5] for f in glob.glob(f"{real}/labels/*.json")}
key = {"separator_shadow": "shadow"}.get(fam, fam)
stems = {os.path.basename(f)[:-5] for f in glob.glob("engines/labels/real/*.json")}
held = (lambda s: False) if fam == "all" else (lambda s: key in s and not s.startswith("YXTP"))
assemble(f"{real}/images", "engines/labels/real", out + "/real", only={s for s in stems - hand if not held(s)})
assemble(f"{real}/images", f"{real}/labels", out + "/test", only=hand if fam == "all" else {s for s in hand if key in s})
PY
  $I train --data $OUT/sim --data $O/real --val $OUT/val --out $O/run \
    --init engines/checkpoints/hrnet_w12s_gpu15k.pt --tile-w 352 --sigma 1.0 --steps 500 --lr 0.0003 --warmup 50 \
    --val-frames 60 --val-every 250 --ckpt-every 100 --dump-weights '{"/real": 6}' --seed 2 --workers 1 > $O/train.out 2>&1
  $I export $O/run/best.pt $O/model.onnx --calib $OUT/val --test $OUT/test --calib-frames 60 --test-frames 100 \
    --no-timing > $O/export.out 2>&1
  printf '[engine]\nmodel = "%s"\n' "$O/model.onnx" > $O/engine.toml
  $I replay $O/test -c $O/engine.toml --out $O/verdicts.jsonl > /dev/null
  $I eval $O/test $O/verdicts.jsonl
done
