"""``log.backends=[...,mlflow]``: each drlrun run is an MLflow run (needs the ``mlflow`` extra).

What it records: the flattened config as params; every row of ``metrics.jsonl`` as metrics at its
env step (sent in batches every few seconds and before each checkpoint, never per env step); the
final results (``hparams/*``); and, at the end, ``summary.json``, ``eval.json``, ``videos/`` and
``checkpoints/best.pt`` as artifacts. Tags name the run directory, algorithm, env, seed, status
and, inside ``hydra/sweeper=optuna``, the trial number.

Where: ``log.mlflow.tracking_uri``, by default an SQLite database beside the runs,
``sqlite:///<outputs>/mlflow.db`` (the nearest folder named ``outputs`` above the run directory,
else the sweep or run directory), with its artifacts in ``mlartifacts/`` next to it. A multirun
is one parent run with a child run per job. ``drlrun resume=RUN_DIR`` goes on in the same MLflow
run (its id is kept in the run directory's ``tracking.json``); the points the stopped process had
sent stay, and none is sent twice (:class:`drlrun.sink.StepGuard`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drlrun.errors import DrlrunError
from drlrun.sink import SinkContext, StepGuard

SEND_EVERY = 5.0  # seconds between batches of rows (and before every checkpoint, and at the end)
STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "pruned": "KILLED"}  # anything else: FAILED
SWEEP_STATE = "tracking.json"  # in a multirun's directory: its parent run


def default_uri(ctx: SinkContext) -> str:
    """``sqlite:///<outputs>/mlflow.db``: the nearest folder named ``outputs`` above the run
    directory, else the sweep directory (multirun) or the run directory itself."""
    run_dir = ctx.run_dir.resolve()
    folder = next((p for p in run_dir.parents if p.name == "outputs"), None)
    if folder is None:
        folder = ctx.sweep_dir.resolve() if ctx.sweep_dir is not None else run_dir
    return f"sqlite:///{folder / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


class MlflowSink:
    """One MLflow run (a child of the multirun's parent run in a sweep)."""

    def __init__(self, ctx: SinkContext) -> None:
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise DrlrunError("log.backends has mlflow, but MLflow is not installed (" + str(exc) + "). Install it "
                              "with pip install 'drlrun[mlflow]', or leave mlflow out of log.backends.") from exc
        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        settings = ctx.settings
        self.ctx = ctx
        self.artifacts = bool(getattr(settings, "artifacts", True))
        resuming = ctx.resume_step is not None
        state = ctx.state if resuming else {}
        self.uri = str(state.get("tracking_uri") or getattr(settings, "tracking_uri", None) or default_uri(ctx))
        self.experiment = str(getattr(settings, "experiment", "drlrun"))
        self.pending: list[Any] = []
        self.last_send = time.monotonic()
        self.parent_id: str | None = None
        self.guard = StepGuard()
        db = sqlite_path(self.uri)
        try:
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            with _quick_http(), _locked(self._lock_path()):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = self._experiment(db)
                if ctx.sweep_dir is not None and not (resuming and state.get("run_id")):
                    self.parent_id = self._parent()
                self.run_id = self._start_run(state if resuming else {})
        except DrlrunError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise DrlrunError(f"log.backends has mlflow, but MLflow cannot record this run at {self.uri!r} "
                              f"({type(exc).__name__}: {first}). Start the tracking server or fix "
                              "log.mlflow.tracking_uri=<uri>, or leave mlflow out of log.backends.") from exc

    # ------------------------------------------------------------------ start
    def _lock_path(self) -> Path | None:
        """Jobs of a multirun (and runs sharing an SQLite file) start one at a time: the database's
        tables, the experiment and the parent run are made once."""
        if self.ctx.sweep_dir is not None:
            return self.ctx.sweep_dir / ".tracking.lock"
        db = sqlite_path(self.uri)
        return db.with_name(f".{db.name}.lock") if db is not None else None

    def _experiment(self, db: Path | None) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        location = (db.parent / "mlartifacts").resolve().as_uri() if db is not None else None
        return str(self.client.create_experiment(self.experiment, artifact_location=location))

    def _parent(self) -> str:
        """The multirun's parent run: made by its first job, kept in the sweep directory."""
        import json

        assert self.ctx.sweep_dir is not None
        path = self.ctx.sweep_dir / SWEEP_STATE
        try:
            sweep_state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            sweep_state = {}
        parents = sweep_state.setdefault("mlflow_parents", {})
        key = f"{self.uri} {self.experiment_id}"
        parent_id = parents.get(key)
        if parent_id is not None:
            self.client.update_run(parent_id, status="RUNNING")
            return str(parent_id)
        sweep = self.ctx.sweep_dir
        run = self.client.create_run(self.experiment_id, run_name=_sweep_name(sweep),
                                     tags={"drlrun.sweep_dir": str(sweep.resolve())})
        parents[key] = run.info.run_id
        from drlrun.checkpoint import write_json

        write_json(path, sweep_state)
        return str(run.info.run_id)

    def _start_run(self, state: dict[str, Any]) -> str:
        ctx, client = self.ctx, self.client
        run_id = state.get("run_id")
        if run_id is not None:
            try:
                run = client.get_run(run_id)
            except Exception:
                ctx.message(f"[yellow]MLflow has no run {run_id} at {self.uri} any more: this resumed run starts "
                            "a new one.")
                run_id = None
            else:
                client.update_run(run_id, status="RUNNING")
                self.parent_id = run.data.tags.get("mlflow.parentRunId")
                last = {}
                for key in run.data.metrics:
                    steps = [m.step for m in client.get_metric_history(run_id, key)]
                    if steps:
                        last[key] = max(steps)
                self.guard = StepGuard(last)
                known = run.data.params
                self._params(run_id, {k: v for k, v in ctx.config.items() if k not in known})
                changed = {k: v for k, v in ctx.config.items() if k in known and known[k] != _param_value(v)}
                tags = {"drlrun.resumes": str(int(run.data.tags.get("drlrun.resumes", "0")) + 1)}
                tags.update({f"drlrun.resumed.{k}": _param_value(v) for k, v in changed.items()})
                client.log_batch(run_id, tags=[self.RunTag(k, v) for k, v in tags.items()])
                return str(run_id)
        cfg = ctx.config
        tags = {"drlrun.run_dir": str(ctx.run_dir.resolve()), "drlrun.algo": str(cfg.get("algo.name")),
                "drlrun.env": str(cfg.get("env.id")), "drlrun.seed": str(cfg.get("seed"))}
        if self.parent_id is not None:
            tags["mlflow.parentRunId"] = self.parent_id
            tags["drlrun.job"] = str(ctx.job)
        if ctx.trial is not None:
            tags["drlrun.optuna_trial"] = str(ctx.trial)
        run = client.create_run(self.experiment_id, run_name=ctx.run_name, tags=tags)
        run_id = run.info.run_id
        ctx.remember(run_id=run_id, tracking_uri=self.uri, experiment_id=self.experiment_id)
        self._params(run_id, cfg)
        return str(run_id)

    def _params(self, run_id: str, config: dict[str, Any]) -> None:
        params = [self.Param(k[:250], _param_value(v)) for k, v in config.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])

    # ------------------------------------------------------------------ rows
    def scalars(self, step: int, values: dict[str, float]) -> None:
        fresh = self.guard.new(step, values)
        if fresh:
            ms = int(time.time() * 1000)
            self.pending.extend(self.Metric(key, value, ms, step) for key, value in fresh.items())
        if self.pending and time.monotonic() - self.last_send >= SEND_EVERY:
            self.flush()

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The final results as metrics at the last step (the params are the config already)."""
        step = max(self.guard.high, 0)
        self.scalars(step, {k: float(v) for k, v in metrics.items() if v is not None})

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        self.last_send = time.monotonic()
        for i in range(0, len(pending), 1000):
            self.client.log_batch(self.run_id, metrics=pending[i:i + 1000])

    def links(self) -> dict[str, str]:
        db = sqlite_path(self.uri)
        ui = f"mlflow ui --backend-store-uri {self.uri}" if db is not None else self.uri
        return {"mlflow_run_id": self.run_id, "mlflow_ui": ui}

    def close(self, *, status: str, artifacts: list[Path]) -> None:
        self.flush()
        client, run_dir = self.client, self.ctx.run_dir
        if self.artifacts:
            for path in artifacts:
                folder = path.parent.relative_to(run_dir).as_posix() if path.parent != run_dir else None
                client.log_artifact(self.run_id, str(path), artifact_path=folder)
        client.set_tag(self.run_id, "drlrun.status", status)
        client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
        if self.parent_id is not None:
            with _locked(self._lock_path()):
                running = client.search_runs([self.experiment_id], max_results=1, filter_string=(
                    f"tags.mlflow.parentRunId = '{self.parent_id}' and attributes.status = 'RUNNING'"))
                if not running:  # the sweep's last job so far: the parent is done too (until another starts)
                    client.set_terminated(self.parent_id, "FINISHED")


def _param_value(value: Any) -> str:
    return str(value)[:6000]


def _sweep_name(sweep_dir: Path) -> str:
    parts = sweep_dir.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(sweep_dir)


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    """While starting: a tracking server that does not answer fails in seconds, not after MLflow's
    minutes of retries (unless the user set these himself)."""
    given = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    set_here = {k: v for k, v in given.items() if k not in os.environ}
    os.environ.update(set_here)
    try:
        yield
    finally:
        for key in set_here:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX ``flock``; none where there is none)."""
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def attach(run_dir: Path, files: list[Path]) -> bool:
    """Add files written after the run ended (drlrun-eval's ``eval.json`` and videos) to the
    run's MLflow run, where it has one (``tracking.json``); False where it has none."""
    from drlrun.sink import read_state

    state = read_state(run_dir).get("mlflow") or {}
    if not state.get("run_id"):
        return False
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=state["tracking_uri"])
    for path in files:
        folder = path.parent.relative_to(run_dir).as_posix() if path.parent != run_dir else None
        client.log_artifact(state["run_id"], str(path), artifact_path=folder)
    return True
