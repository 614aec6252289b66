"""Learning tests: fixed seeds, small budgets, real outcomes."""

from __future__ import annotations

import json


def test_dqn_preset_solves_cartpole(cli, tmp_path):
    """The embedded default (dqn, CartPole-v1, its tuned preset) reaches the 475 threshold."""
    result = cli("seed=0", "log.progress=false", f"hydra.run.dir={tmp_path / 'run'}", timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_return_mean"] >= 475.0
    assert summary["solved_at_step"] is not None
