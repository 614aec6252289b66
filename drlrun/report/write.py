"""The report's tables: rows for the console, ``report.csv`` and ``report.md``."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from drlrun.report.groups import Group, GroupStats, display
from drlrun.report.runs import (
    COMPLETED,
    EVAL_KEY,
    MACHINE_KEYS,
    RUNNING,
    RunRecord,
    finite,
    relative,
)

TABLE_HEADERS = ("group", "seeds", "final return", "95% CI", "IQM", "threshold", "success",
                 "time to solve (median)", "train steps/s")
EXCLUDED_HEADERS = ("group", "seed", "status", "last eval", "error / note", "run directory")
CSV_STATS_HEADERS = ("seeds", "failed", "running", "final_return_mean", "ci95_low", "ci95_high",
                     "iqm", "threshold", "successes", "success_rate", "solved",
                     "median_seconds_to_solve", "median_train_steps_per_second")
METHODS = ("Final return: mean over completed seeds of each run's final evaluation; 95% CI: "
           "percentile bootstrap of that mean (10,000 resamples); IQM: interquartile mean; "
           "success: final return >= threshold; time to solve: training seconds (evaluation "
           "excluded) to the first evaluation >= threshold, median over the runs that did.")


def num(value: float | None) -> str:
    """A number for people: thousands separated, 4 significant digits below 1000, '-' for none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _csv_num(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def table_rows(groups: list[Group], stats: list[GroupStats]) -> list[list[str]]:
    rows = []
    for g, s in zip(groups, stats, strict=True):
        extra = [f"{n} {what}" for n, what in ((s.failed, "failed"), (s.running, "running")) if n]
        seeds = f"{s.seeds}" + (f" (+{', '.join(extra)})" if extra else "")
        success = (f"{s.successes}/{s.judged} ({100 * s.success_rate:.0f}%)" if s.judged else "-")
        seconds = f"{num(s.median_seconds_to_solve)} s " if s.solved else ""
        solve = f"{seconds}({s.solved}/{s.judged} solved)" if s.judged else "-"
        ci = f"[{num(s.ci_low)}, {num(s.ci_high)}]" if s.seeds else "-"
        rows.append([g.label, seeds, num(s.mean), ci, num(s.iqm), num(s.threshold), success,
                     solve, num(s.median_train_sps)])
    return rows


def _exclusion_note(run: RunRecord) -> str:
    if run.status == RUNNING:
        return "no summary.json yet (still running, or stopped without one)"
    if run.status == COMPLETED:
        return "completed without a final return"
    return str((run.summary or {}).get("error") or "")


def excluded_rows(groups: list[Group], out_dir: Path) -> list[list[str]]:
    """Runs not in the statistics: running, failed, diverged, ..."""
    rows = []
    for g in groups:
        for run in g.runs:
            if run.counted:
                continue
            last = run.evals[-1] if run.evals else None
            last_text = (f"{num(finite(last.get(EVAL_KEY)))} at step {num(finite(last.get('step')))}"
                         if last else "-")
            rows.append([g.label, display(run.seed), run.status, last_text, _exclusion_note(run),
                         relative(run.path, out_dir)])
    return rows


def _csv_stats(s: GroupStats) -> list[object]:
    return [s.seeds, s.failed, s.running, _csv_num(s.mean), _csv_num(s.ci_low),
            _csv_num(s.ci_high), _csv_num(s.iqm), _csv_num(s.threshold),
            s.successes if s.judged else "", _csv_num(s.success_rate), s.solved,
            _csv_num(s.median_seconds_to_solve), _csv_num(s.median_train_sps)]


def write_csv(path: Path, groups: list[Group], stats: list[GroupStats]) -> None:
    label_columns = list(dict.fromkeys(k for g in groups for k in g.label_values
                                       if k not in ("algo", "env")))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "algo", "env", *label_columns, *CSV_STATS_HEADERS])
        for g, s in zip(groups, stats, strict=True):
            writer.writerow([g.label, g.runs[0].algo, g.runs[0].env,
                             *(g.label_values.get(k, "") for k in label_columns), *_csv_stats(s)])


def _markdown_table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def machines(runs: list[RunRecord]) -> list[str]:
    """Each CPU model and numeric path (and GPU) the runs were measured on, once."""
    seen = []
    for run in runs:
        values = [run.config.get(f"machine.{key}") for key in MACHINE_KEYS]
        if values[0] is not None:
            cpu, path, gpu = values
            seen.append(f"{cpu} ({path})" + (f", {gpu}" if gpu else ""))
    return list(dict.fromkeys(seen))


def write_markdown(path: Path, title: str, rows: list[list[str]], excluded: list[list[str]],
                   images: list[tuple[str, Path]], measured_on: list[str]) -> None:
    lines = [f"# {title}", "", METHODS, ""]
    if measured_on:
        lines += [f"Measured on: {'; '.join(measured_on)} (CPU model and numeric path).", ""]
    lines += _markdown_table(TABLE_HEADERS, rows)
    if excluded:
        lines += ["", "## Runs not in the statistics", ""]
        lines += _markdown_table(EXCLUDED_HEADERS, excluded)
    if images:
        lines += ["", "## Learning curves", ""]
        lines += [f"![{label}]({image.name})" for label, image in images]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
