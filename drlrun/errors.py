"""User-facing errors.

Anything a user can cause (a bad name, a bad value, a foreign checkpoint) is raised as a
:class:`DrlrunError`. The CLI prints its message as one paragraph and exits non-zero without a
traceback; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DrlrunError(Exception):
    """An error the user can fix; its message says what was wrong and what would be valid."""


def choices_hint(value: str, choices: Iterable[str], *, limit: int = 40) -> str:
    """Return 'Did you mean ...? Valid choices: ...' for an unknown ``value``."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(value, options, n=3, cutoff=0.5)
    hint = f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    shown = ", ".join(options[:limit])
    more = f", ... ({len(options) - limit} more)" if len(options) > limit else ""
    return f"{hint}Valid choices: {shown}{more}."
