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

Validation (every ``val_every`` steps and at the end) is `validation.validate`;
batches come from `batches.BatchStream` (in the loop, or from worker processes).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from inspectd.nets.checkpoint import torch_infer
from inspectd.training.data import find_dumps, frame_weights, load_frames
from inspectd.training.batches import BatchStream
from inspectd.training.options import TrainOptions
from inspectd.training.validation import val_frames, validate

__all__ = ["TrainOptions", "train"]


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


# ---------------------------------------------------------------------------- training loop


class _Log:
    def __init__(self, path: Path):
        self.f = open(path, "a", buffering=1)

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        self.f.write(line + "\n")
        print(line, file=sys.stderr, flush=True)


def _default_val(data_dir, data: list[Path]) -> list[Path]:
    """`val/` beside the training directory (runs/data/train -> runs/data/val), if any (`data_dir` may be a list)."""
    train_set = {d.resolve() for d in data}
    given = [Path(p) for p in data_dir] if isinstance(data_dir, (list, tuple)) else [Path(data_dir)]
    for root in given + list(data):
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


def train(data_dir, out_dir, **opts) -> dict:
    """Train (or resume) a tip model on the labelled dump(s) under `data_dir`; checkpoints in `out_dir`.

    `opts` are `TrainOptions` fields. Returns a summary dict (steps, last loss,
    last validation). Needs torch.
    """
    torch = _torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    o, ck = _run_options(torch, opts, last)
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
    weights = frame_weights(frames, o.oversample, o.dump_weights)
    if weights is not None:
        share = {k: float(sum(w for w, f in zip(weights, frames) if k in f.defects)) for k in o.oversample}
        share |= {k: float(sum(w for w, f in zip(weights, frames) if k in f.source)) for k in o.dump_weights}
        log(f"weights {o.oversample} {o.dump_weights}: share of draws {json.dumps({k: round(v, 3) for k, v in share.items()})}")

    model, opt, step, history, best_score = _model_and_optimiser(torch, o, ck, last, device, log)

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
    prog, task = _progress_bar(o, step)
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


def _run_options(torch, opts: dict, last: Path) -> tuple[TrainOptions, dict | None]:
    """This call's options, and the checkpoint to resume from (None for a fresh run).

    On resume the run's definition comes from the checkpoint; only bookkeeping
    may change, and the settings of one chunk (time limits, device, workers)
    come from this call, so a GPU run resumes on a CPU machine without --device.
    """
    unknown = set(opts) - {f.name for f in fields(TrainOptions)}
    if unknown:
        raise TypeError(f"unknown training options: {sorted(unknown)}")
    o = TrainOptions(**opts)
    if not o.resume:
        return o, None
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    ck = torch.load(last, map_location="cpu", weights_only=False)
    saved = dict(ck["options"])
    for k in ("steps", "val_every", "ckpt_every", "log_every", "progress", "threads", "val_frames"):
        if k in opts:
            saved[k] = opts[k]
    for k in ("max_minutes", "stop_at", "device", "workers"):
        saved[k] = opts.get(k, _DEFAULTS[k])
    saved["resume"] = True
    return TrainOptions(**saved), ck


def _model_and_optimiser(torch, o: TrainOptions, ck: dict | None, last: Path, device, log):
    """The model and AdamW, from the checkpoint (resume), from `--init` weights, or fresh.

    Returns (model, optimiser, step, history, best validation score).
    """
    from inspectd.nets.hrnet import build_model, count_params

    model = build_model(o.variant, **o.model_overrides())
    step, history, best_score = 0, [], math.inf
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
    return model, opt, step, history, best_score


def _progress_bar(o: TrainOptions, step: int):
    """A rich progress bar on a terminal (or when asked), else (None, None)."""
    if not (o.progress if o.progress is not None else sys.stderr.isatty()):
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.5f}"),
        TextColumn("{task.fields[sps]:.2f} s/step"), TimeRemainingColumn(),
    )  # fmt: skip
    prog.start()
    return prog, prog.add_task("train", total=o.steps, completed=step, loss=float("nan"), sps=0.0)


def _slim(v: dict) -> dict:
    return {k: v[k] for k in ("threshold", "at_threshold", "model_ms_median", "score", "frames")}


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
