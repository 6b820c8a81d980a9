"""Inspection worker processes: each runs the whole `Inspector` on the frames the parent hands it.

A worker is a spawned process (no inherited threads, locks or sockets) with one
duplex pipe to the parent. No queue is shared between workers, so a worker
killed with -9 in the middle of a message cannot wedge a lock the others need:
the parent sees EOF / the process sentinel and knows exactly which frame that
worker held (at most one: the parent keeps undispatched frames itself, so a
frame always goes to the first worker that is free).

Messages, parent -> worker:
    ("task", acq, SlotRef, frame_id, meta_json, deadline_mono)
    ("recipe", recipe_json)            frames after it are judged with the new recipe
    ("stop",)                          finish and exit 0
worker -> parent:
    ("ready", pid, detector_name, warm_ms, corners_backend, corners_fallback_reason_or_None)
    ("result", acq, verdict_json, stage_ms, t_start_mono, t_end_mono)
    ("skipped", acq)                   its deadline had passed before it started (the parent already timed it out)
    ("fatal", message)                 cannot work at all (ring missing, the corner backend asked for cannot
                                       run and no fallback is allowed); the worker exits 3

The pixels stay in the shared-memory ring: the worker wraps the slot in a
read-only ndarray (zero-copy) for the length of one inspection.
`time.monotonic()` is CLOCK_MONOTONIC, the same clock in every process, so the
deadline travels as a number.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from inspectd.backends import engine_config
from inspectd.config import Config, RecipeConfig
from inspectd.frames import Frame, Sidecar
from inspectd.inspection.corner_backends import CornerBackendUnavailable, choose_corner_backend
from inspectd.inspection.stages import Inspector
from inspectd.observability import configure_logging, get_logger
from inspectd.osthread import daemon_child
from inspectd.pipeline.shm_ring import RingReader
from inspectd.sim import SimOptions, render_frame
from inspectd.sim.dump import sim_frame_to_frame
from inspectd.tips.detector import LabelOracle, NoDetector
from inspectd.tips.hrnet import load_detector

__all__ = ["WorkerSpec", "worker_main", "default_detector_factory", "load_default_detector", "worker_engine_settings"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable for the spawn context."""

    wid: int
    cfg_json: str
    ring_name: str
    slots: int
    slot_bytes: int
    detector_factory: Callable[[], object] | None
    log_level: str = "info"
    log_json: bool = True
    cv_threads: int = 0  # OpenCV threads per worker (0: OpenCV's default)


def load_default_detector(engine: dict) -> object:
    """HrnetDetector from `[engine]` if its model file exists and loads, else an honest NoDetector."""
    from pathlib import Path

    ecfg = engine_config(engine)
    model = Path(ecfg.model)
    if not model.is_absolute() and not model.is_file():
        # the default engines/... path, run from outside the checkout: the shipped model
        shipped = Path(__file__).resolve().parents[2] / model
        if shipped.is_file():
            ecfg = ecfg.model_copy(update={"model": shipped})
    if not Path(ecfg.model).is_file():
        return NoDetector(f"no HRNet tip model at {ecfg.model} (engine {ecfg.type})")
    try:
        return load_detector(ecfg)
    except Exception as e:  # a broken model file: every frame says so, the daemon keeps running
        return NoDetector(f"HRNet model {ecfg.model} failed to load: {type(e).__name__}: {e}")


def worker_engine_settings(cfg: Config) -> dict:
    """The `[engine]` table each worker loads: as the station wrote it, but an unset `threads` becomes
    cpu_count // workers. The workers are the parallelism: on 2 cores, 2 workers x 1 engine thread gave
    the best 10 fps p99 (95 ms against 129-136 ms with 2 threads each, bench adaptive-threads, session 12)
    and the same throughput; 2 x 2 spinning threads ran 35 % slower flat out (bench/README.md)."""
    engine = cfg.engine.model_dump(mode="json")
    if "threads" in type(cfg.engine).model_fields and "threads" not in cfg.engine.model_fields_set:
        engine["threads"] = max(1, (os.cpu_count() or 1) // cfg.pipeline.workers)
    return engine


def default_detector_factory(engine: dict) -> Callable[[], object]:
    import functools

    return functools.partial(load_default_detector, engine)


def _warmup(inspector) -> None:
    """Run every stage once on a small simulated frame (oracle tips), so frame 1 costs what frame 100 does.

    The stages import scipy & co. lazily; on a loaded 2-core PC the first
    `locate` costs ~1.5 s of imports, which would make the first frames TIMEOUT.
    """
    import scipy.signal  # noqa: F401  (the ROI's layer counting; ~1 s to import)

    frame = sim_frame_to_frame(render_frame(0, 0, SimOptions(size=512, bit_depth=8, defect_rate=0.0)), 0, 0, "warmup")
    Inspector(inspector.cfg, LabelOracle(), inspector.corners).inspect(frame, 0)


def worker_main(spec: WorkerSpec, conn) -> None:
    """Entry point of a worker process."""
    daemon_child()  # stop signals are the daemon's; die with it

    configure_logging(spec.log_level, spec.log_json)
    log = get_logger(proc=f"worker-{spec.wid}", pid=os.getpid())
    t0 = time.perf_counter()
    try:
        ring = RingReader(spec.ring_name, spec.slots, spec.slot_bytes)
    except Exception as e:
        log.error("worker_fatal", msg=f"cannot attach frame ring {spec.ring_name}: {e}")
        try:
            conn.send(("fatal", f"cannot attach frame ring {spec.ring_name}: {e}"))
        finally:
            os._exit(3)

    if spec.cv_threads > 0:
        # Workers are the parallelism: N workers x OpenCV's own pool of ncpu threads oversubscribe
        # the cores (2 workers on 2 cores: ~12 % slower per frame with OpenCV's default).
        import cv2

        cv2.setNumThreads(spec.cv_threads)
    cfg = Config.model_validate_json(spec.cfg_json)
    try:
        detector = spec.detector_factory() if spec.detector_factory is not None else NoDetector()
    except Exception as e:
        log.error("detector_load_failed", msg=f"{type(e).__name__}: {e}")
        detector = NoDetector(f"tip detector failed to load: {type(e).__name__}: {e}")
    try:
        corners = choose_corner_backend(cfg.corners)
    except CornerBackendUnavailable as e:
        log.error("worker_fatal", msg=str(e))
        try:
            conn.send(("fatal", str(e)))
        finally:
            os._exit(3)
    if corners.fallback_reason:
        log.warning("corner_backend_fallback", asked="cuda", running="opencv", msg=corners.fallback_reason)
    inspector = Inspector(cfg, detector, corners.backend)
    try:
        _warmup(inspector)
    except Exception as e:  # warm-up is an optimisation; a failure here shows on real frames too
        log.warning("warmup_failed", msg=f"{type(e).__name__}: {e}")
    warm_ms = (time.perf_counter() - t0) * 1000.0
    log.info("worker_ready", detector=detector.name, warm_ms=round(warm_ms, 1))
    try:
        conn.send(("ready", os.getpid(), detector.name, warm_ms, corners.backend.name, corners.fallback_reason))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                log.warning("parent_gone", msg="pipe to the parent closed; exiting")
                break
            kind = msg[0]
            if kind == "task":
                _, acq, ref, frame_id, meta_json, deadline = msg
                if time.monotonic() > deadline:
                    conn.send(("skipped", acq))
                    continue
                t_start = time.monotonic()
                try:
                    image = ring.view(ref)
                    frame = Frame(frame_id, image, Sidecar.model_validate_json(meta_json))
                    ins = inspector.inspect(frame, 0)
                    verdict_json, stage_ms = ins.verdict.to_json(), ins.stage_ms
                except Exception as e:  # a bad slot or sidecar: this frame's ERROR, not the worker's death
                    verdict_json, stage_ms = None, {"error": f"{type(e).__name__}: {e}"}
                finally:
                    image = frame = ins = None  # drop views on the shared buffer
                conn.send(("result", acq, verdict_json, stage_ms, t_start, time.monotonic()))
            elif kind == "recipe":
                recipe = RecipeConfig.model_validate_json(msg[1])
                inspector.cfg = inspector.cfg.model_copy(update={"recipe": recipe})
                log.info("recipe_applied", recipe=recipe.model_dump())
            elif kind == "stop":
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        ring.close()
    log.debug("worker_exit")
