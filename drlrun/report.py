"""``drlrun-report PATH...``: compare runs across seeds and configurations.

Give it any mix of run directories and sweep directories (searched recursively). Runs are grouped
by their composed configuration minus the seed (and minus settings that cannot change results:
``log.*``, ``checkpoint.*``, ``debug``, ``torch_threads``); each group gets one row with its seed
count, the mean final evaluation return with a 95% bootstrap confidence interval, the
interquartile mean, the success rate, the median time to solve and the median training speed.
The table is printed and written as ``report.csv`` and ``report.md``, with one learning-curve PNG
per group (mean and 95% bootstrap band over seeds) and ``curves.png`` comparing the groups.

Which runs count: a *completed* run contributes its summary's ``final_return_mean``. A run with no
summary.json yet is *running*: it is counted as such and drawn in the curves, but not used in the
statistics (its final return is not known). A run whose summary has any other status (failed,
diverged, interrupted, ...) is listed with its error and left out of both.

The statistics are small pure functions (:func:`iqm`, :func:`bootstrap_ci`,
:func:`aggregate_curves`) so they can be tested and reused on their own.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drlrun.errors import DrlrunError

EXIT_USER_ERROR = 2
CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

COMPLETED = "completed"
RUNNING = "running"
EVAL_KEY = "eval/return_mean"
TIME_KEY = "eval/train_seconds"

# Keys that never change what a run learns: they are not part of a group's identity.
IGNORED_KEYS = frozenset({"seed", "debug", "torch_threads"})
IGNORED_PREFIXES = ("log.", "checkpoint.")
# A component's name key; its other keys are implied by it unless they vary within one name.
COMPONENT_NAME_KEYS = {"algo": "algo.name", "env": "env.id", "network": "network.name",
                       "buffer": "buffer.name"}
SHORT_NAMES = {v: k for k, v in COMPONENT_NAME_KEYS.items()}
MISSING = "<unset>"
# What summary.json records of the machine (drlrun.runner.machine): part of a group's identity.
MACHINE_KEYS = ("cpu", "numeric_path", "gpu")

RUN_DIR_HINT = ("A run directory is what `drlrun` writes for each run (outputs/<date>/<time>_..., "
                "or a job directory of a sweep under outputs/multirun/<date>/<time>/): it holds "
                "summary.json, metrics.jsonl or .hydra/config.yaml.")


# --------------------------------------------------------------------------- statistics
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
    runs = []
    for xs, ys in curves:
        points: dict[float, float] = {}  # a repeated x (a resumed run): the later value wins
        for x, y in zip(xs, ys, strict=True):
            if math.isfinite(x) and math.isfinite(y):
                points[float(x)] = float(y)
        if points:
            order = sorted(points)
            runs.append((np.array(order), np.array([points[x] for x in order])))
    if not runs:
        empty = np.empty(0)
        return CurveBand(empty, empty, empty, empty, np.empty(0, dtype=int))
    grid = np.unique(np.concatenate([x for x, _ in runs]))
    values = np.full((len(runs), grid.size), np.nan)
    for i, (x, y) in enumerate(runs):
        reached = (grid >= x[0]) & (grid <= x[-1])
        values[i, reached] = np.interp(grid[reached], x, y)
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    mean = np.nanmean(values, axis=0)
    low, high = np.empty(grid.size), np.empty(grid.size)
    # Points over the same set of runs are bootstrapped together (one resampling of those runs).
    by_runs: dict[bytes, list[int]] = {}
    for j in range(grid.size):
        by_runs.setdefault(present[:, j].tobytes(), []).append(j)
    for columns in by_runs.values():
        block = values[present[:, columns[0]]][:, columns]
        low[columns], high[columns] = _bootstrap_bounds(block, confidence, resamples, seed)
    return CurveBand(grid, mean, low, high, count)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else math.nan


# --------------------------------------------------------------------------- reading runs
def _natural_key(text: str) -> list[Any]:
    """'2_seed=2' before '10_seed=10' (sweep job numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("summary.json", "metrics.jsonl",
                                                     ".hydra/config.yaml"))


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories at or under ``root`` (hidden directories and run directories' insides are
    not searched), in natural order so a sweep's jobs come as numbered."""
    if is_run_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames.clear()
            continue
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_natural_key)
    return found


def flatten_config(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: {'algo': {'lr': 0.001}} -> {'algo.lr': 0.001}."""
    if not isinstance(obj, dict):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, full))
        else:
            out[full] = value
    return out


def identity_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The part of a flattened config that can change results: what a group is made of."""
    return {k: v for k, v in flat.items()
            if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}


def _canon(value: Any) -> str:
    return value if value is MISSING else json.dumps(value, sort_keys=True, default=str)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Run:
    """One run directory as read from disk."""

    path: Path
    config: dict[str, Any]                 # flattened .hydra/config.yaml ({} if none)
    summary: dict[str, Any] | None         # summary.json (None while running)
    evals: list[dict[str, Any]]            # evaluation rows of metrics.jsonl, by step
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.summary is None:
            return RUNNING
        return str(self.summary.get("status") or COMPLETED)

    @property
    def final_return(self) -> float | None:
        """The summary's final evaluation mean (completed runs)."""
        return _finite(self.summary.get("final_return_mean")) if self.summary else None

    @property
    def counted(self) -> bool:
        """In the return statistics: completed, with a final return."""
        return self.status == COMPLETED and self.final_return is not None

    @property
    def seed(self) -> Any:
        if self.summary and self.summary.get("seed") is not None:
            return self.summary["seed"]
        return self.config.get("seed")

    @property
    def algo(self) -> str:
        value = self.config.get("algo.name") or (self.summary or {}).get("algo")
        return str(value) if value else "unknown-algo"

    @property
    def env(self) -> str:
        value = self.config.get("env.id") or (self.summary or {}).get("env")
        return str(value) if value else "unknown-env"

    def threshold(self, override: float | None) -> float | None:
        """--threshold, else the one the run used (summary), else its config's."""
        if override is not None:
            return override
        for value in ((self.summary or {}).get("threshold"), self.config.get("eval.target_return"),
                      self.config.get("env.threshold")):
            if _finite(value) is not None:
                return float(value)
        return None

    def curve(self, x_axis: str) -> tuple[list[float], list[float]]:
        """(x, eval return) pairs: x is the env step or the training seconds."""
        xs, ys = [], []
        for row in self.evals:
            x = _finite(row.get("step") if x_axis == "step" else row.get(TIME_KEY))
            y = _finite(row.get(EVAL_KEY))
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        return xs, ys

    def seconds_to_solve(self, threshold: float) -> float | None:
        """Training seconds (evaluation excluded) until the first evaluation >= threshold."""
        summary = self.summary or {}
        if summary.get("threshold") == threshold and "solved_at_step" in summary:
            if summary.get("solved_at_step") is None:
                return None
            if _finite(summary.get("solved_at_seconds")) is not None:
                return float(summary["solved_at_seconds"])
        for row in self.evals:
            value = _finite(row.get(EVAL_KEY))
            if value is not None and value >= threshold:
                return _finite(row.get(TIME_KEY))
        return None


def _read_evals(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    by_step: dict[float, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        notes.append(f"metrics.jsonl unreadable ({exc.strerror})")
        return []
    for line in text.splitlines():
        if EVAL_KEY not in line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written by a live run, or a torn one
        if isinstance(row, dict) and _finite(row.get("step")) is not None:
            by_step[row["step"]] = row  # a resumed run may repeat a step: the last one wins
    return [by_step[s] for s in sorted(by_step)]


def read_run(path: Path) -> Run:
    """Read what a run directory holds; anything missing or unreadable is noted, not fatal."""
    notes: list[str] = []
    summary = None
    if (path / "summary.json").is_file():
        try:
            loaded = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = None
        # summary.json is written atomically, so a bad one is not a live run: list it as such.
        summary = loaded if isinstance(loaded, dict) else {
            "status": "unreadable", "error": "summary.json is not a readable JSON object"}
    config: dict[str, Any] = {}
    config_path = path / ".hydra" / "config.yaml"
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            config = flatten_config(loaded) if isinstance(loaded, dict) else {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            notes.append(".hydra/config.yaml unreadable: grouped by algo and env only")
    metrics = path / "metrics.jsonl"
    evals = _read_evals(metrics, notes) if metrics.is_file() else []
    if not config:
        source = summary or {}
        config = {"algo.name": source.get("algo", "unknown-algo"),
                  "env.id": source.get("env", "unknown-env")}
    for key in MACHINE_KEYS:  # the same seed learns differently on another CPU or numeric path
        if summary and key in summary:
            config[f"machine.{key}"] = summary[key]
    return Run(path, config, summary, evals, notes)


# --------------------------------------------------------------------------- grouping
@dataclass
class Group:
    """Runs with the same configuration except the seed."""

    config: dict[str, Any]
    runs: list[Run]
    label: str = ""
    label_values: dict[str, str] = field(default_factory=dict)

    @property
    def counted(self) -> list[Run]:
        return [r for r in self.runs if r.counted]

    @property
    def running(self) -> list[Run]:
        return [r for r in self.runs if r.status == RUNNING]

    @property
    def excluded(self) -> list[Run]:
        return [r for r in self.runs if not r.counted and r.status != RUNNING]


def _display(value: Any) -> str:
    if value is MISSING:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _label_keys(groups: list[Group]) -> list[str]:
    """The keys that tell the groups apart, shortest description first.

    A key whose value differs between groups is kept, except a component's setting that only
    differs because the component does (e.g. every ``algo.*`` default when comparing dqn with
    sac): it is dropped when, among the groups with the same component name, it never varies.
    """
    keys = sorted({k for g in groups for k in g.config})

    def value(g: Group, key: str) -> str:
        return _canon(g.config.get(key, MISSING))
    differing = [k for k in keys if len({value(g, k) for g in groups}) > 1]
    kept = []
    for key in differing:
        component = key.split(".", 1)[0]
        name_key = COMPONENT_NAME_KEYS.get(component)
        if name_key and key != name_key and name_key in differing:
            by_name: dict[str, set[str]] = {}
            for g in groups:
                by_name.setdefault(value(g, name_key), set()).add(value(g, key))
            if all(len(v) == 1 for v in by_name.values()):
                continue
        kept.append(key)
    first = list(COMPONENT_NAME_KEYS.values())
    return sorted(kept, key=lambda k: (first.index(k) if k in first else len(first), k))


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs by their configuration minus the seed, in the order the runs were found, and
    label each group by what tells it apart (``algo env`` when there is only one)."""
    groups: dict[tuple[tuple[str, str], ...], Group] = {}
    for run in runs:
        identity = identity_config(run.config)
        key = tuple(sorted((k, _canon(v)) for k, v in identity.items()))
        groups.setdefault(key, Group(identity, [])).runs.append(run)
    result = list(groups.values())
    if len(result) == 1:
        only = result[0]
        only.label = f"{only.runs[0].algo} {only.runs[0].env}"
        return result
    label_keys = _label_keys(result)
    for g in result:
        g.label_values = {SHORT_NAMES.get(k, k): _display(g.config.get(k, MISSING))
                          for k in label_keys}
        g.label = " ".join(f"{k}={v}" for k, v in g.label_values.items())
    return result


# --------------------------------------------------------------------------- statistics per group
@dataclass
class GroupStats:
    seeds: int
    failed: int
    running: int
    mean: float
    ci_low: float
    ci_high: float
    iqm: float
    threshold: float | None
    judged: int            # counted runs with a known threshold
    successes: int
    solved: int
    median_seconds_to_solve: float
    median_train_sps: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.judged if self.judged else math.nan


def group_stats(group: Group, threshold_override: float | None = None) -> GroupStats:
    counted = group.counted
    finals = [r.final_return for r in counted if r.final_return is not None]
    low, high = bootstrap_ci(finals)
    thresholds = [r.threshold(threshold_override) for r in group.runs]
    known = Counter(t for t in thresholds if t is not None)
    group_threshold = known.most_common(1)[0][0] if known else None
    judged = successes = 0
    solve_times = []
    for run in counted:
        threshold = run.threshold(threshold_override)
        if threshold is None or run.final_return is None:
            continue
        judged += 1
        successes += run.final_return >= threshold
        seconds = run.seconds_to_solve(threshold)
        if seconds is not None:
            solve_times.append(seconds)
    speeds = []
    for run in counted:
        summary = run.summary or {}
        speed = _finite(summary.get("train_steps_per_second"))
        speed = speed if speed is not None else _finite(summary.get("steps_per_second"))
        if speed is not None:
            speeds.append(speed)
    return GroupStats(
        seeds=len(counted), failed=len(group.excluded), running=len(group.running),
        mean=float(np.mean(finals)) if finals else math.nan, ci_low=low, ci_high=high,
        iqm=iqm(finals), threshold=group_threshold, judged=judged, successes=successes,
        solved=len(solve_times), median_seconds_to_solve=_median(solve_times),
        median_train_sps=_median(speeds))


# --------------------------------------------------------------------------- output
def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _csv_num(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


TABLE_HEADERS = ("group", "seeds", "final return", "95% CI", "IQM", "threshold", "success",
                 "time to solve (median)", "train steps/s")


def table_rows(groups: list[Group], stats: list[GroupStats]) -> list[list[str]]:
    rows = []
    for g, s in zip(groups, stats, strict=True):
        extra = [f"{n} {what}" for n, what in ((s.failed, "failed"), (s.running, "running")) if n]
        seeds = f"{s.seeds}" + (f" (+{', '.join(extra)})" if extra else "")
        success = (f"{s.successes}/{s.judged} ({100 * s.success_rate:.0f}%)" if s.judged else "-")
        seconds = f"{_num(s.median_seconds_to_solve)} s " if s.solved else ""
        solve = f"{seconds}({s.solved}/{s.judged} solved)" if s.judged else "-"
        ci = f"[{_num(s.ci_low)}, {_num(s.ci_high)}]" if s.seeds else "-"
        rows.append([g.label, seeds, _num(s.mean), ci, _num(s.iqm), _num(s.threshold), success,
                     solve, _num(s.median_train_sps)])
    return rows


def excluded_rows(groups: list[Group], out_dir: Path) -> list[list[str]]:
    """Runs not in the statistics: running, failed, diverged, ..."""
    rows = []
    for g in groups:
        for run in g.runs:
            if run.counted:
                continue
            last = run.evals[-1] if run.evals else None
            last_text = (f"{_num(_finite(last.get(EVAL_KEY)))} at step {_num(_finite(last.get('step')))}"
                         if last else "-")
            summary = run.summary or {}
            if run.status == RUNNING:
                note = "no summary.json yet (still running, or stopped without one)"
            elif run.status == COMPLETED:
                note = "completed without a final return"
            else:
                note = str(summary.get("error") or "")
            rows.append([g.label, _display(run.seed), run.status, last_text, note,
                         _relative(run.path, out_dir)])
    return rows


EXCLUDED_HEADERS = ("group", "seed", "status", "last eval", "error / note", "run directory")


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def write_csv(path: Path, groups: list[Group], stats: list[GroupStats]) -> None:
    label_columns = list(dict.fromkeys(k for g in groups for k in g.label_values
                                       if k not in ("algo", "env")))
    header = ["group", "algo", "env", *label_columns, "seeds", "failed", "running",
              "final_return_mean", "ci95_low", "ci95_high", "iqm", "threshold", "successes",
              "success_rate", "solved", "median_seconds_to_solve", "median_train_steps_per_second"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for g, s in zip(groups, stats, strict=True):
            writer.writerow([
                g.label, g.runs[0].algo, g.runs[0].env,
                *(g.label_values.get(k, "") for k in label_columns),
                s.seeds, s.failed, s.running, _csv_num(s.mean), _csv_num(s.ci_low),
                _csv_num(s.ci_high), _csv_num(s.iqm), _csv_num(s.threshold),
                s.successes if s.judged else "", _csv_num(s.success_rate), s.solved,
                _csv_num(s.median_seconds_to_solve), _csv_num(s.median_train_sps)])


def _markdown_table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def machines(runs: list[Run]) -> list[str]:
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
    lines = [f"# {title}", "",
             "Final return: mean over completed seeds of each run's final evaluation; 95% CI: "
             "percentile bootstrap of that mean (10,000 resamples); IQM: interquartile mean; "
             "success: final return >= threshold; time to solve: training seconds (evaluation "
             "excluded) to the first evaluation >= threshold, median over the runs that did.", ""]
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


def slugify(label: str) -> str:
    """A file-name-safe version of a group label."""
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", label).strip("_")[:120] or "group"


X_LABELS = {"step": "environment steps", "time": "training seconds (evaluation excluded)"}


def plot_curves(groups: list[Group], bands: list[CurveBand], thresholds: list[float | None],
                out_dir: Path, x_axis: str) -> list[tuple[str, Path]] | None:
    """One PNG per group and ``curves.png`` for them all; None if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    def new_axes(title: str) -> tuple[Any, Any]:
        fig = Figure(figsize=(8, 5), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.set_xlabel(X_LABELS[x_axis])
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        return fig, ax

    def draw(ax: Any, band: CurveBand, color: str, label: str) -> None:
        ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.25, linewidth=0)
        ax.plot(band.x, band.mean, color=color, label=label)

    def threshold_line(ax: Any, threshold: float | None) -> None:
        if threshold is not None:
            ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1,
                       label=f"threshold {threshold:g}")

    written: list[tuple[str, Path]] = []
    used: set[str] = set()
    for i, (g, band, threshold) in enumerate(zip(groups, bands, thresholds, strict=True)):
        if band.x.size == 0:
            continue
        fig, ax = new_axes(g.label)
        color = f"C{i % 10}"
        for run in g.runs:
            if run.counted or run.status == RUNNING:
                xs, ys = run.curve(x_axis)
                ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
        most = int(band.count.max())
        of = f"of {most}" if band.count.min() == most else f"of up to {most}"
        draw(ax, band, color, f"mean {of} run{'s' * (most != 1)}, 95% bootstrap CI")
        threshold_line(ax, threshold)
        ax.legend(loc="best")
        name = slugify(g.label)
        while name in used:
            name += "_"
        used.add(name)
        path = out_dir / f"curve_{name}.png"
        fig.savefig(path)
        written.append((g.label, path))
    drawn = [(g, b, t) for g, b, t in zip(groups, bands, thresholds, strict=True) if b.x.size]
    if len(drawn) > 1:
        fig, ax = new_axes("mean and 95% bootstrap CI over seeds")
        for i, (g, band, _t) in enumerate(zip(groups, bands, thresholds, strict=True)):
            if band.x.size:
                draw(ax, band, f"C{i % 10}", g.label)
        common = {t for _g, _b, t in drawn}
        if len(common) == 1:
            threshold_line(ax, common.pop())
        ax.legend(loc="best", fontsize="small")
        path = out_dir / "curves.png"
        fig.savefig(path)
        written.append(("all groups", path))
    return written


# --------------------------------------------------------------------------- command line
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


def resolve_roots(paths: Sequence[str]) -> list[Path]:
    """The given paths as existing directories (a run's summary.json or metrics.jsonl stands for
    its run directory, a sweep's multirun.yaml for the sweep); every bad one is named in one
    error."""
    roots, missing, files = [], [], []
    for text in paths:
        path = Path(text).expanduser()
        if not path.exists():
            missing.append(text)
        elif path.is_file():
            if path.name in ("summary.json", "metrics.jsonl", "multirun.yaml"):
                roots.append(path.resolve().parent)
            else:
                files.append(text)
        else:
            roots.append(path.resolve())
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise DrlrunError(f"{names} {'does' if len(missing) == 1 else 'do'} not exist. Give run "
                          "directories or sweep directories, e.g. drlrun-report outputs/multirun/"
                          "<date>/<time>.")
    if files:
        names = ", ".join(f"'{f}'" for f in files)
        raise DrlrunError(f"{names} {'is a file' if len(files) == 1 else 'are files'}, not a run "
                          f"or sweep directory. {RUN_DIR_HINT}")
    return roots


def collect_runs(roots: list[Path]) -> list[Run]:
    seen: dict[Path, None] = {}
    empty = []
    for root in roots:
        found = find_run_dirs(root)
        if not found:
            empty.append(root)
        seen.update(dict.fromkeys(found))
    if empty:
        names = ", ".join(f"'{_relative(p, Path.cwd())}'" for p in empty)
        raise DrlrunError(f"No runs found under {names}. {RUN_DIR_HINT}")
    return [read_run(path) for path in seen]


def report(args: argparse.Namespace, out: Console, err: Console) -> int:
    roots = resolve_roots(args.paths)
    runs = collect_runs(roots)
    out_dir = args.out.expanduser().resolve() if args.out else Path(os.path.commonpath(roots))
    groups = group_runs(runs)
    stats = [group_stats(g, args.threshold) for g in groups]
    for g in groups:
        seeds = Counter(_display(r.seed) for r in g.runs)
        twice = sorted((s for s, n in seeds.items() if n > 1), key=_natural_key)
        if twice:
            err.print(f"[yellow]note:[/] {escape(g.label)}: seed {escape(', '.join(twice))} appears more than "
                      "once; each run counts.", highlight=False, soft_wrap=True)
        for run in g.runs:
            for note in run.notes:
                err.print(f"[yellow]note:[/] {escape(_relative(run.path, Path.cwd()))}: {escape(note)}",
                          highlight=False, soft_wrap=True)

    rows = table_rows(groups, stats)
    excluded = excluded_rows(groups, out_dir)
    title = f"drlrun report: {len(runs)} run{'s' * (len(runs) != 1)} in {len(groups)} " \
            f"group{'s' * (len(groups) != 1)}"
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(TABLE_HEADERS):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    out.print(table)
    measured_on = machines(runs)
    if measured_on:
        out.print(f"Measured on: {'; '.join(measured_on)}", markup=False, highlight=False, soft_wrap=True)
    if excluded:
        listing = Table(title="Runs not in the statistics", title_justify="left")
        for header in EXCLUDED_HEADERS:
            listing.add_column(header, overflow="fold")
        for row in excluded:
            listing.add_row(*map(escape, row))
        out.print(listing)

    bands, thresholds = [], []
    for g, s in zip(groups, stats, strict=True):
        curves = [r.curve(args.x_axis) for r in g.runs if r.counted or r.status == RUNNING]
        bands.append(aggregate_curves(curves))
        thresholds.append(s.threshold)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        images = plot_curves(groups, bands, thresholds, out_dir, args.x_axis)
        write_csv(out_dir / "report.csv", groups, stats)
        write_markdown(out_dir / "report.md", title, rows, excluded, images or [], measured_on)
    except OSError as exc:
        raise DrlrunError(f"Cannot write the report to '{out_dir}': {exc.strerror or exc}. "
                          "Choose another directory with --out DIR.") from exc
    names = ["report.csv", "report.md", *(p.name for _label, p in images or [])]
    out.print(f"Wrote {', '.join(names)} to {out_dir}", markup=False, highlight=False,
              soft_wrap=True)
    if images is None:
        out.print("Learning-curve PNGs need matplotlib: pip install 'drlrun[report]'",
                  markup=False, highlight=False, soft_wrap=True)
    elif not images:
        out.print("No evaluation rows in metrics.jsonl: no learning curves to draw.",
                  markup=False, highlight=False, soft_wrap=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: ``drlrun-report PATH... [--out DIR] [--x step|time]
    [--threshold X]``. Exit status 0, or 2 for a bad path (one paragraph, no traceback)."""
    args = _parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        return report(args, Console(), err)
    except DrlrunError as exc:
        err.print(f"[bold red]drlrun-report error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
