"""`Batch`: the one container that flows between workers (rollout, reward, critic, actor).

Three kinds of content, all keyed by name:

* ``tensors``: ``torch.Tensor`` values sharing the first dimension (the batch size);
* ``meta``: per-sample Python values (prompt text, ``"file:line"`` source, group id), one list
  entry per row, so that they follow the rows through ``index``/``split``/``shuffle``/``concat``;
* ``info``: batch-level values (timing, the temperature used) that are not split per row.

Every operation that builds a new ``Batch`` returns a new object; ``tensors``/``meta`` entries
that are not re-indexed are shared, not copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Index = slice | Sequence[int] | torch.Tensor


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, list] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        overlap = self.tensors.keys() & self.meta.keys()
        if overlap:
            raise ValueError(f"keys {sorted(overlap)} are both tensors and meta")
        size, size_key = None, None
        for key, value in [*self.tensors.items(), *self.meta.items()]:
            rows = _rows(key, value)
            if size is None:
                size, size_key = rows, key
            elif rows != size:
                raise ValueError(f"{key!r} has {rows} rows but {size_key!r} has {size}")

    # ----- access -----------------------------------------------------------------------------

    def __len__(self) -> int:
        first = next(iter([*self.tensors.values(), *self.meta.values()]), None)
        return 0 if first is None else len(first)

    def keys(self) -> list[str]:
        """Tensor keys, then meta keys (``info`` is not per-row and is not listed)."""
        return [*self.tensors, *self.meta]

    def __contains__(self, key: str) -> bool:
        return key in self.tensors or key in self.meta

    def __getitem__(self, key: str) -> torch.Tensor | list:
        if key in self.tensors:
            return self.tensors[key]
        if key in self.meta:
            return self.meta[key]
        raise KeyError(f"{key!r} not in batch; keys: {self.keys()}")

    def __setitem__(self, key: str, value: torch.Tensor | list) -> None:
        """Add or replace a tensor (``torch.Tensor``) or a meta list (``list``)."""
        rows = _rows(key, value)
        others = [k for k in self.keys() if k != key]
        if others and rows != len(self):
            raise ValueError(f"{key!r} has {rows} rows but {others[0]!r} has {len(self)}")
        own, other = (self.tensors, self.meta) if isinstance(value, torch.Tensor) else (self.meta, self.tensors)
        other.pop(key, None)
        own[key] = value

    def update(self, **values: torch.Tensor | list) -> None:
        for key, value in values.items():
            self[key] = value

    # ----- row selection ----------------------------------------------------------------------

    def select(self, *keys: str) -> Batch:
        """A batch with only ``keys`` (tensors or meta); ``info`` is kept."""
        missing = [k for k in keys if k not in self]
        if missing:
            raise KeyError(f"{missing} not in batch; keys: {self.keys()}")
        return Batch(
            tensors={k: v for k, v in self.tensors.items() if k in keys},
            meta={k: v for k, v in self.meta.items() if k in keys},
            info=dict(self.info),
        )

    def index(self, idx: Index) -> Batch:
        """Rows picked by a slice, a list of ints, a long tensor of ints or a bool mask of length B."""
        if isinstance(idx, slice):
            return Batch(
                tensors={k: v[idx] for k, v in self.tensors.items()},
                meta={k: v[idx] for k, v in self.meta.items()},
                info=dict(self.info),
            )
        rows = torch.as_tensor(idx, dtype=torch.bool if _is_bool(idx) else torch.long)
        if rows.dtype == torch.bool:
            if rows.shape != (len(self),):
                raise ValueError(f"bool mask of shape {tuple(rows.shape)} for a batch of {len(self)} rows")
            rows = rows.nonzero().flatten()
        positions = rows.tolist()
        return Batch(
            tensors={k: v[rows.to(v.device)] for k, v in self.tensors.items()},
            meta={k: [v[i] for i in positions] for k, v in self.meta.items()},
            info=dict(self.info),
        )

    def split(self, size: int) -> list[Batch]:
        """Consecutive batches of ``size`` rows; the last one may be smaller."""
        if size < 1:
            raise ValueError(f"split size must be >= 1, got {size}")
        return [self.index(slice(start, start + size)) for start in range(0, len(self), size)]

    def chunk(self, n: int) -> list[Batch]:
        """``n`` consecutive batches whose sizes differ by at most one (larger ones first)."""
        if not 1 <= n <= len(self):
            raise ValueError(f"cannot chunk a batch of {len(self)} rows into {n} parts")
        base, extra = divmod(len(self), n)
        chunks, start = [], 0
        for i in range(n):
            stop = start + base + (i < extra)
            chunks.append(self.index(slice(start, stop)))
            start = stop
        return chunks

    def shuffle(self, generator: torch.Generator | None = None) -> Batch:
        return self.index(torch.randperm(len(self), generator=generator))

    def repeat(self, n: int, interleave: bool = True) -> Batch:
        """Each row ``n`` times: ``[a, a, b, b]`` when ``interleave`` (n samples per prompt), else ``[a, b, a, b]``."""
        if n < 1:
            raise ValueError(f"repeat count must be >= 1, got {n}")
        if interleave:
            tensors = {k: v.repeat_interleave(n, dim=0) for k, v in self.tensors.items()}
            meta = {k: [x for x in v for _ in range(n)] for k, v in self.meta.items()}
        else:
            tensors = {k: v.repeat(n, *[1] * (v.dim() - 1)) for k, v in self.tensors.items()}
            meta = {k: v * n for k, v in self.meta.items()}
        return Batch(tensors=tensors, meta=meta, info=dict(self.info))

    # ----- combining --------------------------------------------------------------------------

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """Rows of all ``batches`` in order; all must have the same tensor and meta keys.

        ``info`` is taken from the first batch.
        """
        if not batches:
            raise ValueError("concat needs at least one batch")
        first = batches[0]
        for i, batch in enumerate(batches[1:], start=1):
            if batch.tensors.keys() != first.tensors.keys() or batch.meta.keys() != first.meta.keys():
                raise ValueError(f"batch {i} has keys {sorted(batch.keys())}, batch 0 has {sorted(first.keys())}")
        tensors = {}
        for key in first.tensors:
            parts = [b.tensors[key] for b in batches]
            trailing = {tuple(p.shape[1:]) for p in parts}
            if len(trailing) > 1:
                raise ValueError(f"cannot concat {key!r}: trailing shapes differ {sorted(trailing)}")
            tensors[key] = torch.cat(parts, dim=0)
        meta = {key: [x for b in batches for x in b.meta[key]] for key in first.meta}
        return Batch(tensors=tensors, meta=meta, info=dict(first.info))

    def union(self, other: Batch) -> Batch:
        """All keys of both batches (same number of rows); a key present in both must hold equal values."""
        if self.keys() and other.keys() and len(self) != len(other):
            raise ValueError(f"cannot union batches of {len(self)} and {len(other)} rows")
        pairs = {
            "tensor": (self.tensors, other.tensors),
            "meta": (self.meta, other.meta),
            "info": (self.info, other.info),
        }
        for kind, (mine, theirs) in pairs.items():
            for key in mine.keys() & theirs.keys():
                if not _equal(mine[key], theirs[key]):
                    raise ValueError(f"union: {kind} {key!r} differs between the two batches")
        return Batch(
            tensors={**self.tensors, **other.tensors},
            meta={**self.meta, **other.meta},
            info={**self.info, **other.info},
        )

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            tensors={k: v.to(device) for k, v in self.tensors.items()},
            meta=dict(self.meta),
            info=dict(self.info),
        )


def _rows(key: str, value: torch.Tensor | list) -> int:
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            raise ValueError(f"tensor {key!r} is 0-dimensional; per-row tensors need a batch dimension")
        return value.shape[0]
    if isinstance(value, list):
        return len(value)
    raise TypeError(f"{key!r}: expected a torch.Tensor or a list, got {type(value).__name__}")


def _is_bool(idx: Sequence[int] | torch.Tensor) -> bool:
    if isinstance(idx, torch.Tensor):
        return idx.dtype == torch.bool
    return len(idx) > 0 and all(isinstance(i, bool) for i in idx)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b.to(a.device))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    return bool(a == b)
