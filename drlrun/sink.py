"""The contract between a run's telemetry and a logger: where rows, hyperparameters and artifacts go.

A logger ("sink") is a class in the ``drlrun.loggers`` entry-point group (drlrun's own in its
``pyproject.toml``: tensorboard, mlflow, wandb), chosen with ``log.backends=[tensorboard,mlflow]``.
``drlrun/telemetry.py`` hands every sink the same calls, at the log interval and never per
environment step:

- ``Sink(ctx)``: start (:class:`SinkContext` says which run). A sink that cannot start raises
  :class:`drlrun.errors.DrlrunError` saying why: the run stops before training (exit 2).
- ``scalars(step, values)``: one row (TensorBoard tag -> float) at an env step. The same rows go
  to ``metrics.jsonl``.
- ``close(status=..., artifacts=...)``: the run ended (``completed``, ``failed``, ``diverged``,
  ``pruned`` or ``interrupted``); ``artifacts`` are its files (``summary.json``, ``eval.json``,
  videos, the best checkpoint) that exist.

Optional, with the default telemetry uses where a class leaves them out (:data:`OPTIONAL`):
``episodes(steps, returns, lengths)`` (each finished episode at its own step; default: none, the
rows carry their mean), ``hparams(hparams, metrics)`` (the flattened config against the final
results), ``flush()`` (before each checkpoint) and ``links()`` (lines for the final table and
``summary.json``, e.g. the command that opens the run). A sink that raises while training is
reported once and left out; the run goes on. :func:`check_sink_class` enforces this contract
when a class is registered or loaded from an entry point.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drlrun.agent import qualname, takes_keyword
from drlrun.errors import DrlrunError

# Tags that a sink taking ``episodes`` gets once per finished episode, at the step it ended
# (CleanRL's names); the rows carry their mean at the log step.
EPISODE_TAGS = ("charts/episodic_return", "charts/episodic_length")
REQUIRED = ("scalars", "close")
OPTIONAL = ("episodes", "hparams", "flush", "links")
STATE_FILE = "tracking.json"  # in the run directory: what each sink keeps for a resume (its run id)


@dataclass
class SinkContext:
    """What a sink learns about the run it records."""

    name: str  # the sink's registry name (its log.backends entry)
    run_dir: Path
    run_name: str  # e.g. "ppo CartPole-v1 seed 0" ("job 3: ..." in a multirun)
    config: dict[str, Any] = field(default_factory=dict)  # the run's flattened settings (dotted keys)
    settings: Any = None  # the sink's own section: log.<name> (built-ins) or log.options.<name> (plug-ins)
    resume_step: int | None = None  # resuming from the checkpoint at this step; None for a new run
    sweep_dir: Path | None = None  # a multirun's directory (None for a single run)
    job: int | None = None  # the multirun job number
    trial: int | None = None  # the Optuna trial number inside hydra/sweeper=optuna
    message: Callable[[str], None] = print  # a line for the user

    @property
    def state(self) -> dict[str, Any]:
        """What this sink :meth:`remember`-ed in this run directory before (empty for a new run)."""
        return dict(read_state(self.run_dir).get(self.name, {}))

    def remember(self, **values: Any) -> None:
        """Keep ``values`` in the run directory's ``tracking.json`` (atomically), for a resume."""
        state = read_state(self.run_dir)
        state[self.name] = {**state.get(self.name, {}), **values}
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f".{STATE_FILE}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.run_dir / STATE_FILE)


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class StepGuard:
    """No (tag, step) pair sent twice to a store that cannot take a point back (MLflow, W&B): only
    points beyond the tag's last sent step pass. A resumed run re-creates the rows after its
    checkpoint; those its stopped process had sent already stay as they were sent (a resumed run
    repeats the uninterrupted one, so they are the same numbers)."""

    def __init__(self, last: dict[str, int] | None = None, floor: int = -1) -> None:
        self.last = dict(last or {})
        self.floor = floor  # every tag's last step where only an overall one is known

    def new(self, step: int, values: dict[str, float]) -> dict[str, float]:
        fresh = {k: v for k, v in values.items() if step > self.last.get(k, self.floor)}
        for key in fresh:
            self.last[key] = step
        return fresh

    @property
    def high(self) -> int:
        return max([self.floor, *self.last.values()])


def check_sink_class(kind: str, name: str, cls: Any) -> None:
    """Refuse a logger class that does not fulfil the contract above, naming what it lacks."""
    problems = []
    if not isinstance(cls, type):
        problems.append(f"is not a class (it is {type(cls).__name__})")
    else:
        missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
        if missing:
            problems.append(f"lacks the required method(s) {', '.join(missing)}")
        close = getattr(cls, "close", None)
        if callable(close) and not all(takes_keyword(close, k) for k in ("status", "artifacts")):
            problems.append("has a 'close' that does not take the keywords status and artifacts")
        not_callable = [m for m in OPTIONAL if hasattr(cls, m) and not callable(getattr(cls, m))]
        if not_callable:
            problems.append(f"has {', '.join(not_callable)} that are not methods")
    if problems:
        raise DrlrunError(f"{kind} {name!r} ({qualname(cls)}) does not fulfil drlrun's logger contract "
                          f"(drlrun.sink): it {'; it '.join(problems)}.")
