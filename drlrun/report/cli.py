"""The ``drlrun-report`` command: its arguments, the console output and the files it writes."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drlrun.errors import DrlrunError
from drlrun.report.groups import Group, display, group_runs, group_stats
from drlrun.report.plots import plot_curves
from drlrun.report.runs import RUNNING, collect_runs, natural_key, relative, resolve_roots
from drlrun.report.stats import CurveBand, aggregate_curves
from drlrun.report.write import (
    EXCLUDED_HEADERS,
    TABLE_HEADERS,
    excluded_rows,
    machines,
    table_rows,
    write_csv,
    write_markdown,
)

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drlrun-report",
        description="Compare drlrun runs across seeds: a table (mean, 95% bootstrap CI, IQM, "
                    "success rate, time to solve) and learning curves per configuration.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run directories and/or sweep directories (searched recursively)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write report.csv, report.md and the PNGs "
                             "(default: the common parent directory of PATH...)")
    parser.add_argument("--x", choices=("step", "time"), default="step", dest="x_axis",
                        help="learning-curve x axis: environment steps, or training seconds "
                             "(evaluation excluded); default: step")
    parser.add_argument("--threshold", type=float, metavar="X",
                        help="return that counts as solved (default: each run's own, from its "
                             "summary or config)")
    return parser


def _print_notes(groups: list[Group], err: Console) -> None:
    """Seeds that appear twice in a group, and what could not be read of each run."""
    for g in groups:
        seeds = Counter(display(r.seed) for r in g.runs)
        twice = sorted((s for s, n in seeds.items() if n > 1), key=natural_key)
        if twice:
            err.print(f"[yellow]note:[/] {escape(g.label)}: seed {escape(', '.join(twice))} appears more than "
                      "once; each run counts.", highlight=False, soft_wrap=True)
        for run in g.runs:
            for note in run.notes:
                err.print(f"[yellow]note:[/] {escape(relative(run.path, Path.cwd()))}: {escape(note)}",
                          highlight=False, soft_wrap=True)


def _table(title: str, headers: Sequence[str], rows: list[list[str]], numbers: bool) -> Table:
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        if numbers:
            table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
        else:
            table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def _print_tables(out: Console, title: str, rows: list[list[str]], excluded: list[list[str]],
                  measured_on: list[str]) -> None:
    out.print(_table(title, TABLE_HEADERS, rows, numbers=True))
    if measured_on:
        out.print(f"Measured on: {'; '.join(measured_on)}", markup=False, highlight=False, soft_wrap=True)
    if excluded:
        out.print(_table("Runs not in the statistics", EXCLUDED_HEADERS, excluded, numbers=False))


def _curves(groups: list[Group], x_axis: str) -> list[CurveBand]:
    """Each group's learning curve over its counted and running runs."""
    return [aggregate_curves([r.curve(x_axis) for r in g.runs if r.counted or r.status == RUNNING])
            for g in groups]


def _print_written(out: Console, out_dir: Path, images: list[tuple[str, Path]] | None) -> None:
    names = ["report.csv", "report.md", *(p.name for _label, p in images or [])]
    out.print(f"Wrote {', '.join(names)} to {out_dir}", markup=False, highlight=False,
              soft_wrap=True)
    if images is None:
        out.print("Learning-curve PNGs need matplotlib: pip install 'drlrun[report]'",
                  markup=False, highlight=False, soft_wrap=True)
    elif not images:
        out.print("No evaluation rows in metrics.jsonl: no learning curves to draw.",
                  markup=False, highlight=False, soft_wrap=True)


def run_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Read, group and summarise the runs under ``args.paths``; print and write the report."""
    roots = resolve_roots(args.paths)
    runs = collect_runs(roots)
    out_dir = args.out.expanduser().resolve() if args.out else Path(os.path.commonpath(roots))
    groups = group_runs(runs)
    stats = [group_stats(g, args.threshold) for g in groups]
    _print_notes(groups, err)
    rows = table_rows(groups, stats)
    excluded = excluded_rows(groups, out_dir)
    title = f"drlrun report: {len(runs)} run{'s' * (len(runs) != 1)} in {len(groups)} " \
            f"group{'s' * (len(groups) != 1)}"
    measured_on = machines(runs)
    _print_tables(out, title, rows, excluded, measured_on)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        images = plot_curves(groups, _curves(groups, args.x_axis), [s.threshold for s in stats],
                             out_dir, args.x_axis)
        write_csv(out_dir / "report.csv", groups, stats)
        write_markdown(out_dir / "report.md", title, rows, excluded, images or [], measured_on)
    except OSError as exc:
        raise DrlrunError(f"Cannot write the report to '{out_dir}': {exc.strerror or exc}. "
                          "Choose another directory with --out DIR.") from exc
    _print_written(out, out_dir, images)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: ``drlrun-report PATH... [--out DIR] [--x step|time]
    [--threshold X]``. Exit status 0, or 2 for a bad path (one paragraph, no traceback)."""
    args = _parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        return run_report(args, Console(), err)
    except DrlrunError as exc:
        err.print(f"[bold red]drlrun-report error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USER_ERROR

