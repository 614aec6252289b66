"""Where a run's numbers go: TensorBoard, a JSON-lines metrics file, and the rich console.

Tags follow CleanRL (``charts/episodic_return``, ``charts/SPS``, ``losses/td_loss``, ...) so
curves can be compared with theirs. Nothing here is called per environment step: the runner
batches finished episodes and metrics and flushes them at the log interval.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Tags TensorBoard gets once per finished episode, at the step it ended (CleanRL's names).
EPISODE_TAGS = ("charts/episodic_return", "charts/episodic_length")


class Telemetry:
    """TensorBoard writer + ``metrics.jsonl`` + progress bar for one run directory."""

    def __init__(self, run_dir: Path, *, total_steps: int, title: str, tensorboard: bool = True,
                 progress: bool = True, console: Console | None = None, resume_step: int | None = None,
                 seconds: float = 0.0) -> None:
        """``resume_step``: the run goes on from its checkpoint at this step. Whatever the
        stopped process logged after it is dropped (metrics rows here; TensorBoard events through
        the writer's ``purge_step``), so the resumed run's rows follow with no step twice.
        ``seconds``: wall time the run had already trained for."""
        self.run_dir = run_dir
        self.console = console or Console(stderr=True)
        self.writer = None
        metrics = run_dir / "metrics.jsonl"
        if resume_step is not None and metrics.exists():
            _truncate_rows(metrics, resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)
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

    # ------------------------------------------------------------------ writing
    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One row of the metrics file and one point per tag in TensorBoard."""
        clean = {k: float(v) for k, v in values.items()}
        if self.writer is not None:
            for tag, value in clean.items():
                if tag not in EPISODE_TAGS:  # TensorBoard has every episode at its own step already
                    self.writer.add_scalar(tag, value, step)
        row = {"step": step, "wall_time": round(time.perf_counter() - self._start, 4)}
        row.update({k: (v if math.isfinite(v) else None) for k, v in clean.items()})
        self._metrics_file.write(json.dumps(row) + "\n")

    def episodes(self, steps: list[int], returns: list[float], lengths: list[int]) -> None:
        """Each finished episode as a TensorBoard point at the step it ended (the metrics file
        has their mean per log row instead)."""
        if self.writer is None:
            return
        return_tag, length_tag = EPISODE_TAGS
        for step, ret, length in zip(steps, returns, lengths, strict=True):
            self.writer.add_scalar(return_tag, ret, step)
            self.writer.add_scalar(length_tag, length, step)

    def progress(self, step: int, sps: float, last_return: float | None, last_eval: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, sps=f"{sps:,.0f}",
                                  ret=_fmt(last_return), eval=_fmt(last_eval))

    def message(self, text: str) -> None:
        """A line for the user: above the live bar in a terminal, plain otherwise."""
        self.console.print(text, highlight=False)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters against final metrics, for TensorBoard's HParams tab."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        exp, ssi, sei = hparams_summary(values, clean)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        for tag, value in clean.items():
            self.writer.add_scalar(tag, value)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        if not self._metrics_file.closed:
            self._metrics_file.close()

    def flush(self) -> None:
        self._metrics_file.flush()
        if self.writer is not None:
            self.writer.flush()


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
    return table
