"""Where a run's numbers go: ``metrics.jsonl``, the loggers of ``log.backends`` (TensorBoard by
default; MLflow, Weights & Biases, plug-ins: ``drlrun/sink.py``), and the rich console.

Tags follow CleanRL (``charts/episodic_return``, ``charts/SPS``, ``losses/td_loss``, ...) so
curves can be compared with theirs. Nothing here is called per environment step: the runner
batches finished episodes and metrics and flushes them at the log interval. Every logger gets the
same rows as the metrics file; one that fails while training is reported once and left out, and
the run goes on with the others (the metrics file is always complete).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from drlrun.sink import EPISODE_TAGS

__all__ = ["EPISODE_TAGS", "Telemetry", "run_artifacts", "summary_table"]


class Telemetry:
    """``metrics.jsonl`` + the loggers + progress bar for one run directory."""

    def __init__(self, run_dir: Path, *, total_steps: int, title: str, tensorboard: bool = True,
                 progress: bool = True, console: Console | None = None, resume_step: int | None = None,
                 seconds: float = 0.0, sinks: dict[str, Any] | None = None) -> None:
        """``resume_step``: the run goes on from its checkpoint at this step. Whatever the
        stopped process logged after it is dropped (metrics rows here; the loggers drop theirs:
        TensorBoard through the writer's ``purge_step``), so the resumed run's rows follow with no
        step twice. ``seconds``: wall time the run had already trained for. ``sinks``: the started
        loggers by name (``drlrun/tracking.py`` starts them from ``log.backends``); without them,
        TensorBoard alone where ``tensorboard``."""
        self.run_dir = run_dir
        self.console = console or Console(stderr=True)
        if sinks is None:
            sinks = {}
            if tensorboard:
                from drlrun.sink import SinkContext
                from drlrun.sink_tensorboard import TensorBoardSink

                sinks["tensorboard"] = TensorBoardSink(SinkContext("tensorboard", run_dir, title,
                                                                   resume_step=resume_step))
        self.sinks: dict[str, Any] = dict(sinks)
        self.failures: dict[str, str] = {}  # loggers that failed while training: why
        metrics = run_dir / "metrics.jsonl"
        if resume_step is not None and metrics.exists():
            _truncate_rows(metrics, resume_step)
        self._metrics_file = metrics.open("a", encoding="utf-8")
        self._start = time.perf_counter() - seconds
        self._progress: Progress | None = None
        self.live = progress and self.console.is_terminal
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} steps"),
                TextColumn("{task.fields[sps]} SPS"), TextColumn("return {task.fields[ret]}"),
                TextColumn("eval {task.fields[eval]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._task = self._progress.add_task(title, total=total_steps, sps="-", ret="-", eval="-",
                                                 completed=resume_step or 0)
            self._progress.start()

    @property
    def writer(self) -> Any:
        """The TensorBoard ``SummaryWriter`` (for videos), or None without TensorBoard."""
        sink = self.sinks.get("tensorboard")
        return getattr(sink, "writer", None)

    # ------------------------------------------------------------------ writing
    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Call ``method`` of every logger that has it; one that raises is left out from here on."""
        for name, sink in list(self.sinks.items()):
            fn = getattr(sink, method, None)
            if fn is None:
                continue
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                self._drop(name, method, exc)

    def _drop(self, name: str, method: str, exc: Exception) -> None:
        sink = self.sinks.pop(name)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        self.failures[name] = f"{type(exc).__name__}: {first}"
        kept = ["metrics.jsonl", *self.sinks]
        self.message(f"[yellow]drlrun: the {name} logger failed ({escape(self.failures[name])}, in {method}) and "
                     f"is left out for the rest of this run; the run goes on with {', '.join(kept)}.")
        if method != "close":
            with contextlib.suppress(Exception):
                sink.close(status="failed", artifacts=[])

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One row of the metrics file and the same row for every logger."""
        clean = {k: float(v) for k, v in values.items()}
        self._each("scalars", step, clean)
        row = {"step": step, "wall_time": round(time.perf_counter() - self._start, 4)}
        row.update({k: (v if math.isfinite(v) else None) for k, v in clean.items()})
        self._metrics_file.write(json.dumps(row) + "\n")

    def episodes(self, steps: list[int], returns: list[float], lengths: list[int]) -> None:
        """Each finished episode at the step it ended, for the loggers that take them (TensorBoard;
        the metrics file has their mean per log row instead)."""
        if steps:
            self._each("episodes", steps, returns, lengths)

    def progress(self, step: int, sps: float, last_return: float | None, last_eval: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, sps=f"{sps:,.0f}",
                                  ret=_fmt(last_return), eval=_fmt(last_eval))

    def message(self, text: str) -> None:
        """A line for the user: above the live bar in a terminal, plain otherwise."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters against final metrics (TensorBoard's HParams tab, MLflow params, ...)."""
        self._each("hparams", hparams, metrics)

    def links(self) -> dict[str, str]:
        """Each logger's way to open the run (``mlflow ui ...``, ``wandb sync ...``), and each
        failed logger's error, for summary.json and the final table."""
        out: dict[str, str] = {}
        for _name, sink in self.sinks.items():
            fn = getattr(sink, "links", None)
            if fn is not None:
                with contextlib.suppress(Exception):
                    out.update(fn())
        out.update({f"{name}_error": why for name, why in self.failures.items()})
        return out

    def close(self, status: str = "completed") -> None:
        """End the run for every logger: ``status`` as summary.json has it, and the run's files."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if not self._metrics_file.closed:
            self._metrics_file.close()
        if self.sinks:
            self._each("close", status=status, artifacts=run_artifacts(self.run_dir))
            self.sinks = {}

    def flush(self) -> None:
        """Before a checkpoint: every row up to here is on disk (and sent, for the loggers)."""
        self._metrics_file.flush()
        self._each("flush")


def run_artifacts(run_dir: Path) -> list[Path]:
    """The files of a run that trackers keep: summary.json, eval.json, videos, the best checkpoint."""
    files = [run_dir / "summary.json", run_dir / "eval.json", *sorted((run_dir / "videos").glob("*.mp4")),
             run_dir / "checkpoints" / "best.pt"]
    return [f for f in files if f.is_file()]


def _truncate_rows(path: Path, last_step: int) -> None:
    """Keep the rows of a metrics file up to ``last_step`` (atomically; a torn last line from
    a killed process goes too)."""
    from drlrun.checkpoint import atomic_write

    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= last_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    atomic_write(path, lambda f: f.write("".join(kept).encode("utf-8")))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_table(summary: dict[str, Any], run_dir: Path) -> Table:
    """The final table printed at the end of a run."""
    table = Table(title=f"{summary['algo']} on {summary['env']}, seed {summary['seed']}",
                  show_header=False, title_justify="left", min_width=60)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("status", "total_steps", "wall_seconds", "steps_per_second", "final_return_mean",
                "final_return_std", "best_return_mean", "threshold", "solved_at_step"):
        value = summary.get(key)
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    table.add_row("run directory", str(run_dir))
    for key, value in (summary.get("tracking") or {}).items():  # e.g. mlflow_ui: mlflow ui --backend-store-uri ...
        table.add_row(key, str(value))
    return table
