"""Imports the built-in components so that their ``@register`` decorators run."""

from __future__ import annotations


def load_builtin_components() -> None:
    import drlrun.algos.dqn  # noqa: F401
    import drlrun.buffers.prioritized  # noqa: F401
    import drlrun.buffers.replay  # noqa: F401
    import drlrun.nets  # noqa: F401
