"""Which algorithms the contract, resume and export tests cover: every one installed, found in
the registry (its entry points: drlrun's own and any plug-in's), never a list kept by hand.

A test keeps a table of small settings per algorithm (budgets that still cross checkpoints,
updates and episode ends). An algorithm missing from a test's table is still covered: it runs on
its defaults at that test's budget, on CartPole-v1 or Pendulum-v1 by its action space, and the
test fails if those cannot work, which is the cue to add it to the table.
"""

from __future__ import annotations

from drlrun.registry import ALGOS

INSTALLED = sorted(ALGOS.entry_points())


def default_env(algo: str) -> str:
    return "CartPole-v1" if "discrete" in ALGOS.get(algo).action_spaces else "Pendulum-v1"


def cases(table: dict[str, tuple[str, ...]], total_steps: int) -> dict[str, tuple[str, ...]]:
    """``table`` (case name -> overrides) plus a case for every installed algorithm it lacks."""
    named = {case: overrides for case, overrides in table.items()}
    for algo in INSTALLED:
        if not any(f"algo={algo}" in overrides for overrides in table.values()):
            named[algo] = (f"algo={algo}", f"env={default_env(algo)}", f"total_steps={total_steps}")
    return named
