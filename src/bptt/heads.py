"""Heads and losses beyond the language model: many-to-one and many-to-many, classes or numbers,
with sequences of different lengths in one batch.

Legend: T time, B batch, D input size, H hidden size, V output size (classes, or regression
dimensions), L layers, A ages (cells/common.py).  n_b = lengths[b] is the number of real steps
of sequence b (T when lengths is None); a batch is padded at the END, steps t ≥ n_b are padding.

The stack of models.py gives h^L_t; the head is linear, y_t = W^hy h^L_t + b_y, and the loss
J, the TOTAL over steps and batch (never the mean), is one of

    head            J                                              targets
    "softmax_each"  Σ_b Σ_{t<n_b} −log softmax(y_{t,b})[c_{t,b}]    labels (T, B) int in [0, V)
    "softmax_last"  Σ_b −log softmax(y_{n_b−1,b})[c_b]               labels (B,) int in [0, V)
    "mse_each"      Σ_b Σ_{t<n_b} ½ ‖y_{t,b} − r_{t,b}‖²             values (T, B, V) float
    "mse_last"      Σ_b ½ ‖y_{n_b−1,b} − r_b‖²                       values (B, V) float

(squared error carries the ½, so its partial is the residual; PyTorch's equal is
``0.5 * mse_loss(y, r, reduction="sum")``.  For V = 1 the regression targets may drop the
last axis: (T, B) or (B,).  Targets on padded steps are ignored, whatever they hold.)

Analytic partials (each its own function in ops.py; "softmax_each" takes its loss and partial
fused, :func:`bptt.ops.cross_entropy_and_partial` with a mask), with m_{t,b} = [t < n_b]:

    each:  ∂J/∂y_{t,b} = m_{t,b} (p_{t,b} − onehot(c_{t,b}))    or   m_{t,b} (y_{t,b} − r_{t,b})
    last:  y^last_b = y_{n_b−1,b}  (a gather; its partial is a scatter to step n_b − 1)
           ∂J/∂y^last_b = p_b − onehot(c_b)                        or   y^last_b − r_b
    head:  ∂J/∂W^hy = Σ ∂J/∂y h^Lᵀ,  ∂J/∂b_y = Σ ∂J/∂y,  ∂J_t/∂h^L_t = W^hyᵀ ∂J_t/∂y_t  (age 0)

and ∂J_t/∂h^L_t, laid out by age, goes to :func:`bptt.models.backprop_layers`, the stack's BPTT
that every head shares.  With "softmax_last"/"mse_last" only J_{n_b−1} exists, so the double
sum Σ_t Σ_{k≤t} has one t per sequence: the literal walk of J_{n_b−1} back to every k is
:func:`bptt.reference.loss_and_grads` with ``head=``; the tests hold the two equal.

Why padding is exact.  The forward runs every row for T steps (one array), so padded steps
compute something.  But a padded step t ≥ n_b feeds only later steps of its own row, all
padding, whose losses carry m = 0 (or are not the last step): the error reaching h_t there is
exactly zero, and so is everything it adds to the gradients.  The final state of sequence b is
read after its own last real step n_b − 1 (hs[n_b]), not after step T − 1 (hs[T]).  So a padded
batch equals running each sequence alone (tests/test_heads.py, to 1e-12).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from bptt import models, ops
from bptt.cells import common, get_cell
from bptt.errors import BpttError, as_array
from bptt.models import Shapes, State

HEADS = ("softmax_each", "softmax_last", "mse_each", "mse_last")


def check_head(head: Any) -> str:
    """One of :data:`HEADS`, else BpttError."""
    if head not in HEADS:
        raise BpttError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
    return head


def is_last(head: str) -> bool:
    """True for the many-to-one heads (a loss at each sequence's last step only)."""
    return head.endswith("_last")


def is_softmax(head: str) -> bool:
    """True for the classification heads (softmax cross-entropy)."""
    return head.startswith("softmax")


def check_lengths(lengths: Any, T: int, B: int) -> np.ndarray | None:
    """None (every sequence has T steps) or integers (B,) in [1, T], returned as int64."""
    if lengths is None:
        return None
    n = as_array("lengths", lengths)
    if n.shape != (B,):
        raise BpttError(f"lengths has shape {n.shape}, expected (B,) = ({B},): one per sequence")
    integers = n.dtype.kind in "iu"
    if not integers and not (
        n.dtype.kind == "f" and np.all(np.isfinite(n)) and np.all(n == np.round(n))
    ):
        raise BpttError(f"lengths must be integers, got dtype {n.dtype}")
    # (the range before any cast: a float 1e30 cast to int64 first is −2^63, with a warning)
    if n.size and (n.min() < 1 or n.max() > T):
        bad = n.min() if n.min() < 1 else n.max()
        raise BpttError(
            f"lengths must be between 1 and T = {T} (the padded length), got "
            f"{int(bad) if integers else f'{bad:g}'}"
        )
    return n.astype(np.int64)


def step_mask(lengths: np.ndarray | None, T: int, B: int, dtype: Any) -> np.ndarray | None:
    """m (T, B): 1 on the real steps t < n_b, 0 on padding; None when lengths is None."""
    if lengths is None:
        return None
    return (np.arange(T)[:, None] < lengths[None, :]).astype(dtype)


def check_head_targets(
    head: str, targets: Any, T: int, B: int, V: int, lengths: np.ndarray | None, dtype: Any
) -> np.ndarray:
    """The targets of ``head`` (module docstring), validated on the real steps.

    Padded entries are replaced (label 0, value 0) so that they can never reach a number;
    a copy is made when anything is replaced.  Regression targets are cast to ``dtype``
    and get their V axis back when V = 1 dropped it.
    """
    y = as_array("targets", targets)
    each = not is_last(head)
    shape = (T, B) if each else (B,)
    real = None
    if each and lengths is not None:
        real = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
    if is_softmax(head):
        if y.shape != shape:
            raise BpttError(f"targets of head {head!r} have shape {y.shape}, expected {shape}")
        if y.dtype.kind not in "iu":
            raise BpttError(f"targets of head {head!r} must be integer labels, got {y.dtype}")
        inside = y if real is None else y[real]
        if inside.size and (inside.min() < 0 or inside.max() >= V):
            raise BpttError(f"targets hold a label outside [0, {V}) (output_size V = {V})")
        y = y.astype(np.intp, copy=False)  # numpy's index type (uint64 + int64 is float64)
        return y if real is None else np.where(real, y, 0)
    if V == 1 and y.shape == shape:
        y = y[..., None]
    if y.shape != (*shape, V):
        raise BpttError(
            f"targets of head {head!r} have shape {y.shape}, expected {(*shape, V)}"
        )
    if y.dtype.kind not in "iuf":
        raise BpttError(f"targets of head {head!r} must be numbers, got dtype {y.dtype}")
    # a number beyond dtype's range casts to inf: refused below on a real step, without
    # numpy's warning (a padded step may hold anything, 1e300 in float32 too)
    with np.errstate(over="ignore"):
        cast = y.astype(dtype, copy=False)
    inside = cast if real is None else cast[real]
    if not np.isfinite(inside).all():
        if np.isfinite(y if real is None else y[real]).all():
            raise BpttError(
                f"targets hold numbers too large for {np.dtype(dtype).name}, the weights' "
                "dtype, on a real step: scale them, or use float64 weights")
        raise BpttError("targets contain NaN or inf on a real step")
    return cast if real is None else np.where(real[..., None], cast, 0).astype(dtype, copy=False)


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------


class HeadForward(NamedTuple):
    """The forward pass of a head.

    fwd: the stack's :class:`bptt.models.Forward` (logits (T, B, V) at every step);
    outputs: y (T, B, V) for the "each" heads, y at each sequence's last step (B, V) for the
    "last" heads; state: the final state of every sequence, read after its own last step
    n_b − 1 (hs[n_b]), in the form h0 had; lengths: the checked lengths (None = all T).
    """

    fwd: models.Forward
    outputs: np.ndarray
    state: State
    lengths: np.ndarray | None


def state_at_lengths(fwd: models.Forward, lengths: np.ndarray | None) -> State:
    """The state of each sequence b after its last real step n_b − 1 (steps count from 0): hs[n_b],
    and cs[n_b] for the LSTM."""
    if lengths is None:
        return fwd.state
    rows = np.arange(len(lengths))
    names = get_cell(fwd.shapes.cell).STATE_NAMES  # ("h",) or ("h", "c"): cache.hs, cache.cs
    layers = [
        tuple(getattr(cache, f"{name}s")[lengths, rows] for name in names)
        for cache in fwd.caches
    ]
    return models.layers_to_state(layers, fwd.flat)


def forward_checked(
    params: dict[str, np.ndarray],
    shapes: Shapes,
    x: np.ndarray,
    head: str,
    lengths: np.ndarray | None,
    h0: State,
    work: common.Buffers | None = None,
) -> HeadForward:
    """:func:`forward` without validation (params, x, head and lengths already checked).

    work: reusable memory (a :class:`~bptt.models.Workspace`'s), as models.forward_checked.
    """
    fwd = models.forward_checked(params, shapes, x, h0, work)
    # "last": y^last_b = y_{n_b − 1, b}
    outputs = ops.last_step_forward(fwd.logits, lengths) if is_last(head) else fwd.logits
    return HeadForward(fwd, outputs, state_at_lengths(fwd, lengths), lengths)


def forward(
    params: dict[str, np.ndarray],
    inputs: Any,
    head: str = "softmax_last",
    lengths: Any = None,
    h0: State = None,
) -> HeadForward:
    """Run the stack and the head.  inputs (T, B) ids or (T, B, D); lengths (B,) or None.

    Returns a :class:`HeadForward`; for the softmax heads ``ops.softmax(outputs)`` gives the
    class probabilities, for the squared-error heads the outputs are the predictions.
    """
    shapes = models.check_params(params)
    x = models.check_inputs(inputs, shapes, params["Whh"].dtype)
    n = check_lengths(lengths, x.shape[0], x.shape[1])
    return forward_checked(params, shapes, x, check_head(head), n, h0)


def head_loss(
    head: str,
    outputs: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray | None,
    work: common.Buffers | None = None,
) -> tuple[float, np.ndarray]:
    """J of the head and ∂J/∂(outputs), same shape as outputs (module docstring's table).

    outputs: (T, B, V) "each" or (B, V) "last"; targets from :func:`check_head_targets`;
    mask: (T, B) or None ("each" heads only).  work: memory for ∂J/∂y (or None: fresh).
    """
    if head == "softmax_each":
        # ∂J_t/∂y_t = m_t (p_t − onehot(c_t)), J_t = m_t (−log p_t[c_t]): forward and
        # partial fused over every (t, b) row (m = 1 everywhere without lengths)
        V = outputs.shape[-1]
        dJ_dy = common.empty(work, "dJ_dy", outputs.shape, outputs.dtype)
        loss, _ = ops.cross_entropy_and_partial(
            outputs.reshape(-1, V), targets.reshape(-1), out=dJ_dy.reshape(-1, V),
            mask=None if mask is None else mask.reshape(-1),
        )
        return loss, dJ_dy
    if head == "softmax_last":
        loss, p = ops.cross_entropy_forward(outputs, targets)
        # ∂J/∂y^last = p − onehot(c)
        return loss, ops.cross_entropy_backward(p, targets)
    # squared error: ∂J/∂y = m (y − r)   (no mask for "last", nor without lengths)
    loss, residual = ops.squared_error_forward(outputs, targets, mask)
    return loss, ops.squared_error_backward(residual, mask)


def loss(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    head: str = "softmax_last",
    lengths: Any = None,
    h0: State = None,
) -> float:
    """J alone (no backward): what finite differences evaluate."""
    out = forward(params, inputs, head, lengths, h0)
    T, B = np.shape(inputs)[:2]
    V = out.fwd.shapes.V
    y = check_head_targets(head, targets, T, B, V, out.lengths, params["Whh"].dtype)
    mask = None if is_last(head) else step_mask(out.lengths, T, B, params["Whh"].dtype)
    return head_loss(head, out.outputs, y, mask)[0]


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------


class Result(NamedTuple):
    """Everything :func:`backprop` computes.

    loss: J (total).  grads: same keys as params.  state: the final state of each sequence at
    its own last step (form of h0).  dJ_dstate0: ∂J/∂(initial state) (form of the state).
    dJ_dh: per layer ∂J/∂h_k (A, T, B, H) by age.  outputs: as :class:`HeadForward`.
    """

    loss: float
    grads: dict[str, np.ndarray]
    state: State
    dJ_dstate0: State
    dJ_dh: list[np.ndarray]
    outputs: np.ndarray


def backprop(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    head: str = "softmax_last",
    lengths: Any = None,
    h0: State = None,
    truncate: int | None = None,
    cell: str | None = None,
    *,
    workspace: models.Workspace | None = None,
) -> Result:
    """Forward, the head's loss, and efficient BPTT through every layer (models.backprop_layers).

    Same arguments as :func:`task_loss_and_grads`.  Reference: the literal double sum
    :func:`bptt.reference.loss_and_grads` with the same ``head`` and ``lengths``.

    workspace: a training loop's fast path, as for :func:`bptt.models.backprop`: params must
    be the dict the :class:`~bptt.models.Workspace` packed (they are not validated again),
    the layers reuse its memory, and the result lives in the workspace (the gradients are
    views of ``workspace.grads_flat``; the outputs of a per-step head and dJ_dh are its
    arrays too), valid until the next call.  The state and dJ_dstate0 are fresh copies.
    """
    shapes = models.checked_shapes(params, cell, workspace)
    work = None if workspace is None else workspace.buffers
    dtype = params["Whh"].dtype
    x = models.check_inputs(inputs, shapes, dtype)
    T, B = x.shape[:2]
    head = check_head(head)
    n = check_lengths(lengths, T, B)
    y = check_head_targets(head, targets, T, B, shapes.V, n, dtype)
    K = models.check_truncate(truncate, T)
    out = forward_checked(params, shapes, x, head, n, h0, work)
    h_top = out.fwd.caches[-1].hs[1:]  # (T, B, H): h_top[t] = h^L_t, t = 0 … T−1
    mask = None if is_last(head) else step_mask(n, T, B, dtype)
    # J and ∂J/∂y (every step, or each sequence's last)
    J, dJ_dy = head_loss(head, out.outputs, y, mask, work)
    grads: dict[str, np.ndarray] = {}
    if is_last(head):
        # y^last = W^hy h^last + b_y with h^last_b = h^L_{n_b − 1, b}:
        # ∂J/∂W^hy = Σ_b ∂J/∂y^last_b h^lastᵀ_b,  ∂J/∂b_y = Σ_b ∂J/∂y^last_b,
        # ∂J/∂h^last = W^hyᵀ ∂J/∂y^last
        h_last = ops.last_step_forward(h_top, n)
        dJ_dh_last, grads["Why"], dJ_dby = ops.linear_backward(dJ_dy, h_last, params["Why"])
        # ∂h^last_b/∂h^L_{t,b} = [t = n_b − 1]: the error of J_{n_b−1} enters at its step, age 0
        dJt_dh = ops.last_step_backward(dJ_dh_last, n, T)
    else:
        # y_t = W^hy h_t + b_y:  ∂J/∂W^hy = Σ_t ∂J/∂y_t h_tᵀ,  ∂J/∂b_y = Σ_t ∂J/∂y_t,
        # ∂J_t/∂h_t = W^hyᵀ ∂J_t/∂y_t  (the head reaches h_t only from J_t: age 0)
        dJt_dh, grads["Why"], dJ_dby = ops.linear_backward(dJ_dy, h_top, params["Why"])
    if "by" in params:
        grads["by"] = dJ_dby
    if workspace is not None:  # the head's gradients go into the flat buffer too
        for key, g in grads.items():
            np.copyto(workspace.grads[key], g)
        grads = {key: workspace.grads[key] for key in grads}
    # ∂J_t/∂h^L_t by age: all of it age 0 (with a window K, rows 1 … K−1 are zero)
    A = common.num_ages(K)
    make = common.empty if A == 1 else common.zeros
    dJ_dh_local = make(work, "dJ_dh_local", (A, T, B, shapes.H), dJt_dh.dtype)
    dJ_dh_local[0] = dJt_dh
    grads_out = None if workspace is None else workspace.grads
    back = models.backprop_layers(params, out.fwd, dJ_dh_local, K, work, grads_out)
    grads.update(back.grads)
    grads = {key: grads[key] for key in params}
    return Result(J, grads, out.state, back.dJ_dstate0, back.dJ_dh, out.outputs)


def task_loss_and_grads(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    head: str = "softmax_last",
    lengths: Any = None,
    h0: State = None,
    truncate: int | None = None,
    cell: str | None = None,
) -> tuple[float, dict[str, np.ndarray], State]:
    """The loss of a sequence task, its gradient by efficient BPTT, and the final states.

    params: from :func:`bptt.init_params` (output_size V = classes or regression dims).
    inputs: token ids (T, B) or dense (T, B, D), time-major, padded at the end.  targets:
    see the module docstring (labels (B,) for "softmax_last", (T, B) for "softmax_each";
    values (B, V) for "mse_last", (T, B, V) for "mse_each").  head: one of :data:`HEADS`.
    lengths: (B,) real steps per sequence, or None (all T).  h0: initial state (models.py),
    None = zeros.  truncate: None, or K keeps the terms with t − k < K.
    Returns (loss, grads, h_last): h_last holds each sequence's state at its own last step.
    """
    result = backprop(params, inputs, targets, head, lengths, h0, truncate, cell)
    return result.loss, result.grads, result.state


def pad_sequences(
    sequences: Iterable[Any], dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Time-major padding: a list of (T_b, D) arrays -> inputs (T, B, D) with zeros after each
    sequence's end, and lengths (B,).  T = max T_b."""
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
        raise BpttError(
            f"sequences must be a list of (T_b, D) arrays, got {type(sequences).__name__}"
        )
    dtype = models.check_float_dtype(dtype)
    arrays = []
    for b, sequence in enumerate(sequences):
        a = as_array(f"sequence {b}", sequence)
        if a.dtype.kind not in "biuf":
            raise BpttError(f"sequence {b} must hold real numbers, got {a.dtype}")
        arrays.append(a.astype(dtype, copy=False))
    if len(arrays) == 0:
        raise BpttError("no sequences to pad")
    if any(a.ndim != 2 or a.shape[0] < 1 for a in arrays):
        raise BpttError("every sequence must be a 2-D array (T_b, D) with T_b >= 1")
    D = arrays[0].shape[1]
    if any(a.shape[1] != D for a in arrays):
        raise BpttError("every sequence must have the same number of features D")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    out = np.zeros((int(lengths.max()), len(arrays), D), dtype=dtype)
    for b, a in enumerate(arrays):
        out[: len(a), b] = a
    return out, lengths
