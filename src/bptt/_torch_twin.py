"""A PyTorch twin of a bptt model, for the third gradient witness (autograd).

Legend: T time, B batch, D input size, H hidden size, V output size, L layers.

Private and minimal on purpose: the twin is plain ``nn.RNN`` / ``nn.LSTM`` /
``nn.GRU`` followed by ``nn.Linear``, in float64, with the weights copied in by
the mapping of :data:`bptt.models.TORCH_NAMES` (layer l ≥ 1 adds ``_l{l}``):

    Wxh → weight_ih_l{l},  Whh → weight_hh_l{l},
    rnn: bh → bias_ih_l{l}  (bias_hh_l{l} = 0, frozen)
    lstm/gru: bxh → bias_ih_l{l},  bhh → bias_hh_l{l}
    Why, by → the Linear head's weight, bias

Token ids become one-hot inputs (T, B, D).  Nothing here is imported unless
torch is; :func:`available` says whether it can be.  The interop module
(``bptt.interop.torch_module``) may replace :func:`build` later.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from bptt import models
from bptt.models import State


def available() -> bool:
    """True when torch can be imported."""
    return importlib.util.find_spec("torch") is not None


def build(params: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """The twin (recurrent module, Linear head) of ``params``, float64, weights copied in."""
    import torch

    shapes = models.check_params(params)
    bias = "bh" in params or "bxh" in params
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    options = {"nonlinearity": "tanh"} if shapes.cell == "rnn" else {}
    rnn = kinds[shapes.cell](
        shapes.D, shapes.H, num_layers=shapes.L, bias=bias, dtype=torch.float64, **options
    )
    head = torch.nn.Linear(shapes.H, shapes.V, bias="by" in params, dtype=torch.float64)
    with torch.no_grad():
        for layer in range(shapes.L):
            for name, value in _layer_tensors(params, shapes.cell, layer, bias).items():
                getattr(rnn, f"{name}_l{layer}").copy_(torch.from_numpy(np.array(value)))
        if shapes.cell == "rnn" and bias:
            for layer in range(shapes.L):
                getattr(rnn, f"bias_hh_l{layer}").requires_grad_(False)
        head.weight.copy_(torch.from_numpy(np.array(params["Why"])))
        if "by" in params:
            head.bias.copy_(torch.from_numpy(np.array(params["by"])))
    return rnn, head


def _layer_tensors(params, cell: str, layer: int, bias: bool) -> dict[str, np.ndarray]:
    """torch name (without _l{layer}) -> bptt array, for one layer."""
    out = {}
    for name in ("Wxh", "Whh", "bh", "bxh", "bhh"):
        key = models.layer_key(name, layer)
        if key in params:
            out[models.TORCH_NAMES[name]] = params[key]
    if cell == "rnn" and bias:
        out["bias_hh"] = np.zeros_like(params[models.layer_key("bh", layer)])
    return out


def loss_and_grads(
    params: dict[str, np.ndarray], inputs: Any, targets: Any, h0: State = None
) -> tuple[float, dict[str, np.ndarray], State]:
    """J = Σ_t Σ_b −log p_t[label] and its gradient by torch autograd, float64.

    inputs: token ids (T, B) or dense (T, B, D); targets (T, B); h0 in bptt's public
    form (None = zeros).  Returns (loss, grads with the keys of params, ∂J/∂h0 in the
    form of h0, zeros-state form when h0 is None).
    """
    import torch

    shapes = models.check_params(params)
    x = np.asarray(inputs)
    if x.ndim == 2:  # token ids stand for one-hot x_t
        x = np.eye(shapes.D)[x]
    T, B = x.shape[:2]
    if h0 is None:
        h0 = models.zero_state(params, B)
    paired = isinstance(h0, (tuple, list))
    parts = [np.asarray(s, dtype=np.float64) for s in (h0 if paired else (h0,))]
    flat = parts[0].ndim == 2
    states = [torch.tensor(p.reshape(shapes.L, B, shapes.H), requires_grad=True) for p in parts]
    rnn, head = build({k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
    out, _ = rnn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)),
                 tuple(states) if paired else states[0])
    logits = head(out)
    labels = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(T * B, shapes.V), labels.reshape(T * B), reduction="sum"
    )
    loss.backward()
    grads: dict[str, np.ndarray] = {}
    for layer in range(shapes.L):
        for name in ("Wxh", "Whh", "bh", "bxh", "bhh"):
            key = models.layer_key(name, layer)
            if key in params:
                tensor = getattr(rnn, f"{models.TORCH_NAMES[name]}_l{layer}")
                grads[key] = tensor.grad.numpy().copy()
    grads["Why"] = head.weight.grad.numpy().copy()
    if "by" in params:
        grads["by"] = head.bias.grad.numpy().copy()
    dstates = [s.grad.numpy().copy() for s in states]
    if flat:
        dstates = [d[0] for d in dstates]
    dJ_dh0 = tuple(dstates) if paired else dstates[0]
    return float(loss.item()), {k: grads[k] for k in params}, dJ_dh0
