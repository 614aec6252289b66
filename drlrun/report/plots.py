"""Learning-curve PNGs: one per group (its runs, their mean and 95% bootstrap band) and
``curves.png`` comparing the groups. Needs matplotlib (``pip install 'drlrun[report]'``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from drlrun.report.groups import Group
from drlrun.report.runs import RUNNING
from drlrun.report.stats import CurveBand

X_LABELS = {"step": "environment steps", "time": "training seconds (evaluation excluded)"}


def slugify(label: str) -> str:
    """A file-name-safe version of a group label."""
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", label).strip("_")[:120] or "group"


def _new_axes(title: str, x_axis: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(X_LABELS[x_axis])
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    return fig, ax


def _draw(ax: Any, band: CurveBand, color: str, label: str) -> None:
    ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.25, linewidth=0)
    ax.plot(band.x, band.mean, color=color, label=label)


def _threshold_line(ax: Any, threshold: float | None) -> None:
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1,
                   label=f"threshold {threshold:g}")


def _plot_group(g: Group, band: CurveBand, threshold: float | None, color: str,
                x_axis: str) -> Any:
    """One group's figure: each run faintly, their mean and band, the threshold."""
    fig, ax = _new_axes(g.label, x_axis)
    for run in g.runs:
        if run.counted or run.status == RUNNING:
            xs, ys = run.curve(x_axis)
            ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
    most = int(band.count.max())
    of = f"of {most}" if band.count.min() == most else f"of up to {most}"
    _draw(ax, band, color, f"mean {of} run{'s' * (most != 1)}, 95% bootstrap CI")
    _threshold_line(ax, threshold)
    ax.legend(loc="best")
    return fig


def _plot_all(groups: list[Group], bands: list[CurveBand], thresholds: list[float | None],
              x_axis: str) -> Any:
    """Every group's mean and band in one figure; the threshold if they all share it."""
    fig, ax = _new_axes("mean and 95% bootstrap CI over seeds", x_axis)
    for i, (g, band) in enumerate(zip(groups, bands, strict=True)):
        if band.x.size:
            _draw(ax, band, f"C{i % 10}", g.label)
    common = {t for b, t in zip(bands, thresholds, strict=True) if b.x.size}
    if len(common) == 1:
        _threshold_line(ax, common.pop())
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_curves(groups: list[Group], bands: list[CurveBand], thresholds: list[float | None],
                out_dir: Path, x_axis: str) -> list[tuple[str, Path]] | None:
    """One PNG per group and ``curves.png`` for them all; None if matplotlib is missing."""
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return None
    written: list[tuple[str, Path]] = []
    used: set[str] = set()
    for i, (g, band, threshold) in enumerate(zip(groups, bands, thresholds, strict=True)):
        if band.x.size == 0:
            continue
        fig = _plot_group(g, band, threshold, f"C{i % 10}", x_axis)
        name = slugify(g.label)
        while name in used:
            name += "_"
        used.add(name)
        path = out_dir / f"curve_{name}.png"
        fig.savefig(path)
        written.append((g.label, path))
    if sum(1 for b in bands if b.x.size) > 1:
        path = out_dir / "curves.png"
        _plot_all(groups, bands, thresholds, x_axis).savefig(path)
        written.append(("all groups", path))
    return written
