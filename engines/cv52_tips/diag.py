import json, sys, numpy as np
from inspectd.evaluation.matching import match_tips, default_gate
D = json.load(open(sys.argv[2] if len(sys.argv) > 2 else "runs/thr/tips.json"))
want = sys.argv[1]
for s, d in D.items():
    if want not in s: continue
    g = default_gate(d["ga"], d["gc"]); t = d["card_thr"]
    for k in "ac":
        p = np.array(d[k]).reshape(-1,3); p = p[p[:,2] >= t]; gt = np.array(d["g"+k]).reshape(-1,2)
        pairs, up, ug = match_tips(p[:, :2], gt, g)
        near = [float(np.min(np.hypot(*(p[:, :2]-gt[i]).T))) if len(p) else -1 for i in ug]
        # offset of missed: dx, dy to nearest pred
        offs = []
        for i in ug:
            j = np.argmin(np.hypot(*(p[:, :2]-gt[i]).T)); offs.append(tuple(np.round(p[j,:2]-gt[i],1)))
        print(s[:40], k, "gate %.1f" % g, "n", len(gt), "miss", len(ug), "false", len(up), "offs", offs[:8])
