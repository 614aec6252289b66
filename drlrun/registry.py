"""One small registry type, used for algorithms, networks, buffers and loggers.

Every component, built-in or not, is found the same way: through a Python entry-point group
(``drlrun.algos``, ``drlrun.networks``, ``drlrun.buffers``, ``drlrun.loggers``) whose entry's name
is the registry name and whose object is the class. drlrun declares its own in ``pyproject.toml``; a plug-in
package declares its own in its ``pyproject.toml``. There is no hand-kept import list: a
component is imported only when its name is looked up (or when all are listed), and checked
against its contract (``drlrun/agent.py``; loggers: ``drlrun/sink.py``) as it is loaded.

:meth:`Registry.register` adds a class in-process (a notebook, a test) without packaging it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from drlrun.agent import check_agent_class, check_component_class
from drlrun.errors import DrlrunError, choices_hint
from drlrun.sink import check_sink_class

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes of one kind of component."""

    def __init__(self, kind: str, entry_point_group: str, check: Callable[[str, str, T], None]) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.check = check  # (kind, name, obj): raises DrlrunError naming what the class lacks
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None
        self.broken: dict[str, DrlrunError] = {}  # entry points that failed to import or to pass the check

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ALGOS.register("myalgo")`` above a class defined in-process."""

        def decorator(obj: T) -> T:
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                raise DrlrunError(f"{self.kind} {name!r} is registered twice ({existing!r} and {obj!r}).")
            self.check(self.kind, name, obj)
            self._items[name] = obj
            return obj

        return decorator

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The installed packages' entries in this registry's group, by name (not imported)."""
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in metadata.entry_points(group=self.entry_point_group)}
        return self._entry_points

    def _load(self, name: str) -> None:
        """Import and check the entry point ``name``; a failure is kept in :attr:`broken`."""
        ep = self.entry_points().get(name)
        if ep is None or name in self._items or name in self.broken:
            return
        try:
            obj = ep.load()
        except Exception as exc:  # one broken plug-in must not break the others
            self.broken[name] = DrlrunError(f"The {self.kind} plug-in {name!r} ({ep.value}) failed to import: "
                                            f"{type(exc).__name__}: {exc}")
            return
        try:
            self.check(self.kind, name, obj)
        except DrlrunError as exc:
            self.broken[name] = DrlrunError(f"The {self.kind} {name!r} ({ep.value}) cannot be used: {exc}")
            return
        self._items[name] = obj

    def get(self, name: str) -> T:
        self._load(name)
        if name in self.broken:
            raise self.broken[name]
        if name not in self._items:
            raise DrlrunError(f"Unknown {self.kind} {name!r}. {choices_hint(name, self.names())}")
        return self._items[name]

    def build(self, name: str, *args: object, **kwargs: object) -> object:
        """Look up ``name`` and call it with the given arguments."""
        factory = self.get(name)
        return factory(*args, **kwargs)  # type: ignore[operator]

    def load_all(self) -> None:
        for name in self.entry_points():
            self._load(name)

    def names(self) -> list[str]:
        """The usable names (broken plug-ins left out: :attr:`broken` says why)."""
        self.load_all()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self.load_all()
        yield from sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        self._load(name)
        return name in self._items


ALGOS: Registry[type] = Registry("algorithm", "drlrun.algos", check_agent_class)
NETWORKS: Registry[type] = Registry("network", "drlrun.networks", check_component_class)
BUFFERS: Registry[type] = Registry("buffer", "drlrun.buffers", check_component_class)
LOGGERS: Registry[type] = Registry("logger", "drlrun.loggers", check_sink_class)
