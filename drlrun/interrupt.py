"""Ctrl-C and SIGTERM during training, and environments that fail.

The first signal asks the loop to finish the current step, save a checkpoint there and stop with
:class:`Interrupted`; ``drlrun resume=RUN_DIR`` goes on from it. A second Ctrl-C stops at once,
without a checkpoint (``KeyboardInterrupt``). Outside the main thread (some launchers) the
signals keep their default meaning. Environments that can step no further (:class:`EnvsFailed`)
stop the run the same way, with a checkpoint of the last completed step.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import TracebackType
from typing import Any

from drlrun.errors import DrlrunError


class Interrupted(DrlrunError):
    """Ctrl-C or SIGTERM: the run saved a checkpoint at the step it reached and stops."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class EnvsFailed(DrlrunError):
    """A vector env can step no further: an env copy's Ray actor died, raised or did not answer in
    time (``envs_ray.py``; the message names the copies and the node). The loop then saves a
    checkpoint of the last completed step, as for Ctrl-C, and stops with it."""


class StopSignals:
    """While in its ``with`` block, SIGINT/SIGTERM set :attr:`signum` for the loop to act on."""

    def __init__(self, telemetry: Any) -> None:
        self.telemetry = telemetry
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.signum = signum
        self.telemetry.message(f"[yellow]{signal.Signals(signum).name}: saving a checkpoint at the next step "
                               "(press Ctrl-C again to stop at once, without one)...")

    def _name(self) -> str:
        assert self.signum is not None
        return signal.Signals(self.signum).name

    def without_checkpoint(self, step: int) -> Interrupted:
        assert self.signum is not None
        return Interrupted(f"Stopped by {self._name()} at step {step:,}; no checkpoint was written "
                           "(checkpoint.enabled=false).", self.signum)

    def after_checkpoint(self, step: int, total: int, run_dir: Path) -> Interrupted:
        assert self.signum is not None
        return Interrupted(f"Stopped by {self._name()} at step {step:,} of {total:,}; checkpoint saved. "
                           f"Continue with: drlrun resume={run_dir}", self.signum)
