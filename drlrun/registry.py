"""One small registry type, used for algorithms, networks and buffers.

Built-in components register themselves with a decorator when their module is imported.
Third-party packages add components through a Python entry-point group (``drlrun.algos``,
``drlrun.networks``, ``drlrun.buffers``): the entry point's name is the registry name and its
object is the class, loaded only when a name is looked up or listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from drlrun.errors import DrlrunError, choices_hint

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes (or factories) of one kind of component."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ALGOS.register("dqn")`` above a class."""

        def decorator(obj: T) -> T:
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                raise DrlrunError(f"{self.kind} {name!r} is registered twice ({existing!r} and {obj!r}).")
            self._items[name] = obj
            return obj

        return decorator

    def load_plugins(self) -> None:
        """Import the classes that installed packages declare in this registry's entry-point group."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._items:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not break the whole tool
                raise DrlrunError(
                    f"The {self.kind} plug-in {ep.name!r} ({ep.value}) failed to import: {exc}"
                ) from exc
            self._items.setdefault(ep.name, obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            self.load_plugins()
        if name not in self._items:
            raise DrlrunError(f"Unknown {self.kind} {name!r}. {choices_hint(name, self.names())}")
        return self._items[name]

    def build(self, name: str, *args: object, **kwargs: object) -> object:
        """Look up ``name`` and call it with the given arguments."""
        factory = self.get(name)
        return factory(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self.load_plugins()
        yield from sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        if name not in self._items:
            self.load_plugins()
        return name in self._items


ALGOS: Registry[type] = Registry("algorithm", "drlrun.algos")
NETWORKS: Registry[type] = Registry("network", "drlrun.networks")
BUFFERS: Registry[type] = Registry("buffer", "drlrun.buffers")
