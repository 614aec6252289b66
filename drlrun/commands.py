"""What drlrun's commands share: exit statuses, the one-paragraph error, and the
``RUN_DIR key=value ...`` command line of drlrun-eval and drlrun-export.

User errors (:class:`DrlrunError`) print as one paragraph and exit with status 2; ``debug=true``
shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape

from drlrun.compose import build_section
from drlrun.config import check_ranges
from drlrun.errors import DrlrunError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_ENVS_FAILED = 4  # the environments could step no further (a Ray actor died); a checkpoint was saved
EXIT_SWEEP_FAILURES = 1
console = Console(stderr=True)


def print_error(exc: BaseException, title: str = "[bold red]drlrun error:[/]") -> None:
    # (Hydra's task function reaches the console only through module functions such as this one:
    # Hydra's joblib launcher pickles it by value, and a Console cannot be pickled.)
    # (the message is text, not markup: "pip install 'drlrun[minatar]'" must keep its brackets)
    console.print(f"{title} {escape(str(exc))}", highlight=False, soft_wrap=True)


def parse_args(argv: list[str], cls: type, usage: str) -> tuple[Path, Any]:
    """``RUN_DIR key=value ...`` -> (run directory, a range-checked ``cls``)."""
    if not argv or argv[0] in ("-h", "--help"):
        def shown(value: Any) -> str:
            return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        fields = "\n".join(f"  {f.name + '=' + shown(f.default):<22} {f.metadata.get('help', '')}"
                           for f in dataclasses.fields(cls))
        print(f"usage: {usage}\n\n{fields}", file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    run_dir, rest = Path(argv[0]).expanduser(), argv[1:]
    bad = [a for a in rest if "=" not in a]
    if bad:
        raise DrlrunError(f"Arguments are key=value; got {bad[0]!r}. Valid keys: "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}.")
    values = OmegaConf.to_container(OmegaConf.from_dotlist(rest))
    assert isinstance(values, dict)
    args = build_section(cls, values, "")
    check_ranges(args, "")
    return run_dir, args


def run_command(argv: list[str] | None, cls: type, usage: str, action: Any) -> tuple[Path, Any]:
    """Parse ``RUN_DIR key=value ...`` into ``cls`` and return ``(run_dir, action(run_dir, args))``;
    a user error prints as one paragraph and exits 2 (``debug=true`` shows the traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        run_dir, args = parse_args(argv, cls, usage)
        return run_dir, action(run_dir, args)
    except DrlrunError as exc:
        if "debug=true" in argv:
            raise
        print_error(exc)
        sys.exit(EXIT_USER_ERROR)
