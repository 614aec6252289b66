"""Grouping runs by their configuration minus the seed, labelling each group by what tells it
apart, and each group's statistics (:class:`GroupStats`)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drlrun.report.runs import RUNNING, RunRecord, finite
from drlrun.report.stats import bootstrap_ci, iqm, median

# Keys that never change what a run learns: they are not part of a group's identity.
IGNORED_KEYS = frozenset({"seed", "debug", "torch_threads"})
IGNORED_PREFIXES = ("log.", "checkpoint.")
# A component's name key; its other keys are implied by it unless they vary within one name.
COMPONENT_NAME_KEYS = {"algo": "algo.name", "env": "env.id", "network": "network.name",
                       "buffer": "buffer.name"}
SHORT_NAMES = {v: k for k, v in COMPONENT_NAME_KEYS.items()}
MISSING = "<unset>"


def identity_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The part of a flattened config that can change results: what a group is made of."""
    return {k: v for k, v in flat.items()
            if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}


def _canon(value: Any) -> str:
    return value if value is MISSING else json.dumps(value, sort_keys=True, default=str)


def display(value: Any) -> str:
    """A config value as the report shows it (``-`` for a key a run does not have)."""
    if value is MISSING:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


@dataclass
class Group:
    """Runs with the same configuration except the seed."""

    config: dict[str, Any]
    runs: list[RunRecord]
    label: str = ""
    label_values: dict[str, str] = field(default_factory=dict)

    @property
    def counted(self) -> list[RunRecord]:
        return [r for r in self.runs if r.counted]

    @property
    def running(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == RUNNING]

    @property
    def excluded(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.counted and r.status != RUNNING]


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


def group_runs(runs: list[RunRecord]) -> list[Group]:
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
        g.label_values = {SHORT_NAMES.get(k, k): display(g.config.get(k, MISSING))
                          for k in label_keys}
        g.label = " ".join(f"{k}={v}" for k, v in g.label_values.items())
    return result


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


def _train_speed(run: RunRecord) -> float | None:
    summary = run.summary or {}
    speed = finite(summary.get("train_steps_per_second"))
    return speed if speed is not None else finite(summary.get("steps_per_second"))


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
    speeds = [s for s in map(_train_speed, counted) if s is not None]
    return GroupStats(
        seeds=len(counted), failed=len(group.excluded), running=len(group.running),
        mean=float(np.mean(finals)) if finals else math.nan, ci_low=low, ci_high=high,
        iqm=iqm(finals), threshold=group_threshold, judged=judged, successes=successes,
        solved=len(solve_times), median_seconds_to_solve=median(solve_times),
        median_train_sps=median(speeds))
