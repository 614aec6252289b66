"""``log.backends=[...,wandb]``: each drlrun run is a Weights & Biases run (needs the ``wandb`` extra).

What it records: the flattened config as the W&B config, the rows of ``metrics.jsonl`` at their
env steps, the final results (``hparams/*``) and the status in the run summary. A multirun's
jobs share a group: the sweep directory. Offline unless W&B is set up (``log.wandb.mode=auto``:
``WANDB_MODE``, ``WANDB_API_KEY`` or a ``wandb login``); an offline run lies in
``RUN_DIR/wandb/offline-run-*`` and ``wandb sync`` uploads it later. ``drlrun resume=RUN_DIR``
goes on with the same W&B run id (kept in the run directory's ``tracking.json``), and no step is
sent twice.
"""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from drlrun.errors import DrlrunError
from drlrun.sink import SinkContext, StepGuard

EXIT_CODES = {"completed": 0, "interrupted": 255, "pruned": 0}  # anything else: 1


def configured() -> bool:
    """Whether the user has set W&B up to upload: an API key in the environment or in the netrc
    file that ``wandb login`` writes (read here, nothing is contacted)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if configured() else "offline"


class WandbSink:
    """One W&B run, in the run directory's ``wandb/`` folder."""

    def __init__(self, ctx: SinkContext) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise DrlrunError("log.backends has wandb, but Weights & Biases is not installed (" + str(exc) + "). "
                              "Install it with pip install 'drlrun[wandb]', or leave wandb out of "
                              "log.backends.") from exc
        settings = ctx.settings
        self.ctx = ctx
        self.mode = resolve_mode(str(getattr(settings, "mode", "auto")))
        resuming = ctx.resume_step is not None
        state = ctx.state if resuming else {}
        run_id = state.get("id") or secrets.token_hex(4)
        group = None
        if ctx.sweep_dir is not None:
            group = os.path.relpath(ctx.sweep_dir) if not os.path.relpath(ctx.sweep_dir).startswith("..") \
                else str(ctx.sweep_dir)
        ctx.remember(id=run_id)
        config = dict(ctx.config)
        if ctx.trial is not None:
            config["optuna_trial"] = ctx.trial
        try:
            self.run = wandb.init(
                project=getattr(settings, "project", "drlrun"), entity=getattr(settings, "entity", None),
                dir=str(ctx.run_dir), id=run_id, resume="allow" if resuming else None, name=ctx.run_name,
                group=group, job_type="train", config=config, tags=list(getattr(settings, "tags", []) or []),
                mode=self.mode, reinit="finish_previous",
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise DrlrunError(f"log.backends has wandb, but W&B cannot start this run in mode {self.mode} "
                              f"({type(exc).__name__}: {first}). Check wandb login, log.wandb.project and "
                              "log.wandb.entity, use log.wandb.mode=offline, or leave wandb out of "
                              "log.backends.") from exc
        # Points the stopped process sent stay; the resumed run sends only later steps.
        floor = int(state.get("last_step", -1)) if resuming else -1
        if resuming and self.mode == "online":
            floor = max(floor, int(getattr(self.run, "step", 0) or 0) - 1)
        self.guard = StepGuard(floor=floor)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        fresh = self.guard.new(step, values)
        if fresh:
            self.run.log(fresh, step=step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})

    def flush(self) -> None:
        self.ctx.remember(last_step=self.guard.high)

    def links(self) -> dict[str, str]:
        if self.mode == "offline":
            return {"wandb_run_id": self.run.id, "wandb_sync": f"wandb sync {Path(self.run.dir).parent}"}
        return {"wandb_run_id": self.run.id, "wandb_url": str(self.run.url or "")}

    def close(self, *, status: str, artifacts: list[Path]) -> None:
        self.ctx.remember(last_step=self.guard.high)
        self.run.summary["status"] = status
        self.run.finish(exit_code=EXIT_CODES.get(status, 1))
