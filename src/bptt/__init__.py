"""bptt: recurrent networks whose gradients are derived by hand and checked three ways.

The functional API (plain dicts of arrays, explicit numpy Generators):

    params = bptt.init_params(cell="rnn", input_size=D, hidden_size=H, output_size=V,
                              bias=True, rng=np.random.default_rng(0), dtype=np.float64)
    loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=None, truncate=None)
    loss, grads, terms = bptt.reference.loss_and_grads(params, inputs, targets)

``loss_and_grads`` is the efficient BPTT (one sweep, O(T)); ``reference`` is the
literal double sum Σ_t Σ_{k≤t} (O(T²)); ``gradcheck`` holds finite differences.
"""

from __future__ import annotations

from bptt import gradcheck, reference
from bptt.errors import BpttError, CheckpointError, DataError
from bptt.estimators import SequenceClassifier, SequenceRegressor
from bptt.heads import task_loss_and_grads
from bptt.models import backprop, forward, forward_loss, infer_cell, init_params, loss_and_grads

__version__ = "0.1.0"

__all__ = [
    "BpttError",
    "CheckpointError",
    "DataError",
    "SequenceClassifier",
    "SequenceRegressor",
    "__version__",
    "backprop",
    "forward",
    "forward_loss",
    "gradcheck",
    "infer_cell",
    "init_params",
    "loss_and_grads",
    "reference",
    "task_loss_and_grads",
]
