"""One flat buffer, many named views: how the training loop holds parameters, gradients and moments.

A model's parameters stay a ``dict[str, np.ndarray]`` (the public API, the checkpoint
format), but in training every value is a VIEW into one contiguous 1-D buffer, in a
fixed order (the :class:`Layout`).  The gradients and the optimizer's moments are laid
out the same way, so the optimizer, the global norm and clipping each run as a few
vector operations on whole buffers, ``{"flat": buffer}``, instead of a loop over keys;
and since every element has the same neighbours in every run, a resumed run sums the
global norm in the same order as an uninterrupted one (bit-identical results).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

FLAT_KEY = "flat"
"""The single key of a flat dict: ``{"flat": buffer}`` (any optimizer accepts it)."""


class Layout(NamedTuple):
    """Where each named array lives in a flat buffer: keys in order, their shapes, offsets."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int
    dtype: np.dtype


def layout_of(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> Layout:
    """The layout of ``arrays`` in the order ``keys`` (which must be exactly its keys)."""
    if set(keys) != set(arrays) or len(keys) != len(arrays):
        raise ValueError(f"keys {list(keys)} are not the keys of the arrays {list(arrays)}")
    shapes = tuple(tuple(arrays[k].shape) for k in keys)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])) if sizes else ()
    dtypes = {arrays[k].dtype for k in keys}
    if len(dtypes) != 1:
        names = sorted(map(str, dtypes))
        raise ValueError(f"arrays of one flat buffer must share a dtype, got {names}")
    return Layout(tuple(keys), shapes, offsets, int(sum(sizes)), dtypes.pop())


def views(flat: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """The named views of ``flat`` (C-contiguous, writing to one writes to the buffer)."""
    return {
        key: flat[offset : offset + int(np.prod(shape, dtype=np.int64))].reshape(shape)
        for key, shape, offset in zip(layout.keys, layout.shapes, layout.offsets, strict=True)
    }


def pack(arrays: dict[str, np.ndarray], layout: Layout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Copy ``arrays`` into a new flat buffer and REBIND each entry to its view (in place).

    Returns (buffer, views).  Afterwards ``arrays[key]`` is ``views[key]``, a view of the
    buffer: whatever updates the buffer updates the dict, which keeps its identity.
    """
    flat = np.empty(layout.size, dtype=layout.dtype)
    named = views(flat, layout)
    for key in layout.keys:
        named[key][...] = arrays[key]
    for key in layout.keys:
        arrays[key] = named[key]
    return flat, named


def is_packed(arrays: Mapping[str, np.ndarray], named: Mapping[str, np.ndarray]) -> bool:
    """True when every entry of ``arrays`` is still the very view :func:`pack` put there, and
    a view of one buffer still (a copy of the dict and its views together — pickle,
    deepcopy — keeps the entries the same objects, but each is then an array of its own)."""
    if len(arrays) != len(named) or not all(arrays.get(k) is v for k, v in named.items()):
        return False
    bases = {id(v.base) for v in named.values()}
    return len(bases) == 1 and next(iter(named.values())).base is not None
