"""Errors a user can cause.

Every mistake a user can make (a missing file, a bad flag value, a checkpoint
that does not fit) raises a subclass of :class:`BpttError`, itself a
``ValueError``.  The library never prints; the command line turns these into
one line on stderr (``bptt: error: ...``) and exit code 2.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import DTypeLike


class BpttError(ValueError):
    """Base class of every error a user can cause."""


class DataError(BpttError):
    """A corpus or input file cannot be used (missing, empty, binary, undecodable)."""


class CheckpointError(BpttError):
    """A checkpoint is missing, corrupt, hostile or does not fit the request."""


class DivergedError(BpttError):
    """Training diverged: the loss, a gradient or a weight became NaN or inf (a learning
    rate too large for the problem, or no clipping).  ``step``: the step that diverged."""

    def __init__(self, step: int, cause: str = "") -> None:
        """cause: a likelier cause than the step size, said after the usual advice."""
        super().__init__(
            f"training diverged at step {step}: the loss, a gradient or a weight is NaN or inf; "
            "lower the learning rate (lr) or clip the gradients (clip_norm)"
            + (f"; {cause}" if cause else "")
        )
        self.step = step


def is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    """True for an integer, Python's or numpy's; False for a bool (Python counts it as one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as a Python int when it is an integer >= ``low``, else BpttError naming ``name``.

    Keep the int returned: a numpy integer passes the check but is not JSON (a setting
    stored in a checkpoint's metadata must be the int).
    """
    if not is_int(value) or value < low:
        raise BpttError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` as a Python bool when it is True or False (numpy's too), else BpttError
    naming ``name``: the string "no" is a true value, which would silently mean yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise BpttError(f"{name} must be True or False, got {value!r}")
    return bool(value)


SEED_LIMIT = 2**63  # a seed is an integer from 0 to 2^63 − 1, given as a flag or a setting


def check_seed(value: object) -> int:
    """``value`` as a Python int when it is a seed (0 … 2^63 − 1), else BpttError."""
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise BpttError(f"seed must be an integer from 0 to 2^63-1, got {value!r}")
    return int(value)


def is_number(value: object) -> TypeGuard[int | np.integer[Any] | float | np.floating[Any]]:
    """True for a real number, Python's or numpy's; False for a bool, a string, a complex."""
    return is_int(value) or isinstance(value, (float, np.floating))


def is_finite_number(
    value: object,
) -> TypeGuard[int | np.integer[Any] | float | np.floating[Any]]:
    """True for a real number (see :func:`is_number`) that is finite as a float: not NaN or
    inf, and not an int beyond every float (10**400)."""
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def is_finite_as(value: object, dtype: DTypeLike) -> bool:
    """True for a finite real number (see :func:`is_finite_number`) that stays finite in
    ``dtype`` (1e39 is no float32: it would become inf)."""
    if not is_finite_number(value):
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.asarray(value, dtype)))


def check_positive(name: str, value: object) -> float:
    """``value`` as a Python float when it is a finite real number > 0 (see
    :func:`is_finite_number`), else BpttError naming ``name``."""
    if not is_finite_number(value) or value <= 0:
        raise BpttError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def as_array(name: str, value: object) -> np.ndarray:
    """``value`` as an array; BpttError naming ``name`` for nested lists of unequal lengths
    (numpy's "inhomogeneous shape")."""
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise BpttError(f"{name} must be a rectangular array, not rows of unequal lengths") from exc


def as_finite(name: str, values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` (real numbers) cast to ``dtype`` (no copy when they are of it); BpttError
    naming ``name`` when they hold NaN or inf, or numbers the cast makes inf (1e39 in float32),
    which would otherwise run on as inf and NaN."""
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below, without a warning
        cast = values.astype(dtype, copy=False)
    if np.isfinite(cast).all():
        return cast
    if np.isfinite(values).all():
        raise BpttError(
            f"{name} holds numbers too large for {np.dtype(dtype).name}, the weights' dtype: "
            "scale them, or use float64 weights"
        )
    raise BpttError(f"{name} contains NaN or inf")


def is_surrogate(char: str) -> bool:
    """True for one of U+D800 … U+DFFF, which Python strings can hold but no UTF-8 text can:
    such a character cannot be written out (printed, saved) as UTF-8."""
    return "\ud800" <= char <= "\udfff"


def parse_json(text: str) -> Any:
    """The value of a JSON text a user gave (a --config file, a safetensors header, bptt's
    metadata in one), or ValueError saying in words why it is not one.

    Every reader of such a text goes through here: besides bad syntax, ``json.loads`` raises
    a ValueError that is no JSONDecodeError for an integer longer than Python's digit limit
    (4300 by default), and RecursionError for arrays or objects nested deeper than the
    stack; both are a bad file, not a crash."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError as exc:
        raise ValueError("its arrays or objects are nested too deeply") from exc
    except ValueError as exc:  # the digit limit; its advice (sys.set_int_max_str_digits) is
        # for programmers, and the only other ValueErrors of a str are JSONDecodeErrors
        raise ValueError("it holds an integer of more digits than Python reads") from exc


SURROGATES = re.compile("[\ud800-\udfff]")
"""Matches one lone surrogate (see :func:`is_surrogate`)."""


def printable(text: str) -> str:
    """``text`` with each lone surrogate (see :func:`is_surrogate`) written as a backslash
    escape, for text that must be UTF-8 (a figure's title: matplotlib refuses a lone
    surrogate with a TypeError).  A byte of a path that is not UTF-8, which Python keeps as
    U+DC80 … U+DCFF, is shown as that byte (\\xff, as ``ls -b`` shows it), any other
    surrogate as \\uXXXX; the rest of ``text`` is unchanged."""
    return SURROGATES.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    """The backslash escape of one lone surrogate (see :func:`printable`)."""
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"
