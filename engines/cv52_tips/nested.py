import json, numpy as np
from inspectd.evaluation.matching import match_tips, default_gate
D = json.load(open(__import__("sys").argv[1] if len(__import__("sys").argv) > 1 else "runs/thr/tips.json"))
def fam(s):
    if s.startswith("YXTP"): return "1600"
    for k, f in (("guanyu-fork","guanyu-fork"),("guanyu","guanyu-tip"),("fork_interference","fork"),("lose_point","lose_point"),("tray","tray"),("shadow","shadow"),("blur","blur"),("clear","clear")):
        if k in s: return f
def counts(stems, ta, tc):
    n = {"ga":0,"gc":0,"ma":0,"mc":0,"fa":0,"fc":0,"pa":0,"pc":0}; errs=[]
    for s in stems:
        d = D[s]; g = default_gate(d["ga"], d["gc"])
        for k, t in (("a", ta), ("c", tc)):
            p = np.array(d[k]).reshape(-1,3); p = p[p[:,2] >= t][:, :2]; gt = np.array(d["g"+k]).reshape(-1,2)
            pairs, up, ug = match_tips(p, gt, g)
            n["g"+k]+=len(gt); n["m"+k]+=len(ug); n["f"+k]+=len(up); n["p"+k]+=len(p)
            errs += list(np.hypot(*(p[pairs[:,0]]-gt[pairs[:,1]]).T)) if len(pairs) else []
    return n, np.array(errs)
def rates(n):
    g = n["ga"]+n["gc"]; p = n["pa"]+n["pc"]
    return (n["ma"]+n["mc"])/g, (n["fa"]+n["fc"])/max(p,1), n["ma"]/n["ga"], n["mc"]/n["gc"]
grid = np.round(np.arange(0.25, 0.86, 0.05), 2)
folds = sorted({d["fold"] for d in D.values()})
def best(stems):
    # per class independently: minimise missed + false of that class
    out = []
    for k in "ac":
        sc = []
        for t in grid:
            n, _ = counts(stems, t, t)
            sc.append((n["m"+k] + n["f"+k], t))
        out.append(min(sc)[1])
    return out
res = {}
pooled = {"card": [], "nested": [], "nested1": []}
tot = {k: {"ga":0,"gc":0,"ma":0,"mc":0,"fa":0,"fc":0,"pa":0,"pc":0} for k in pooled}
errs = {k: [] for k in pooled}
for f in folds:
    test = [s for s in D if D[s]["fold"] == f]; train = [s for s in D if D[s]["fold"] != f]
    ta, tc = best(train)
    # single shared threshold, nested
    t1 = min((sum(counts(train, t, t)[0][x] for x in ("ma","mc","fa","fc")), t) for t in grid)[1]
    ct = D[test[0]]["card_thr"]
    for name, (a, c) in (("card", (ct, ct)), ("nested", (ta, tc)), ("nested1", (t1, t1))):
        n, e = counts(test, a, c)
        for k in n: tot[name][k] += n[k]
        errs[name] += list(e)
    print(f, "card", round(ct,3), "per-class", ta, tc, "shared", t1, [f"{x*100:.1f}" for x in rates(counts(test, ct, ct)[0])], [f"{x*100:.1f}" for x in rates(counts(test, ta, tc)[0])])
for name in pooled:
    m, fl, ma, mc = rates(tot[name]); e = np.array(errs[name])
    print(f"{name:8s} missed {100*m:.1f} (a {100*ma:.1f} c {100*mc:.1f}) false {100*fl:.1f} median {np.median(e):.2f} p95 {np.percentile(e,95):.2f} p99 {np.percentile(e,99):.2f}")
print("in-all choice", best(list(D)))
