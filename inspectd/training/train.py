"""Train the HRNet tip model: ``train(data_dir, out_dir, **opts)``, behind ``inspectd train``.

Resumable by design (2 CPU cores: training runs in chunks across sessions):

* every batch is a pure function of (seed, step): ``rng = default_rng([seed, step])``
  draws its frames and augmentations, so a resumed run sees exactly the
  batches the uninterrupted run would have seen;
* ``<out>/last.pt`` (written every ``ckpt_every`` steps, at the end and on
  Ctrl-C/SIGTERM; atomic: temp file + rename) holds the model, AdamW state,
  step, torch RNG state, options and validation history; ``resume=True``
  continues from it exactly (the next loss equals the uninterrupted run's,
  tests/test_model.py; on CUDA exact up to cuDNN's choice of kernels, which
  ``--device cuda`` lets it benchmark); ``<out>/best.pt`` keeps the best validation score;
* the learning rate is a function of the step (linear warm-up, cosine decay).

Validation (every ``val_every`` steps and at the end) runs the inference path
(`infer.detect_tips`: pitch estimate, tiles, decode) on held-out frames with
an ROI box made from their labels the way `find_roi` pads it, and reports
median / p95 / p99 tip error (full-frame px), miss and false-tip rates
(`inspectd.evaluation.metrics.match_tips`, gate 3/4 of the same-class pitch) at the
threshold that minimises miss + false rate on that set.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from inspectd.config import RoiConfig
from inspectd.evaluation.metrics import default_gate, match_tips
from inspectd.forking import fork_context, result_or_raise, shutdown_pool
from inspectd.frames import iter_dump
from inspectd.frames.dumps import FrameReadError
from inspectd.imaging.canonical import box_from_canonical, canonical_shape, points_to_canonical
from inspectd.imaging.window import to_8bit
from inspectd.imaging.region import Roi
from inspectd.nets.checkpoint import torch_infer
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec, make_batch, orientation_from_labels
from inspectd.tips.infer import merge_tiles
from inspectd.training.data import find_dumps, frame_weights, load_frames, make_batch_train
from inspectd.training.options import TrainOptions

__all__ = ["TrainOptions", "train", "validate", "val_frames"]

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.10, 0.71, 0.05))


_DEFAULTS = {f.name: f.default for f in fields(TrainOptions)}


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("training needs torch: pip install 'inspectd[train]'") from e
    return torch


def lr_at(step: int, o: TrainOptions) -> float:
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    t = min(1.0, (step - o.warmup) / max(1, o.steps - o.warmup))
    return o.lr * (o.lr_final + (1 - o.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


def loss_fn(pred, target, o: TrainOptions):
    d = (pred - target) ** 2
    if o.loss == "wmse":
        d = d * (1.0 + o.fg_weight * target)
    elif o.loss != "mse":
        raise ValueError(f"loss must be mse or wmse, got {o.loss!r}")
    return d.mean()


def _atomic_save(obj, path: Path) -> None:
    torch = _torch()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- validation


def roi_from_labels(anode: np.ndarray, cathode: np.ndarray, shape, rng: np.random.Generator | None = None):
    """A ROI box around labelled tips padded the way `find_roi` pads its box (docs/roi.md)."""

    o = orientation_from_labels(anode, cathode)
    pts = points_to_canonical(np.vstack([anode, cathode]), o, shape)
    h_c, w_c = canonical_shape(shape, o)
    size = max(shape)
    y0, y1 = pts[:, 1].min(), pts[:, 1].max()
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    h = y1 - y0

    rc = RoiConfig()
    lam, mf, py, mp = (getattr(rc, k, d) for k, d in (("lam", 0.26), ("margin_frac", 0.03), ("pad_y", 0.09), ("margin_px", 8)))
    half_w = max(lam * h, 0.5 * (x1 - x0) + 0.1 * h) + mf * size + mp
    half_h = (0.5 + py) * h + mp
    xm, ym = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    box = (
        max(0, int(math.floor(xm - half_w))),
        max(0, int(math.floor(ym - half_h))),
        min(w_c, int(math.ceil(xm + half_w)) + 1),
        min(h_c, int(math.ceil(ym + half_h)) + 1),
    )
    fx0, fy0, fx1, fy1 = box_from_canonical(box, o, shape)
    return Roi(fx0, fy0, fx1, fy1, o)


@dataclass
class ValFrame:
    frame_id: str
    img8: np.ndarray
    anode: np.ndarray
    cathode: np.ndarray
    roi: Roi


def val_frames(dumps: list[Path], n: int, roi: str = "labels") -> list[ValFrame]:
    """Up to `n` labelled frames spread over `dumps` (the first frames of each, proportionally)."""

    per = max(1, int(math.ceil(n / max(1, len(dumps)))))
    out = []
    for d in dumps:
        k = 0
        for fr in iter_dump(d):
            if isinstance(fr, FrameReadError) or fr.meta.labels is None:
                continue
            a, c = fr.meta.labels.arrays()
            if len(a) == 0 or len(c) == 0:
                continue
            img8 = to_8bit(fr.image, fr.bit_depth)
            if roi == "find_roi":
                from inspectd.config import CornerConfig, RoiConfig
                from inspectd.inspection.corners import detect_corners
                from inspectd.inspection.roi import find_roi

                r = find_roi(img8, detect_corners(img8, CornerConfig()), RoiConfig())
            else:
                r = roi_from_labels(a, c, img8.shape)
            out.append(ValFrame(fr.frame_id, img8, a, c, r))
            k += 1
            if k >= per:
                break
    return out[:n] if len(out) > n else out


def validate(
    infer, frames: list[ValFrame], spec: InputSpec, codec: HeatmapCodec, thresholds=THRESHOLDS, methods=("argmax", "quarter", "dark")
) -> dict:
    """Run the inference path on `frames`; errors (full-frame px), miss/false rates per threshold and decoder."""

    lo_thr = min(thresholds)
    res = {m: {t: {"err": [], "miss": 0, "false": 0, "n_gt": 0, "n_pred": 0} for t in thresholds} for m in methods}
    t_ms = []
    n_frames = 0
    for vf in frames:
        if vf.roi is None:
            for m in methods:
                for t in thresholds:
                    r = res[m][t]
                    r["miss"] += len(vf.anode) + len(vf.cathode)
                    r["n_gt"] += len(vf.anode) + len(vf.cathode)
            continue
        n_frames += 1
        t0 = time.perf_counter()
        batch, plan = make_batch(vf.img8, vf.roi, spec)
        hm = np.asarray(infer(batch), np.float32)
        t_ms.append((time.perf_counter() - t0) * 1000)
        gate = default_gate(vf.anode, vf.cathode) or 7.5
        for m in methods:
            dets = merge_tiles(hm, plan, codec, lo_thr, m)
            for t in thresholds:
                r = res[m][t]
                for pred, gt in zip(dets, (vf.anode, vf.cathode)):
                    p = pred[pred[:, 2] >= t, :2]
                    pairs, up, ug = match_tips(p, gt, gate)
                    if len(pairs):
                        r["err"] += np.hypot(*(p[pairs[:, 0]] - gt[pairs[:, 1]]).T).tolist()
                    r["miss"] += len(ug)
                    r["false"] += len(up)
                    r["n_gt"] += len(gt)
                    r["n_pred"] += len(p)
    table = {}
    for m in methods:
        table[m] = {}
        for t in thresholds:
            r = res[m][t]
            e = np.asarray(r["err"])
            table[m][t] = {
                "median_px": float(np.median(e)) if len(e) else None,
                "p95_px": float(np.percentile(e, 95)) if len(e) else None,
                "p99_px": float(np.percentile(e, 99)) if len(e) else None,
                "miss_rate": r["miss"] / max(1, r["n_gt"]),
                "false_rate": r["false"] / max(1, r["n_pred"]),
                "n_gt": r["n_gt"],
            }
    ref = "dark" if "dark" in methods else methods[0]
    best_t = min(thresholds, key=lambda t: (table[ref][t]["miss_rate"] + table[ref][t]["false_rate"], -t))
    best = {m: {"threshold": best_t, **table[m][best_t]} for m in methods}
    return {
        "frames": len(frames),
        "frames_with_roi": n_frames,
        "threshold": best_t,
        "at_threshold": best,
        "by_threshold": {str(t): table[ref][t] for t in thresholds},
        "model_ms_median": float(np.median(t_ms)) if t_ms else None,
        "score": best[ref]["miss_rate"] + best[ref]["false_rate"] + 0.02 * (best[ref]["median_px"] or 10.0),
    }


# ---------------------------------------------------------------------------- training loop


class _Log:
    def __init__(self, path: Path):
        self.f = open(path, "a", buffering=1)

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        self.f.write(line + "\n")
        print(line, file=sys.stderr, flush=True)


def _default_val(data_dir, data: list[Path]) -> list[Path]:
    """`val/` beside the training directory (runs/data/train -> runs/data/val), if any."""
    train_set = {d.resolve() for d in data}
    for root in [Path(data_dir)] + list(data):
        for anc in (root.parent, root.parent.parent):
            cand = anc / "val"
            if cand.is_dir():
                dumps = [d for d in find_dumps(cand) if d.resolve() not in train_set]
                if dumps:
                    return dumps
    return []


def _device(torch, name: str):
    """The torch device for `name` (cpu | cuda | auto); cuda without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU")
        torch.backends.cudnn.benchmark = True  # fixed tile size: let cuDNN pick its kernels once
    elif name != "cpu":
        raise ValueError(f"--device must be cpu, cuda or auto, not {name!r}")
    return torch.device(name)


_WORKER: dict = {}  # a batch worker's inputs, set once per worker process by _init_worker


def _init_worker(args: tuple) -> None:
    # A forked worker inherits the trainer's SIGTERM/SIGINT handlers (log, checkpoint, go on): it
    # would outlive Pool.terminate() and hang the run's end (seen on the GPU machine). Workers die on
    # SIGTERM and leave Ctrl-C to the trainer.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["args"] = args


def _make_batch(args: tuple, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Step `step`'s batch: a pure function of (seed, step), in the loop or in a worker."""
    frames, spec, codec, aug, seed, batch, weights = args
    return make_batch_train(frames, spec, codec, aug, np.random.default_rng([seed, step]), batch, weights)


def _worker_batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    return _make_batch(_WORKER["args"], step)


class BatchStream:
    """The batch of each step, made in the loop (workers = 0) or by worker processes ahead of it.

    A batch is a pure function of (seed, step) either way, so a run's batches
    do not depend on the worker count. Workers are forked with the cached
    frames (copy-on-write), all at the first submit (inside `fork_context`),
    and at most 2 x workers batches are in flight, so memory stays bounded
    however far the GPU is ahead. A worker that dies (out of memory, killed)
    breaks the executor: `get` raises instead of waiting for a batch that
    will never come, and the trainer stops with a checkpoint.
    """

    def __init__(self, frames, spec, codec, aug, seed: int, batch: int, weights, workers: int):
        self._args = (frames, spec, codec, aug, seed, batch, weights)
        self._workers = int(workers)
        self._pool = None
        self._pending: dict[int, object] = {}
        self._next = 0

    def _fill(self, steps: int) -> None:
        while self._next < steps and len(self._pending) < 2 * self._workers:
            self._pending[self._next] = self._pool.submit(_worker_batch, self._next)
            self._next += 1

    def get(self, step: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        if self._workers <= 0:
            return _make_batch(self._args, step)
        try:
            if self._pool is None:
                self._next = step
                with fork_context() as ctx:  # with fork, the executor starts every worker at the first submit
                    self._pool = ProcessPoolExecutor(
                        self._workers, mp_context=ctx, initializer=_init_worker, initargs=(self._args,)
                    )
                    self._fill(steps)
            self._fill(steps)
            return result_or_raise(self._pool, self._pending.pop(step))
        except BrokenProcessPool as e:
            raise RuntimeError(
                f"a batch worker process died while making step {step}'s batch (out of memory? killed?)"
            ) from e

    def close(self) -> None:
        if self._pool is not None:
            shutdown_pool(self._pool)
            self._pool = None
            self._pending.clear()


def train(data_dir, out_dir, **opts) -> dict:
    """Train (or resume) a tip model on the labelled dump(s) under `data_dir`; checkpoints in `out_dir`.

    `opts` are `TrainOptions` fields. Returns a summary dict (steps, last loss,
    last validation). Needs torch.
    """
    torch = _torch()
    from inspectd.nets.hrnet import build_model, count_params

    unknown = set(opts) - {f.name for f in fields(TrainOptions)}
    if unknown:
        raise TypeError(f"unknown training options: {sorted(unknown)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    o = TrainOptions(**opts)
    ck = None
    if o.resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        ck = torch.load(last, map_location="cpu", weights_only=False)
        saved = dict(ck["options"])
        # The run's definition comes from the checkpoint; only bookkeeping may change on resume.
        for k in ("steps", "val_every", "ckpt_every", "log_every", "progress", "threads", "val_frames"):
            if k in opts:
                saved[k] = opts[k]
        # settings of one chunk, not of the run: a GPU run resumes on a CPU machine without --device
        for k in ("max_minutes", "stop_at", "device", "workers"):
            saved[k] = opts.get(k, _DEFAULTS[k])
        saved["resume"] = True
        o = TrainOptions(**saved)
    log = _Log(out / "train.log")
    device = _device(torch, o.device)  # before minutes of loading frames
    torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    data = find_dumps(data_dir)
    val = find_dumps(o.val) if o.val else _default_val(data_dir, data)
    if not o.val and val:
        o.val = [str(v) for v in val]
    spec, codec, aug = o.spec(), o.codec(), o.aug_config()
    log(f"options {json.dumps(asdict(o))}")
    frames = load_frames(data, spec, aug, o.limit_per_dump, log, workers=max(1, o.workers))
    if not frames:
        raise ValueError(f"no labelled frames under {data_dir}")
    vfr = val_frames(val, o.val_frames) if val and o.val_frames > 0 else []
    log(f"{len(frames)} training frames from {len(data)} dump(s); {len(vfr)} validation frames")
    weights = frame_weights(frames, o.oversample)
    if weights is not None:
        share = {k: float(sum(w for w, f in zip(weights, frames) if k in f.defects)) for k in o.oversample}
        log(f"oversampling {o.oversample}: share of draws {json.dumps({k: round(v, 3) for k, v in share.items()})}")

    model = build_model(o.variant, **o.model_overrides())
    step = 0
    history: list[dict] = []
    best_score = math.inf
    if ck is not None:
        model.load_state_dict(ck["model"])
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        history = list(ck.get("history", []))
        best_score = float(ck.get("best_score", math.inf))
        log(f"resumed from {last} at step {step}")
    elif o.init:
        src = torch.load(o.init, map_location="cpu", weights_only=False)
        if src.get("model_config") != model.cfg.to_dict():
            raise ValueError(f"--init {o.init}: its model {src.get('model_config')} differs from {model.cfg.to_dict()}")
        model.load_state_dict(src["model"])
        log(f"initialised from {o.init} (its step {src.get('step')})")
    log(f"model {model.cfg.name} {count_params(model)} params, stride {model.stride}, on {device}")

    def state(kind: str) -> dict:
        return {
            "kind": kind,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "options": asdict(o),
            "model_config": model.cfg.to_dict(),
            "input_spec": spec.to_dict(),
            "codec": codec.to_dict(),
            "aug": aug.to_dict(),
            "data": [str(d) for d in data],
            "n_train_frames": len(frames),
            "history": history,
            "best_score": best_score,
        }

    stop = {"flag": False}

    def _sig(signum, _frame):
        stop["flag"] = True
        log(f"signal {signum}: checkpointing and stopping after this step")

    old = {s: signal.signal(s, _sig) for s in (signal.SIGTERM, signal.SIGINT)} if _main_thread() else {}

    def run_val() -> dict:
        model.eval()
        t0 = time.perf_counter()
        v = validate(torch_infer(model), vfr, spec, codec)
        model.train()
        a = v["at_threshold"]
        log(
            f"val step {step}: thr {v['threshold']:.2f} | dark median {_f(a['dark']['median_px'])} "
            f"p95 {_f(a['dark']['p95_px'])} p99 {_f(a['dark']['p99_px'])} px | "
            f"miss {a['dark']['miss_rate'] * 100:.2f} % false {a['dark']['false_rate'] * 100:.2f} % | "
            f"argmax {_f(a['argmax']['median_px'])} quarter {_f(a['quarter']['median_px'])} px | "
            f"{time.perf_counter() - t0:.0f} s"
        )
        return v

    t_start = time.perf_counter()
    model.train()
    losses: list[float] = []
    prog = None
    use_bar = o.progress if o.progress is not None else sys.stderr.isatty()
    if use_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        prog = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.5f}"),
            TextColumn("{task.fields[sps]:.2f} s/step"), TimeRemainingColumn(),
        )
        prog.start()
        task = prog.add_task("train", total=o.steps, completed=step, loss=float("nan"), sps=0.0)
    last_loss = float("nan")
    t_win = time.perf_counter()
    batches = BatchStream(frames, spec, codec, aug, o.seed, o.batch, weights, o.workers)
    try:
        while step < o.steps and not stop["flag"]:
            x, y = batches.get(step, o.steps)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, o)
            pred = model(torch.from_numpy(x).to(device, non_blocking=True))
            loss = loss_fn(pred, torch.from_numpy(y).to(device, non_blocking=True), o)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            opt.step()
            step += 1
            last_loss = float(loss.detach())
            losses.append(last_loss)
            if prog is not None:
                prog.update(task, completed=step, loss=float(np.mean(losses[-20:])),
                            sps=(time.perf_counter() - t_start) / max(1, len(losses)))
            if step % o.log_every == 0:
                dt = (time.perf_counter() - t_win) / o.log_every
                t_win = time.perf_counter()
                log(f"step {step}/{o.steps} loss {np.mean(losses[-o.log_every:]):.6f} lr {lr_at(step - 1, o):.2e} {dt:.2f} s/step")
                history.append({"step": step, "loss": float(np.mean(losses[-o.log_every:])), "s_per_step": dt})
            if vfr and step % o.val_every == 0:
                v = run_val()
                history.append({"step": step, "val": _slim(v)})
                if v["score"] < best_score:
                    best_score = v["score"]
                    _atomic_save(state("best") | {"val": v}, out / "best.pt")
            if step % o.ckpt_every == 0:
                _atomic_save(state("last"), last)
            if o.stop_at is not None and step >= o.stop_at:
                log(f"stop_at {o.stop_at} reached")
                break
            if o.max_minutes is not None and (time.perf_counter() - t_start) > 60 * o.max_minutes:
                log(f"max_minutes {o.max_minutes} reached at step {step}")
                break
    finally:
        batches.close()
        if prog is not None:
            prog.stop()
        _atomic_save(state("last"), last)
        log(f"checkpoint {last} at step {step}")
        for s, h in old.items():
            signal.signal(s, h)
    v = None
    if vfr and step >= o.steps and not any(h.get("step") == step and "val" in h for h in history):
        v = run_val()
        history.append({"step": step, "val": _slim(v)})
        if v["score"] < best_score:
            best_score = v["score"]
            _atomic_save(state("best") | {"val": v}, out / "best.pt")
        _atomic_save(state("last"), last)
    return {"step": step, "loss": last_loss, "val": v, "out": str(out)}


def _slim(v: dict) -> dict:
    return {k: v[k] for k in ("threshold", "at_threshold", "model_ms_median", "score", "frames")}


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
