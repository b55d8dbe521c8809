"""Name-to-object registries for the extension points (paradigms, algorithms, tasks, rewards, metrics).

An entry is either an object (``add``, ``register``) or *lazy* (``add_lazy``): a ``"module:attribute"``
path imported on the entry's first lookup, with its config model (``Settings``) given at
registration. Lazy entries keep the heavy implementations (torch, transformers, FAISS) out of
everything that only needs the names and the settings: ``harness --help``, ``harness config show``
and every answer to bad input.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """An unknown registry name; the message lists the known names and the closest match."""

    def __str__(self) -> str:  # KeyError quotes its argument; a plain message reads better
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects; refuses duplicates, answers unknown names with the known ones."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attribute", until first looked up
        self._settings: dict[str, Any] = {}  # name -> the entry's config model, known without importing it
        self._order: list[str] = []

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = obj
        self._order.append(name)
        settings = getattr(obj, "Settings", None)
        if settings is not None:
            self._settings[name] = settings

    def add_lazy(self, name: str, target: str, settings: Any) -> None:
        """Register ``name`` now and import ``target`` (``"package.module:attribute"``) on first lookup.

        ``settings`` is the entry's config model, readable at once through ``settings(name)``;
        the imported object must carry the same one as its ``Settings``.
        """
        if name in self:
            raise ValueError(f"{self.what} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"{self.what} {name!r}: target {target!r} must be 'package.module:attribute'")
        self._lazy[name] = target
        self._settings[name] = settings
        self._order.append(name)

    def __getitem__(self, name: str) -> T:
        if name in self._lazy:
            self._load(name)
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        return self._entries[name]

    def _load(self, name: str) -> None:
        module, attribute = self._lazy[name].split(":")
        obj = getattr(importlib.import_module(module), attribute)
        declared = getattr(obj, "Settings", None)
        if declared is not self._settings[name]:
            raise TypeError(
                f"{self.what} {name!r}: {self._lazy[name]} has Settings {declared!r}, "
                f"registered with {self._settings[name]!r}"
            )
        del self._lazy[name]
        self._entries[name] = obj

    def settings(self, name: str) -> Any:
        """The config model of ``name`` (its ``Settings``), without importing a lazy entry."""
        if name not in self:
            raise UnknownName(self.unknown_message(name))
        if name not in self._settings:
            raise TypeError(f"{self.what} {name!r} has no Settings")
        return self._settings[name]

    def unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self.names()))
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}; known: {known}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Every registered name, in registration order (lazy entries included, not imported)."""
        return list(self._order)

    def items(self):
        """(name, object) pairs; imports every lazy entry."""
        return [(name, self[name]) for name in self.names()]
