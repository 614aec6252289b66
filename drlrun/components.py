"""Imports the built-in components so that their ``@register`` decorators run."""

from __future__ import annotations


def load_builtin_components() -> None:
    import drlrun.algos.a2c
    import drlrun.algos.dqn
    import drlrun.algos.ppo
    import drlrun.algos.reinforce
    import drlrun.algos.sac
    import drlrun.algos.td3
    import drlrun.buffers.prioritized
    import drlrun.buffers.replay
    import drlrun.nets  # noqa: F401
