"""The statistics of drlrun-report, as small pure functions: the interquartile mean, the
percentile bootstrap interval of a mean, and learning curves aggregated over runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half of ``values``.

    Why: with a handful of seeds one outlier (a seed that never learns, or a lucky one) moves the
    mean a lot, while the median uses only one or two values. The IQM (Agarwal et al., 2021,
    "Deep RL at the Edge of the Statistical Precipice") discards the lowest and highest quarter
    and averages the rest, so it is robust and still uses half of the data.

    ``int(0.25 * n)`` values are cut from each end of the sorted values, the same definition as
    ``scipy.stats.trim_mean(values, 0.25)``; with fewer than 4 values nothing is cut and the IQM
    is the plain mean. NaN for no values.
    """
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0:
        return math.nan
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return float(np.median(values)) if len(values) else math.nan


def _bootstrap_bounds(samples: np.ndarray, confidence: float, resamples: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap bounds of the column means of ``samples`` (n rows x P columns).

    Every column is resampled with the same draws (the rows are runs, the columns are x values of
    a curve, so a run is in or out of a resample as a whole), and the same ``seed`` gives the
    same draws: a curve point and a table cell over the same values get the same interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, columns = samples.shape
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    # counts[r, i]: how often run i is in resample r; a resample's mean is counts @ values / n.
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(),
                         minlength=resamples * n).reshape(resamples, n).astype(float)
    alpha = 1.0 - confidence
    low, high = np.empty(columns), np.empty(columns)
    step = max(1, 4_000_000 // resamples)  # columns at a time: bounded memory for long curves
    for start in range(0, columns, step):
        block = samples[:, start:start + step]
        means = counts @ block / n
        lo, hi = np.percentile(means, [50.0 * alpha, 100.0 - 50.0 * alpha], axis=0)
        # A mean of resampled values lies within [min, max]; the clip only removes the rounding of
        # the sums, so that n equal values give exactly that value.
        low[start:start + step] = np.clip(lo, block.min(axis=0), block.max(axis=0))
        high[start:start + step] = np.clip(hi, block.min(axis=0), block.max(axis=0))
    return low, high


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Why: final returns over a few seeds are seldom normal (often bimodal: solved or not), so a
    t-interval can be far off; the bootstrap makes no assumption about their shape. Draw
    ``resamples`` resamples of the values with replacement, take each one's mean, and report the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of those means. The fixed
    ``seed`` makes the report print the same numbers every time.

    Read it with care for very few seeds: the interval never leaves [min, max] of the values
    and is too narrow for n < 5 or so; it describes the spread seen, it does not promise coverage.
    ``(v, v)`` for one value, ``(nan, nan)`` for none.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    low, high = _bootstrap_bounds(x[:, None], confidence, resamples, seed)
    return (float(low[0]), float(high[0]))


@dataclass(frozen=True)
class CurveBand:
    """A learning curve aggregated over runs: at each ``x``, the mean of the runs that reached it,
    its bootstrap interval ``[low, high]`` and ``count``, how many runs it is over."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray


def _finite_curve(xs: Sequence[float], ys: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's finite points sorted by x, a repeated x (a resumed run) keeping its later value;
    None if it has none."""
    points: dict[float, float] = {}
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(x) and math.isfinite(y):
            points[float(x)] = float(y)
    if not points:
        return None
    order = sorted(points)
    return np.array(order), np.array([points[x] for x in order])


def aggregate_curves(curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                     confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> CurveBand:
    """Mean and bootstrap band over runs of curves ``(x, y)`` evaluated at different x.

    Why: runs of one configuration rarely share their x values. Early-stopped and still-running
    runs end sooner, and on a training-seconds axis no two runs evaluate at the same x. So the
    grid is the union of every run's x values; at each grid x, a run contributes if it has reached
    x (its first x <= x <= its last x), its value linearly interpolated between its two
    neighbouring evaluations. A run is never extrapolated past its last evaluation: a run that
    stopped at 50k steps says nothing about 100k. ``count`` shows how many runs each point is
    over; where it drops, the mean is over the runs that went on (which may be a biased few).
    """
    runs = [run for run in (_finite_curve(xs, ys) for xs, ys in curves) if run is not None]
    if not runs:
        empty = np.empty(0)
        return CurveBand(empty, empty, empty, empty, np.empty(0, dtype=int))
    grid = np.unique(np.concatenate([x for x, _ in runs]))
    values = np.full((len(runs), grid.size), np.nan)
    for i, (x, y) in enumerate(runs):
        reached = (grid >= x[0]) & (grid <= x[-1])
        values[i, reached] = np.interp(grid[reached], x, y)
    present = ~np.isnan(values)
    low, high = np.empty(grid.size), np.empty(grid.size)
    # Points over the same set of runs are bootstrapped together (one resampling of those runs).
    by_runs: dict[bytes, list[int]] = {}
    for j in range(grid.size):
        by_runs.setdefault(present[:, j].tobytes(), []).append(j)
    for columns in by_runs.values():
        block = values[present[:, columns[0]]][:, columns]
        low[columns], high[columns] = _bootstrap_bounds(block, confidence, resamples, seed)
    return CurveBand(grid, np.nanmean(values, axis=0), low, high, present.sum(axis=0))
