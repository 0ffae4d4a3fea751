"""Errors a user can cause.

Every mistake a user can make (a missing file, a bad flag value, a checkpoint
that does not fit) raises a subclass of :class:`BpttError`, itself a
``ValueError``.  The library never prints; the command line turns these into
one line on stderr (``bptt: error: ...``) and exit code 2.
"""

from __future__ import annotations


class BpttError(ValueError):
    """Base class of every error a user can cause."""


class DataError(BpttError):
    """A corpus or input file cannot be used (missing, empty, binary, undecodable)."""


class CheckpointError(BpttError):
    """A checkpoint is missing, corrupt, hostile or does not fit the request."""
