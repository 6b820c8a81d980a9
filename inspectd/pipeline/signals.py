"""The daemon's signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the recipe.

A mixin of `Daemon`. The handler only queues the signal and wakes the loop
(through the self-pipe); the loop acts on it between two passes, so a signal
never lands in the middle of publishing. A reload applies ``[recipe]`` live
(the workers get it at once, restarted workers too) and names the other
sections that changed, which need a restart; an invalid file keeps the
current recipe.
"""

from __future__ import annotations

import contextlib
import os
import signal

from inspectd.config import ConfigError, load_config
from inspectd.pipeline.entry import Phase

__all__ = ["Signals"]


class Signals:
    def _install_signals(self) -> None:
        def handler(signum, _frame):
            self._signals.append(signum)
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"s")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, handler)

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.popleft()
            if sig == signal.SIGHUP:
                self._reload()
            elif self.phase in (Phase.STARTING, Phase.RUNNING):
                self.begin_drain(f"signal {signal.Signals(sig).name}")
            else:
                self.log.warning("signal_while_draining", signal=signal.Signals(sig).name)

    def _reload(self) -> None:
        if self.config_path is None:
            self.log.warning("reload_ignored", msg="SIGHUP: no config file to reload (started on defaults/flags)")
            self.metrics.recipe_reloads.labels(outcome="no_file").inc()
            return
        self.sd.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self.log.error(
                "reload_failed", msg=f"keeping the current recipe; {self.config_path} is invalid", problems=e.problems
            )
            self.metrics.recipe_reloads.labels(outcome="invalid").inc()
            self.sd.ready("running (recipe reload failed: invalid file)")
            return
        before = self._reload_file_cfg
        others = [
            k
            for k in type(new).model_fields
            if k != "recipe" and before is not None and getattr(new, k) != getattr(before, k)
        ]
        old = self.cfg.recipe
        self.cfg = self.cfg.model_copy(update={"recipe": new.recipe})
        self.pool.broadcast(("recipe", new.recipe.model_dump_json()))
        self.metrics.recipe_reloads.labels(outcome="ok").inc()
        self.log.info(
            "recipe_reloaded",
            path=str(self.config_path),
            changed=old != new.recipe,
            recipe=new.recipe.model_dump(),
            not_reloaded=others or None,
            msg=("sections other than [recipe] changed and need a restart: " + ", ".join(others)) if others else None,
        )
        self._reload_file_cfg = new
        self.sd.ready("running (recipe reloaded)")
