"""Recurrent cells: each module holds one cell's forward and backward side by side.

Every cell module offers the same functions (see cells/rnn.py for the pattern):
``init_layer``, ``step_forward``, ``step_backward``, ``sequence_forward``,
``sequence_backward``, ``final_state``, and the constants ``GATES``,
``PARAM_NAMES``, ``STATE_NAMES``.
"""

from __future__ import annotations

from types import ModuleType

from bptt.cells import rnn

CELLS: dict[str, ModuleType] = {"rnn": rnn}


def get_cell(name: str) -> ModuleType:
    """The module of the cell called ``name`` ("rnn", "lstm" or "gru")."""
    from bptt.errors import BpttError

    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise BpttError(
            f"unknown cell {name!r}: choose one of {', '.join(sorted(CELLS))}"
        ) from None
