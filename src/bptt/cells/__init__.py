"""Recurrent cells: each module holds one cell's forward and backward side by side.

Every cell module offers the same functions (see cells/rnn.py for the pattern):
``init_layer``, ``step_forward``, ``step_backward``, ``sequence_forward``,
``sequence_backward``, ``final_state``, the NamedTuples ``Cache`` (with
``hs`` (T + 1, B, H), hs[0] = h0, and ``hs_by_row``, the same states as (H, (T + 1)·B),
which the head multiplies) and ``Backward`` (``grads, dJ_dx,
dJ_dstate0, dJ_dh``), and the constants ``GATES``, ``PARAM_NAMES``,
``BIAS_NAMES``, ``STATE_NAMES``; optionally ``COLUMNS = True`` when the sweep keeps
each step's vectors as columns (H, B) — the head then hands it ∂J/∂h in that layout.

    rnn   cells/rnn.py    GATES 1  Wxh, Whh, bh           state (h,)
    lstm  cells/lstm.py   GATES 4  Wxh, Whh, bxh, bhh     state (h, c)   gates i, f, g, o
    gru   cells/gru.py    GATES 3  Wxh, Whh, bxh, bhh     state (h,)     gates r, z, n
"""

from __future__ import annotations

from types import ModuleType

from bptt.cells import gru, lstm, rnn

CELLS: dict[str, ModuleType] = {"rnn": rnn, "lstm": lstm, "gru": gru}


def get_cell(name: str) -> ModuleType:
    """The module of the cell called ``name`` ("rnn", "lstm" or "gru")."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        from bptt.errors import BpttError  # (imported here, only on the error path)

        raise BpttError(
            f"unknown cell {name!r}: choose one of {', '.join(CELLS)}"
        ) from None
