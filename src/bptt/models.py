"""The network of the derivation: stacked recurrent layers, a linear head, softmax cross-entropy.

Legend: T time, B batch, D input size, H hidden size, V output size, L layers, A ages.

    h^0_t = x_t;   h^l_t = cell(h^l_{t−1}, h^{l−1}_t)  for l = 1 … L
    y_t = W^hy h^L_t + b_y,   p_t = softmax(y_t),   J = Σ_t Σ_b −log p_t[label]

Parameters are one plain dict.  Layer 0 uses the bare names of its cell
(vanilla RNN: ``Wxh, Whh, bh``; LSTM and GRU: ``Wxh, Whh, bxh, bhh`` with the
gates stacked in PyTorch's order), layer l ≥ 1 adds the suffix ``_l{l}``
(``Whh_l1``), and the head is ``Why, by``.  These map one to one onto
PyTorch's ``weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l}``
(see :data:`TORCH_NAMES`).  The cell kind is read off the shapes: W^hh has
H rows for the RNN, 3H for the GRU, 4H for the LSTM.

State.  For "rnn" and "gru" the state is h, an array (L, B, H) as PyTorch's
h_0 (for one layer a (B, H) array is accepted too, and what comes back has
the shape that went in).  For "lstm" it is the pair (h, c) of such arrays.
None means zeros.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bptt import flat, ops
from bptt.cells import common, get_cell
from bptt.errors import BpttError, as_array, as_finite, check_bool, check_int, is_int

HEAD_NAMES = ("Why", "by")
TORCH_NAMES = {
    "Wxh": "weight_ih",
    "Whh": "weight_hh",
    "bh": "bias_ih",
    "bxh": "bias_ih",
    "bhh": "bias_hh",
}

State = Any  # np.ndarray for rnn/gru, tuple (h, c) for lstm, or None


def layer_key(name: str, layer: int) -> str:
    """The key of parameter ``name`` of layer ``layer``: "Whh" for layer 0, "Whh_l1" for layer 1."""
    return name if layer == 0 else f"{name}_l{layer}"


def init_params(
    cell: str = "rnn",
    input_size: int = 1,
    hidden_size: int = 1,
    output_size: int = 1,
    bias: bool = True,
    rng: np.random.Generator | None = None,
    dtype: Any = np.float64,
    num_layers: int = 1,
    forget_bias: float | None = None,
) -> dict[str, np.ndarray]:
    """Fresh parameters, U(−1/√H, 1/√H) as PyTorch initialises its RNNs and (here) the head.

    cell: "rnn", "lstm" or "gru".  input_size D (for token ids: the input vocabulary),
    hidden_size H, output_size V, num_layers L.  bias=False gives the seed's network with no
    biases (for the RNN exactly ``Wxh (H, D), Whh (H, H), Why (V, H)``).  rng: the Generator
    all draws come from (None: a fresh one, not reproducible).  dtype: float32 or float64.
    forget_bias (LSTM only): the initial b_f, set in bias_ih's f rows with bias_hh's f rows 0
    (None keeps PyTorch's random init).
    Returns the parameter dict (see the module docstring for the keys).
    """
    module = get_cell(cell)
    for name, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("output_size", output_size),
        ("num_layers", num_layers),
    ):
        check_int(name, value, 1)
    check_bool("bias", bias)
    if forget_bias is not None and cell != "lstm":
        raise BpttError(f"forget_bias applies to the lstm cell only, not {cell!r}")
    rng = check_rng(rng)
    dtype = check_float_dtype(dtype)
    params: dict[str, np.ndarray] = {}
    for layer in range(num_layers):
        D = input_size if layer == 0 else hidden_size
        options = {} if forget_bias is None else {"forget_bias": forget_bias}
        for name, value in module.init_layer(rng, D, hidden_size, bias, dtype, **options).items():
            params[layer_key(name, layer)] = value
    bound = 1.0 / np.sqrt(hidden_size)
    params["Why"] = rng.uniform(-bound, bound, (output_size, hidden_size)).astype(dtype)
    if bias:
        params["by"] = rng.uniform(-bound, bound, output_size).astype(dtype)
    return params


def check_rng(rng: Any) -> np.random.Generator:
    """The Generator all randomness goes through; None: a fresh one (not reproducible)."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise BpttError(
            f"rng must be a numpy Generator, e.g. np.random.default_rng(seed), "
            f"got {type(rng).__name__} {rng!r}"
        )
    return rng


def check_float_dtype(dtype: Any) -> type:
    """float32 or float64 (given as a type, a dtype or its name), as the numpy type."""
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked not in (np.float32, np.float64):
        raise BpttError(f"dtype must be float32 or float64, got {dtype!r}")
    return checked.type


# ----------------------------------------------------------------------------
# reading a parameter dict
# ----------------------------------------------------------------------------


def num_layers_of(params: dict[str, np.ndarray]) -> int:
    """L: the number of stacked layers (keys Whh, Whh_l1, …)."""
    L = 0
    while layer_key("Whh", L) in params:
        L += 1
    return L


def infer_cell(params: dict[str, np.ndarray]) -> str:
    """The cell kind, read off the shape of W^hh: (H, H) rnn, (3H, H) gru, (4H, H) lstm."""
    if not isinstance(params, dict):
        raise BpttError(f"params must be a dict of arrays, got {type(params).__name__}")
    if "Whh" not in params:
        raise BpttError("params has no 'Whh': not a bptt parameter dict")
    _check_plain("Whh", params["Whh"])
    if not isinstance(params["Whh"], np.ndarray) or params["Whh"].ndim != 2:
        raise BpttError(
            f"params['Whh'] must be a 2-D numpy array (G·H, H), got {_describe(params['Whh'])}"
        )
    rows, H = params["Whh"].shape
    kinds = {1: "rnn", 3: "gru", 4: "lstm"}
    if H == 0 or rows % H or rows // H not in kinds:
        raise BpttError(f"params['Whh'] has shape {(rows, H)}: expected (H, H), (3H, H) or (4H, H)")
    return kinds[rows // H]


def _check_plain(key: str, value: Any) -> None:
    """BpttError for an array of a numpy subclass whose arithmetic is not ndarray's: a
    np.matrix (``*`` multiplies matrices, a row stays 2-D) or a masked array (its mask would
    be ignored); a memmap (a file's bytes, ndarray's arithmetic) is a plain array."""
    if isinstance(value, np.ndarray) and type(value) not in (np.ndarray, np.memmap):
        raise BpttError(
            f"params[{key!r}] must be a plain numpy array, got a {type(value).__name__} "
            "(np.asarray gives its data as one)"
        )


def _describe(value: Any) -> str:
    """A value named for an error message: an array by its shape, anything else by its type."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"a {type(value).__name__}"


def layer_params(params: dict[str, np.ndarray], layer: int, names: tuple[str, ...]) -> dict:
    """The parameters of one layer under their bare names (the same arrays, no copy)."""
    return {n: params[layer_key(n, layer)] for n in names if layer_key(n, layer) in params}


class Shapes(NamedTuple):
    """Sizes read off a parameter dict."""

    cell: str
    L: int
    D: int
    H: int
    V: int


def check_params(params: dict[str, np.ndarray], cell: str | None = None) -> Shapes:
    """Validate a parameter dict (keys, shapes, dtypes, finiteness); return its sizes."""
    kind = infer_cell(params)
    if cell is not None:
        get_cell(cell)  # BpttError for a name that is no cell's (a list, an unknown string)
    if cell is not None and cell != kind:
        raise BpttError(f"cell={cell!r} but params are those of a {kind!r} cell")
    module = get_cell(kind)
    L = num_layers_of(params)
    H = params["Whh"].shape[1]
    G = module.GATES * H
    for key, form in (("Wxh", "(G·H, D)"), ("Why", "(V, H)")):
        if key not in params:
            raise BpttError(f"params is missing {key!r}")
        if not isinstance(params[key], np.ndarray) or params[key].ndim != 2:
            raise BpttError(
                f"params[{key!r}] must be a 2-D numpy array {form}, got {_describe(params[key])}"
            )
    D = params["Wxh"].shape[1]
    V = params["Why"].shape[0]
    if D < 1 or V < 1:
        raise BpttError(
            f"params['Wxh'] has {D} columns and params['Why'] {V} rows: the input size D and "
            "the output size V must be at least 1"
        )
    expected: dict[str, tuple[int, ...]] = {"Why": (V, H), "by": (V,)}
    for layer in range(L):
        Din = D if layer == 0 else H
        shapes = {"Wxh": (G, Din), "Whh": (G, H), "bh": (G,), "bxh": (G,), "bhh": (G,)}
        for name in module.PARAM_NAMES:
            expected[layer_key(name, layer)] = shapes[name]
    dtype = params["Whh"].dtype
    if dtype not in (np.float32, np.float64):
        raise BpttError(f"params['Whh'] has dtype {dtype}: the weights must be float32 or float64")
    for key, value in params.items():
        if key not in expected:
            raise BpttError(f"params has an unexpected key {key!r} for a {L}-layer {kind} model")
        _check_plain(key, value)
        if not isinstance(value, np.ndarray):
            raise BpttError(f"params[{key!r}] must be a numpy array, got {_describe(value)}")
        if value.shape != expected[key]:
            raise BpttError(
                f"params[{key!r}] has shape {np.shape(value)}, expected {expected[key]}"
            )
        if value.dtype != dtype or value.dtype.kind != "f":
            raise BpttError(f"params[{key!r}] has dtype {value.dtype}, expected {dtype} like Whh")
        if not np.isfinite(value).all():
            raise BpttError(f"params[{key!r}] contains NaN or inf")
    for key in expected:
        optional = key.split("_l")[0] in module.BIAS_NAMES or key == "by"
        if key not in params and not optional:
            raise BpttError(f"params is missing {key!r}")
    _check_bias_pairs(params, module.BIAS_NAMES, L)
    return Shapes(kind, L, D, H, V)


def recurrent_bias_keys(shapes: Shapes) -> list[str]:
    """The keys of every layer's recurrent biases (bh; or bxh, bhh), layer by layer."""
    names = get_cell(shapes.cell).BIAS_NAMES
    return [layer_key(n, layer) for layer in range(shapes.L) for n in names]


def _check_bias_pairs(params: dict[str, np.ndarray], names: tuple[str, ...], L: int) -> None:
    """A layer of an LSTM or GRU has both biases b^xh, b^hh or neither (as PyTorch's bias=)."""
    if len(names) < 2:
        return
    for layer in range(L):
        keys = [layer_key(n, layer) for n in names]
        present = [k for k in keys if k in params]
        if present and len(present) < len(keys):
            missing = next(k for k in keys if k not in params)
            raise BpttError(
                f"params has {present[0]!r} but not {missing!r}: a layer has both "
                "biases or neither (bias=False)"
            )


def check_inputs(inputs: Any, shapes: Shapes, dtype: Any) -> np.ndarray:
    """Token ids (T, B) in [0, D) or dense (T, B, D); dense inputs are cast to ``dtype``."""
    x = as_array("inputs", inputs)
    if x.ndim == 2:
        if x.dtype.kind not in "iu":
            raise BpttError(f"inputs of shape {x.shape} must be integer token ids, got {x.dtype}")
        if ops.any_outside(x, shapes.D):
            bad = int(x.max()) if x.max() >= shapes.D else int(x.min())
            raise BpttError(
                f"inputs holds token id {bad} outside [0, {shapes.D}) (input_size D = {shapes.D})"
            )
        # index arithmetic in numpy's own index type (uint64 + int64 would give float64)
        x = x.astype(np.intp, copy=False)
    elif x.ndim == 3:
        if x.shape[2] != shapes.D:
            raise BpttError(f"inputs has shape {x.shape}, expected (T, B, {shapes.D})")
        if x.dtype.kind not in "biuf":
            raise BpttError(f"dense inputs must hold real numbers, got dtype {x.dtype}")
        x = as_finite("inputs", x, dtype)
    else:
        raise BpttError(f"inputs has shape {x.shape}: expected ids (T, B) or dense (T, B, D)")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise BpttError(f"inputs has shape {x.shape}: need T >= 1 and B >= 1")
    return x


def check_targets(targets: Any, T: int, B: int, V: int) -> np.ndarray:
    """Integer labels (T, B) in [0, V)."""
    y = as_array("targets", targets)
    if y.shape != (T, B):
        raise BpttError(f"targets has shape {y.shape}, expected (T, B) = {(T, B)}")
    if y.dtype.kind not in "iu":
        raise BpttError(f"targets must be integer labels, got dtype {y.dtype}")
    if ops.any_outside(y, V):
        raise BpttError(f"targets holds a label outside [0, {V}) (output_size V = {V})")
    return y.astype(np.intp, copy=False)  # as the ids: numpy's index type


def check_truncate(truncate: Any, T: int | None = None) -> int | None:
    """None (full BPTT) or an integer window K >= 1.

    With T (the sequence length), K is capped at T: a window of T steps or more cuts
    nothing (t − k < T <= K for every term), and the sweep keeps a row per age, so
    K = 10^9 would otherwise ask for 10^9 rows to hold the same sums.
    """
    if truncate is None:
        return None
    if not is_int(truncate) or truncate < 1:
        raise BpttError(f"truncate must be None or an integer >= 1, got {truncate!r}")
    return int(truncate) if T is None else min(int(truncate), T)


# ----------------------------------------------------------------------------
# state: public forms <-> per-layer tuples
# ----------------------------------------------------------------------------


def state_to_layers(
    state: State, shapes: Shapes, B: int, dtype: Any
) -> tuple[list[tuple[np.ndarray, ...]], bool]:
    """Public state -> per layer a tuple of (B, H) arrays; also whether it came as (B, H).

    rnn/gru: h (L, B, H) or, for L = 1, (B, H).  lstm: (h, c), each like that.
    """
    names = get_cell(shapes.cell).STATE_NAMES
    if state is None:
        zeros = np.zeros((B, shapes.H), dtype=dtype)
        return [tuple(zeros for _ in names) for _ in range(shapes.L)], False
    parts = state if len(names) > 1 else (state,)
    if len(names) > 1 and (not isinstance(state, (tuple, list)) or len(state) != len(names)):
        pair = ", ".join(name + "0" for name in names)
        raise BpttError(f"h0 of an {shapes.cell} must be a pair ({pair})")
    if len(names) > 1 and any(isinstance(part, tuple) for part in parts):
        # [(h, c) of layer 0, (h, c) of layer 1] has the shapes of (h0, c0) for L = 2, and
        # would be read as h0 = [h, c of layer 0]: a pair of pairs is refused, not guessed
        pair = ", ".join(name + "0" for name in names)
        raise BpttError(
            f"h0 of an {shapes.cell} is the pair ({pair}), each an array (L, B, H), not a "
            "pair per layer: np.stack each layer's h, and each layer's c"
        )
    arrays = []
    flat = False
    for name, part in zip(names, parts, strict=False):
        a = as_array(f"{name}0", part)
        if a.shape == (B, shapes.H) and shapes.L == 1:
            a, flat = a[None], True
        if a.shape != (shapes.L, B, shapes.H):
            lstm_like = isinstance(state, tuple) and len(names) == 1  # (h0, c0), likely
            raise BpttError(
                f"{name}0 has shape {a.shape}, expected (L, B, H) = {(shapes.L, B, shapes.H)}"
                + (f": the state of a {shapes.cell} cell is h0 alone, not a tuple like the "
                   "lstm's (h0, c0)" if lstm_like else "")
            )
        if a.dtype.kind not in "biuf":
            raise BpttError(f"{name}0 must hold real numbers, got dtype {a.dtype}")
        arrays.append(as_finite(f"{name}0", a, dtype))
    return [tuple(a[layer] for a in arrays) for layer in range(shapes.L)], flat


def zero_state(params: dict[str, np.ndarray], batch_size: int) -> State:
    """The zero initial state in public form: (L, B, H), or the pair (h, c) for the LSTM."""
    shapes = check_params(params)
    names = get_cell(shapes.cell).STATE_NAMES
    zeros = [np.zeros((shapes.L, batch_size, shapes.H), params["Whh"].dtype) for _ in names]
    return zeros[0] if len(zeros) == 1 else tuple(zeros)


def layers_to_state(layers: list[tuple[np.ndarray, ...]], flat: bool) -> State:
    """Per-layer tuples -> the public form (the inverse of :func:`state_to_layers`)."""
    stacked = []
    for i in range(len(layers[0])):
        part = np.empty((len(layers), *layers[0][i].shape), dtype=layers[0][i].dtype)
        for layer, state in enumerate(layers):
            part[layer] = state[i]  # a copy: the state outlives the arrays it came from
        stacked.append(part[0] if flat else part)
    return stacked[0] if len(stacked) == 1 else tuple(stacked)


# ----------------------------------------------------------------------------
# the training loop's fast path: validated once, one flat buffer, reused memory
# ----------------------------------------------------------------------------


def param_keys(params: dict[str, np.ndarray], shapes: Shapes) -> list[str]:
    """The keys of ``params`` in the network's order: layer by layer as the cell names
    them, then the head.  (A canonical order: a resumed run lays its buffers out alike.)"""
    module = get_cell(shapes.cell)
    names = [layer_key(n, layer) for layer in range(shapes.L) for n in module.PARAM_NAMES]
    return [k for k in [*names, *HEAD_NAMES] if k in params]


class Workspace:
    """The memory of repeated training steps on ONE parameter dict.

    Made once (validating the parameters once, with :func:`check_params`), it

    * packs the parameters into one flat buffer ``params_flat`` and REBINDS every entry
      of the dict to its view (the dict itself stays the same object, its arrays keep
      their shapes: checkpoints and every other caller see no difference);
    * holds the gradients as views ``grads`` of a second flat buffer ``grads_flat`` laid
      out alike, so an optimizer updates ``{"flat": params_flat}`` from
      ``{"flat": grads_flat}`` in a few vector operations, and the global norm is one sum;
    * keeps the cells' arrays (caches, errors, per-step views) between calls.

    ``backprop(params, …, workspace=ws)`` then skips :func:`check_params` (token ids and
    labels are still checked: one cheap max each, ops.any_outside) and returns views into the
    workspace, valid until the next call.
    """

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.shapes = check_params(params)
        self.layout = flat.layout_of(params, param_keys(params, self.shapes))
        self.params_flat, self._param_views = flat.pack(params, self.layout)
        self.grads_flat = np.zeros(self.layout.size, dtype=self.layout.dtype)
        self.grads = flat.views(self.grads_flat, self.layout)
        self.buffers = common.Buffers()

    def owns(self, params: dict[str, np.ndarray]) -> bool:
        """True when ``params`` is still the dict this workspace packed (same views)."""
        return flat.is_packed(params, self._param_views)

    def release(self) -> None:
        """Let go of the cells' arrays kept between calls (the next call makes them again);
        the flat parameter and gradient buffers stay."""
        self.buffers = common.Buffers(self.buffers.fixed_params)


# ----------------------------------------------------------------------------
# forward and backward of the whole network
# ----------------------------------------------------------------------------


class Forward(NamedTuple):
    """The forward pass: per-layer caches, the logits y (T, B, V), and the final state.

    flat: the initial state came as (B, H) rather than (L, B, H); states go back that way.
    top: the top layer's h_0 … h_{T−1} as (T·B, H) rows, what the head multiplied: a view of
    its cache's hs_by_row (no copy; for B > 1 a transposed view, F-ordered).
    """

    shapes: Shapes
    caches: list[Any]
    logits: np.ndarray
    state: State
    flat: bool
    top: np.ndarray | None = None


def forward(params: dict[str, np.ndarray], inputs: Any, h0: State = None) -> Forward:
    """Run the stack and the head.  inputs (T, B) ids or (T, B, D); h0 see module docstring."""
    shapes = check_params(params)
    x = check_inputs(inputs, shapes, params["Whh"].dtype)
    return forward_checked(params, shapes, x, h0)


def forward_checked(
    params: dict[str, np.ndarray],
    shapes: Shapes,
    x: np.ndarray,
    h0: State,
    work: common.Buffers | None = None,
) -> Forward:
    """:func:`forward` without validation: params passed :func:`check_params` (giving
    ``shapes``) and x passed :func:`check_inputs`.  For loops that step one token at a time.

    work: reusable memory (a :class:`Workspace`'s); the caches and logits then live in it
    and are overwritten by the next call.
    """
    module = get_cell(shapes.cell)
    states, flat_state = state_to_layers(h0, shapes, x.shape[1], params["Whh"].dtype)
    caches, logits, top = forward_layers(params, shapes, x, states, work)
    final = layers_to_state([module.final_state(c) for c in caches], flat_state)
    return Forward(shapes, caches, logits, final, flat_state, top)


def forward_layers(
    params: dict[str, np.ndarray],
    shapes: Shapes,
    x: np.ndarray,
    states: list[tuple[np.ndarray, ...]],
    work: common.Buffers | None = None,
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The stack and the head from per-layer initial states: (caches, logits (T, B, V), top).

    :func:`forward_checked` on its state in the per-layer form of :func:`state_to_layers`
    (checked: (B, H) arrays of the weights' dtype, finite), without making the public form
    of the final states (``module.final_state`` of each cache gives them, in ``work`` when
    there is one).  For a loop that carries the state itself (generation, one character at
    a time).  top: as :attr:`Forward.top`.
    """
    module = get_cell(shapes.cell)
    T, B = x.shape[:2]
    caches = []
    layer_input = x
    for layer in range(shapes.L):
        p = layer_params(params, layer, module.PARAM_NAMES)
        layer_work = None if work is None else work.child(f"layer{layer}")
        cache = module.sequence_forward(p, layer_input, states[layer], layer_work)
        caches.append(cache)
        layer_input = cache.hs[1:]
    # y_t = W^hy h_t + b_y for every t at once: one GEMM over all T·B rows, each h_t of the
    # top layer's cache as laid out for the GEMMs over all steps (rows of top: (T·B, H))
    Why = params["Why"]
    top = caches[-1].hs_by_row[:, B:].T
    logits = common.empty(work, "logits", (T, B, shapes.V), Why.dtype)
    np.matmul(top, Why.T, out=logits.reshape(-1, shapes.V))
    if "by" in params:
        logits += params["by"]
    return caches, logits, top


def forward_loss(
    params: dict[str, np.ndarray], inputs: Any, targets: Any, h0: State = None
) -> float:
    """J = Σ_t Σ_b −log p_t[label] alone (no backward): what finite differences evaluate."""
    fwd = forward(params, inputs, h0)
    labels = check_targets(targets, fwd.logits.shape[0], fwd.logits.shape[1], fwd.shapes.V)
    return ops.cross_entropy_forward(fwd.logits, labels)[0]


class Result(NamedTuple):
    """Everything the efficient backward computes.

    loss: J, the total over time and batch.  grads: same keys as params.
    state: the final state (to carry into the next chunk).  dJ_dstate0: ∂J/∂(initial
    state), in the form of the state.  dJ_dh: per layer the accumulated ∂J/∂h_k,
    (A, T, B, H) by age (A = 1 without truncation: row 0 is Σ_{t≥k} ∂J_t/∂h_k; with
    truncate=K, A = min(K, T)).
    """

    loss: float
    grads: dict[str, np.ndarray]
    state: State
    dJ_dstate0: State
    dJ_dh: list[np.ndarray]


def checked_shapes(
    params: dict[str, np.ndarray], cell: str | None, workspace: Workspace | None
) -> Shapes:
    """The sizes of ``params``: validated by :func:`check_params`, or, on the fast path, read
    off the :class:`Workspace` that packed (and validated) them, which must own them."""
    if workspace is None:
        return check_params(params, cell)
    if not isinstance(workspace, Workspace):
        raise BpttError(
            f"workspace must be a bptt.models.Workspace (made by Workspace(params)) or None, "
            f"got {type(workspace).__name__}"
        )
    if not workspace.owns(params):
        raise BpttError(
            "this workspace belongs to another parameter dict (or its arrays were replaced); "
            "make a new Workspace(params)"
        )
    if cell is not None and get_cell(cell) is not get_cell(workspace.shapes.cell):
        raise BpttError(f"cell={cell!r} but params are those of a {workspace.shapes.cell!r} cell")
    return workspace.shapes


def backprop(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: State = None,
    truncate: int | None = None,
    cell: str | None = None,
    *,
    workspace: Workspace | None = None,
) -> Result:
    """Forward, loss, and efficient BPTT through every layer.  See :func:`loss_and_grads`.

    workspace: the training loop's fast path (see :class:`Workspace`): params must be the
    dict the workspace packed; they are not validated again, and the result lives in the
    workspace (grads are views of ``workspace.grads_flat``), valid until the next call.
    """
    shapes = checked_shapes(params, cell, workspace)
    x = check_inputs(inputs, shapes, params["Whh"].dtype)
    labels = check_targets(targets, x.shape[0], x.shape[1], shapes.V)
    truncate = check_truncate(truncate, x.shape[0])
    work = None if workspace is None else workspace.buffers
    grads_out = None if workspace is None else workspace.grads
    return _backprop(params, shapes, x, labels, h0, truncate, work, grads_out)


def _backprop(
    params: dict[str, np.ndarray],
    shapes: Shapes,
    x: np.ndarray,
    labels: np.ndarray,
    h0: State,
    truncate: int | None,
    work: common.Buffers | None,
    grads_out: dict[str, np.ndarray] | None,
) -> Result:
    """:func:`backprop` after validation; work and grads_out: reusable memory or None."""
    fwd = forward_checked(params, shapes, x, h0, work)
    assert fwd.top is not None  # forward_checked keeps the top layer's rows
    T, B = labels.shape
    V = shapes.V
    A = common.num_ages(truncate)
    out = grads_out or {}
    # J = Σ_t Σ_b −log softmax(y_t)[label], and ∂J_t/∂y_t = p_t − onehot(label_t), computed
    # in place of the logits (the backward needs them no more)
    loss, dJ_dy = ops.cross_entropy_and_partial(
        fwd.logits.reshape(-1, V), labels.reshape(-1), out=fwd.logits.reshape(-1, V)
    )
    grads: dict[str, np.ndarray] = {}
    # y_t = W^hy h_t + b_y:  ∂J/∂W^hy = Σ_t dJ_dy_t h_tᵀ,  ∂J/∂b_y = Σ_t dJ_dy_t (one GEMM, one sum)
    grads["Why"] = _head_weight_gradient(dJ_dy, fwd.top, work, out.get("Why"))
    if "by" in params:
        grads["by"] = np.add.reduce(dJ_dy, axis=0, out=out.get("by"))
    # ∂J_t/∂h_t = W^hyᵀ dJ_dy_t: the head reaches h_t only from J_t, so all of it is age 0
    dJ_dh_local = _head_error(params["Why"], dJ_dy.reshape(T, B, V), A, shapes.cell, work)
    back = backprop_layers(params, fwd, dJ_dh_local, truncate, work, grads_out)
    grads.update(back.grads)
    grads = {key: grads[key] for key in params}
    return Result(loss, grads, fwd.state, back.dJ_dstate0, back.dJ_dh)


def _head_weight_gradient(
    dJ_dy: np.ndarray, top: np.ndarray, work: common.Buffers | None, out: np.ndarray | None
) -> np.ndarray:
    """∂J/∂W^hy = Σ_t dJ_dy_t h_tᵀ over all T·B rows at once: dJ_dy (T·B, V), top (T·B, H).

    For B > 1, top is the transposed view of the cache's hs_by_row (Forward.top); then the
    product is made transposed, Σ_t h_t dJ_dy_tᵀ = (H, T·B) (T·B, V), and copied into place
    (measured: 0.8–0.9 of the time of dJ_dyᵀ top with that top, at H = 100 … 512, B = 32).
    """
    if top.flags.c_contiguous:
        return np.matmul(dJ_dy.T, top, out=out)
    H, V = top.shape[1], dJ_dy.shape[1]
    transposed = np.matmul(top.T, dJ_dy, out=common.empty(work, "dJ_dWhy_T", (H, V), top.dtype))
    if out is None:
        return np.ascontiguousarray(transposed.T)
    np.copyto(out, transposed.T)
    return out


def _head_error(
    Why: np.ndarray, dJ_dy: np.ndarray, A: int, cell: str, work: common.Buffers | None
) -> np.ndarray:
    """∂J_t/∂h_t = W^hyᵀ ∂J_t/∂y_t for every t, (A, T, B, H) by age (all of it age 0).

    dJ_dy: (T, B, V).  A cell that sweeps in columns (COLUMNS) gets a view of (A, T, H, B)
    columns (B = 1: one GEMM over all T rows, which are the columns; else one GEMM over all
    T·B columns, then one copy of each step's block into place); others get rows, one GEMM.
    """
    T, B, V = dJ_dy.shape
    H = Why.shape[1]
    make = common.empty if A == 1 else common.zeros
    if getattr(get_cell(cell), "COLUMNS", False):
        dJ_dh_columns = make(work, "dJ_dh_local_columns", (A, T, H, B), dJ_dy.dtype)
        if B == 1:
            # one sequence: its columns (T, H, 1) are the same memory as rows (T, 1, H)
            np.matmul(dJ_dy.reshape(T, V), Why, out=dJ_dh_columns[0].reshape(T, H))
        else:
            # W^hyᵀ times every ∂J_t/∂y_t at once, (H, T·B); then each step's (H, B) block
            # into place (measured: 0.75 of the time of T products of (H, V) by (V, B) at
            # H = 100 and 256, B = 32; the same at H = 512)
            dJ_dh_by_row = common.empty(work, "dJ_dh_local_by_row", (H, T * B), dJ_dy.dtype)
            np.matmul(Why.T, dJ_dy.reshape(T * B, V).T, out=dJ_dh_by_row)
            np.copyto(dJ_dh_columns[0], dJ_dh_by_row.reshape(H, T, B).transpose(1, 0, 2))
        return dJ_dh_columns.transpose(0, 1, 3, 2)
    dJ_dh_rows = make(work, "dJ_dh_local", (A, T, B, H), dJ_dy.dtype)
    np.matmul(dJ_dy.reshape(-1, V), Why, out=dJ_dh_rows[0].reshape(-1, H))
    return dJ_dh_rows


class LayersBackward(NamedTuple):
    """What :func:`backprop_layers` returns: the stack's part of the backward.

    grads: ∂J/∂(every layer parameter), keys as in params (no head);  dJ_dstate0: ∂J/∂(initial
    state) in the public form of the state;  dJ_dh: per layer (A, T, B, H) by age.
    """

    grads: dict[str, np.ndarray]
    dJ_dstate0: State
    dJ_dh: list[np.ndarray]


def backprop_layers(
    params: dict[str, np.ndarray],
    fwd: Forward,
    dJ_dh_local: np.ndarray,
    truncate: int | None,
    work: common.Buffers | None = None,
    grads_out: dict[str, np.ndarray] | None = None,
) -> LayersBackward:
    """Efficient BPTT through every layer of the stack, from the top layer's outside error.

    fwd: the :func:`forward_checked` of the same params; dJ_dh_local: (A, T, B, H), the
    error reaching the top layer's h_k from the head, by age (A = 1: full BPTT).  Any head
    (bptt.heads) ends here.  work, grads_out: reusable memory (a Workspace's) or None.
    """
    shapes = fwd.shapes
    module = get_cell(shapes.cell)
    out = grads_out or {}
    grads: dict[str, np.ndarray] = {}
    dJ_dstate0: list[tuple[np.ndarray, ...]] = [()] * shapes.L
    dJ_dh: list[np.ndarray] = [np.empty(0)] * shapes.L
    for layer in range(shapes.L - 1, -1, -1):
        p_layer = layer_params(params, layer, module.PARAM_NAMES)
        layer_out = {n: out[layer_key(n, layer)] for n in p_layer} if grads_out else None
        back = module.sequence_backward(
            p_layer,
            fwd.caches[layer],
            dJ_dh_local,
            truncate,
            need_dx=layer > 0,
            work=None if work is None else work.child(f"layer{layer}"),
            grads_out=layer_out,
        )
        for name, g in back.grads.items():
            grads[layer_key(name, layer)] = g
        dJ_dstate0[layer] = back.dJ_dstate0
        dJ_dh[layer] = back.dJ_dh
        # the input of layer l is h^{l−1}: its error reaches layer l−1 at the same step and age
        dJ_dh_local = back.dJ_dx
    return LayersBackward(grads, layers_to_state(dJ_dstate0, fwd.flat), dJ_dh)


def loss_and_grads(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: State = None,
    truncate: int | None = None,
    cell: str | None = None,
) -> tuple[float, dict[str, np.ndarray], State]:
    """The loss J = Σ_t J_t, its gradient by efficient BPTT, and the final state.

    params: from :func:`init_params` (the cell kind is read off its shapes; ``cell`` may
    name it to be checked).  inputs: token ids (T, B) or dense (T, B, D).  targets:
    labels (T, B).  h0: initial state (module docstring), None = zeros.  truncate:
    None for full BPTT, or K >= 1 to keep only the terms with t − k < K.
    Returns (loss, grads, h_last): grads has exactly the keys of params; h_last is the
    final state in the form h0 had.  The literal double sum it equals is
    :func:`bptt.reference.loss_and_grads`.
    """
    result = backprop(params, inputs, targets, h0, truncate, cell)
    return result.loss, result.grads, result.state


def canonical_order(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same dict with its keys in :func:`init_params` order (layer by layer, then the head).

    A checkpoint stores its tensors sorted by name; training code that walks the keys
    in order (a flat buffer, a norm) must see the same order after a resume.
    """
    shapes = check_params(params)
    names = get_cell(shapes.cell).PARAM_NAMES
    order = [layer_key(n, layer) for layer in range(shapes.L) for n in names] + list(HEAD_NAMES)
    return {key: params[key] for key in order if key in params}
