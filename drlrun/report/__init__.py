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

One module per job, each importing only those above it in this list:

- :mod:`~drlrun.report.stats`: the statistics, small pure functions (:func:`iqm`,
  :func:`bootstrap_ci`, :func:`aggregate_curves`) that can be tested and reused on their own;
- :mod:`~drlrun.report.runs`: finding run directories and reading each into a :class:`RunRecord`;
- :mod:`~drlrun.report.groups`: grouping runs, labelling the groups, each group's statistics;
- :mod:`~drlrun.report.write` and :mod:`~drlrun.report.plots`: report.csv, report.md, the PNGs;
- :mod:`~drlrun.report.cli`: the command line (:func:`main`, the console script).
"""

from drlrun.report.cli import main
from drlrun.report.groups import Group, GroupStats, group_runs, group_stats
from drlrun.report.runs import RunRecord, find_run_dirs, read_run
from drlrun.report.stats import CurveBand, aggregate_curves, bootstrap_ci, iqm

__all__ = ["CurveBand", "Group", "GroupStats", "RunRecord", "aggregate_curves", "bootstrap_ci",
           "find_run_dirs", "group_runs", "group_stats", "iqm", "main", "read_run"]
