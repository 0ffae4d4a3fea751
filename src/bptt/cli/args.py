"""Argument types shared by the subcommands: each refuses a bad value in one clear line."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from bptt.errors import SEED_LIMIT


def utf8_text(text: str) -> str:
    """A text typed on the command line, as the user typed it.  Under a locale that is not
    UTF-8 (LC_ALL=C) Python keeps each byte it cannot decode as a lone surrogate; the bytes
    are read back as the UTF-8 they are (a terminal's), or refused."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8 text: the bytes {os.fsencode(text)!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (refuses 0, negatives, non-numbers, and absurd sizes over 10^9)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1 or value > 10**9:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 10^9, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (refuses negatives, non-numbers, and absurd counts over 10^12)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0 or value > 10**12:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 10^12, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (refuses NaN, inf, zero and negatives)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2^63 − 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2^63-1, got {value}")
    return value


def nonempty_path(text: str) -> Path:
    """A path; an empty one is refused (it would silently mean the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)
