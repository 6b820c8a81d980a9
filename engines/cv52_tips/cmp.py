import json, sys, numpy as np
from inspectd.evaluation.matching import match_tips, default_gate
def score(D, stems):
    n = dict(ga=0, gc=0, ma=0, mc=0, fa=0, fc=0, pa=0, pc=0); errs = []
    for s in stems:
        d = D[s]; g = default_gate(d["ga"], d["gc"]); t = d["card_thr"]
        for k in "ac":
            p = np.array(d[k]).reshape(-1, 3); p = p[p[:, 2] >= t][:, :2]; gt = np.array(d["g" + k]).reshape(-1, 2)
            pr, up, ug = match_tips(p, gt, g)
            n["g"+k] += len(gt); n["m"+k] += len(ug); n["f"+k] += len(up); n["p"+k] += len(p)
            if len(pr): errs += list(np.hypot(*(p[pr[:, 0]] - gt[pr[:, 1]]).T))
    e = np.array(errs)
    return f"missed {100*(n['ma']+n['mc'])/(n['ga']+n['gc']):.1f} (a {100*n['ma']/n['ga']:.1f} c {100*n['mc']/n['gc']:.1f}) false {100*(n['fa']+n['fc'])/max(1,n['pa']+n['pc']):.1f} median {np.median(e):.2f} p95 {np.percentile(e,95):.2f} p99 {np.percentile(e,99):.2f}"
A = json.load(open(sys.argv[1])); B = json.load(open(sys.argv[2]))
stems = sorted(set(A) & set(B))
print(len(stems), "frames"); print("A", score(A, stems)); print("B", score(B, stems))
