"""A tiny name -> callable registry, so that every algorithm is chosen from config by name.

Adding an algorithm is one decorated function::

    @register_advantage_estimator("my_estimator")
    def my_estimator(*, token_rewards, values, response_mask, group_ids, gamma, lam, **options): ...

Lookups of unknown names raise a ``KeyError`` that lists the valid names, so a typo in a config
fails at start-up with the fix in the message rather than deep inside a training step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Map names to objects (usually functions). ``kind`` names what is registered, for errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name``; a duplicate name is an error."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                # Silent overriding would make the chosen algorithm depend on import order.
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``KeyError`` listing the valid names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
