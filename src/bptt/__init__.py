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

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bptt import gradcheck, reference
    from bptt.errors import BpttError, CheckpointError, DataError
    from bptt.estimators import SequenceClassifier, SequenceRegressor
    from bptt.heads import task_loss_and_grads
    from bptt.models import (
        backprop,
        forward,
        forward_loss,
        infer_cell,
        init_params,
        loss_and_grads,
    )

__version__ = "0.1.0"

# The names below load on first use (PEP 562): ``import bptt`` itself loads neither numpy nor
# bptt's modules (about 0.2 s), so the ``bptt`` command, which imports ``bptt.cli`` first,
# is already running when they load, and a Ctrl-C then is its one line, not a traceback.
_DEFINED_IN = {  # name -> the module that defines it
    "BpttError": "errors", "CheckpointError": "errors", "DataError": "errors",
    "SequenceClassifier": "estimators", "SequenceRegressor": "estimators",
    "task_loss_and_grads": "heads",
    "backprop": "models", "forward": "models", "forward_loss": "models",
    "infer_cell": "models", "init_params": "models", "loss_and_grads": "models",
}

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


def __getattr__(name: str) -> Any:
    """An API name above, or a submodule (``bptt.gradcheck``, ``bptt.models``, …), loaded
    when first looked up, as an attribute or by ``from bptt import name``."""
    if name in _DEFINED_IN:
        value = getattr(importlib.import_module(f"bptt.{_DEFINED_IN[name]}"), name)
    elif name.isidentifier() and not name.startswith("_") \
            and importlib.util.find_spec(f"bptt.{name}") is not None:
        value = importlib.import_module(f"bptt.{name}")
    else:
        raise AttributeError(f"module 'bptt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """What is loaded, and the API names that load on first use."""
    return sorted(set(globals()) | set(__all__))
