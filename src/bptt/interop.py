"""PyTorch weights in and out: bptt parameter dicts <-> PyTorch state_dicts, safetensors only.

Legend: T time, B batch, D input size (the vocabulary, for a character model),
H hidden size, V output size, L layers, G gates (rnn 1, gru 3, lstm 4), K the size of
an embedding (``nn.Embedding(D, K)``) in a state_dict that has one.

The PyTorch twin of a bptt model is :class:`CharRNN`: ``.rnn`` is an ``nn.RNN``
(tanh), ``nn.LSTM`` or ``nn.GRU`` (``batch_first=False``, time-major like bptt) and
``.head`` an ``nn.Linear``.  Its ``state_dict`` names and shapes are PyTorch's own:

    bptt key        torch key               shape
    Wxh / Wxh_l{l}  rnn.weight_ih_l{l}      (G·H, D) for l = 0, (G·H, H) above
    Whh / Whh_l{l}  rnn.weight_hh_l{l}      (G·H, H)
    bxh             rnn.bias_ih_l{l}        (G·H,)      lstm, gru
    bhh             rnn.bias_hh_l{l}        (G·H,)      lstm, gru
    bh              rnn.bias_ih_l{l}        (H,)        rnn: b_h, and bias_hh_l{l} = 0
    Why             head.weight             (V, H)
    by              head.bias               (V,)

Gates are stacked in PyTorch's order (lstm i, f, g, o; gru r, z, n), exactly as
bptt stores them, so weights move without any reordering.

* The vanilla RNN has ONE bias b_h; PyTorch's nn.RNN has two that are only ever
  added.  Export writes bias_ih = b_h, bias_hh = 0; import reads b_h = bias_ih +
  bias_hh.  :class:`CharRNN` freezes bias_hh (``requires_grad=False``) so that
  training in torch moves b_h exactly as bptt does (otherwise both biases would
  move and b_h would learn at twice the rate).
* A bias-free model (``bias=False``) exports no bias keys at all and loads into
  ``bias=False`` modules.
* Token ids are one-hot inputs: there is no nn.Embedding.  Column j of
  ``rnn.weight_ih_l0`` is the embedding of token j (``W^xh onehot(j) = W^xh[:, j]``),
  and :meth:`CharRNN.forward` turns an integer (T, B) tensor into one-hot (T, B, D).

Other layouts.  :func:`from_torch_state_dict` also reads the state_dicts of character
models written in PyTorch under other names: :func:`read_layout` finds, by the keys'
structure and shapes, the recurrent module (any name P: ``P.weight_ih_l0``, …; nested
names like ``model.rnn`` too), the head (Q: ``Q.weight`` (V, H) and ``Q.bias`` (V,) or
none) and an optional embedding (E: ``E.weight`` (D, K) alone, K the input size of
``P.weight_ih_l0``), e.g. ``lstm``/``fc`` or PyTorch's word_language_model's
``encoder``/``rnn``/``decoder``.  A state_dict it cannot read unambiguously is refused,
naming the candidates; ``rnn=``, ``head=``, ``embedding=`` say which module is which.
An embedding is folded into layer 0's input weights: x_t = E[id] = Eᵀ onehot(id), so

    W_ih x_t = (W_ih Eᵀ) onehot(id) = (W_ih Eᵀ)[:, id],      W^xh = W_ih Eᵀ  (G, D)

computed in float64 and cast to the result's dtype.  The fold is exact math, but its
float round-off is not that of the lookup followed by the product: logits agree to
round-off, not bit for bit.  An export writes bptt's own layout (one-hot inputs, no
embedding): a different module, with the same outputs.  A tied embedding (the head's
weight is the embedding, ``decoder.weight = encoder.weight``) saved once, as
``safetensors.torch.save_model`` saves it, is read with ``embedding=`` the head's name.

Files.  :func:`write_torch_safetensors` stores a state_dict with JSON metadata
(``__metadata__["bptt"]``: format, kind ``"torch_state_dict"``, the model's cell and
sizes, vocabulary, training settings); :func:`read_torch_safetensors` reads such a
file or any safetensors file (e.g. one written by ``safetensors.torch.save_file``),
validating the header before anything is allocated.  Nothing here pickles,
unpickles, or calls ``torch.save`` / ``torch.load``.

torch is optional: this module imports without it; :func:`torch_module` and the
other torch-only helpers import it when called and raise a BpttError when it is
missing.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from bptt import checkpoint, models, ops
from bptt.cells import CELLS, get_cell
from bptt.data import Vocab
from bptt.errors import (
    BpttError,
    CheckpointError,
    DataError,
    as_array,
    check_bool,
    check_int,
    parse_json,
)

KIND = checkpoint.EXPORT_KIND
RNN_NAME, HEAD_NAME = "rnn", "head"  # the modules of bptt's own layout (CharRNN's .rnn, .head)
HEAD_WEIGHT = f"{HEAD_NAME}.weight"
HEAD_BIAS = f"{HEAD_NAME}.bias"
# what a wrapper adds in front of every key of the module it wraps: DistributedDataParallel
# (and DataParallel) ``module.``, torch.compile ``_orig_mod.``; either may wrap the other
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_MODEL_FIELDS = ("cell", "num_layers", "input_size", "hidden_size", "output_size")
# a saved estimator's entries (bptt train --task's run too), carried through an export and
# back by an import, so that SequenceClassifier.load / SequenceRegressor.load read it again
CARRIED = ("estimator", "info")


def carried_entries(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of :data:`CARRIED` that the metadata ``meta`` holds."""
    given = meta or {}
    return {key: given[key] for key in CARRIED if key in given}


def torch_key(name: str, layer: int) -> str:
    """The state_dict key of one recurrent tensor: ("weight_hh", 1) -> "rnn.weight_hh_l1"."""
    return BPTT_LAYOUT.key(name, layer)


def _layer_keys(rnn: str) -> re.Pattern[str]:
    """The keys of the recurrent module ``rnn``'s tensors: groups (name, layer)."""
    return re.compile(rf"^{re.escape(rnn)}\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")


# ----------------------------------------------------------------------------
# parameter dicts <-> state_dicts (NumPy only)
# ----------------------------------------------------------------------------


def _params_dict(params: Any, name: str = "params") -> dict[str, Any]:
    """A mapping of parameters as a dict; anything else is a BpttError (not a TypeError)."""
    if not isinstance(params, Mapping):
        raise BpttError(f"{name} must be a dict of arrays, got {type(params).__name__}")
    return dict(params)


def to_torch_state_dict(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyTorch state_dict (NumPy arrays, copies) of a bptt parameter dict.

    params: from :func:`bptt.init_params` or a checkpoint.  Returns the keys of the
    module docstring's table in :class:`CharRNN`'s order; a vanilla RNN's b_h (H,)
    becomes bias_ih = b_h and bias_hh = zeros (H,).  A bias-free model gives no bias
    keys.  The recurrent biases must be present in every layer or in none (PyTorch
    has one ``bias`` flag per module).
    """
    params = _params_dict(params)
    shapes = models.check_params(params)
    rnn_bias = recurrent_bias(params, shapes)
    out: dict[str, np.ndarray] = {}
    for layer in range(shapes.L):
        key = functools.partial(models.layer_key, layer=layer)
        out[torch_key("weight_ih", layer)] = np.array(params[key("Wxh")])
        out[torch_key("weight_hh", layer)] = np.array(params[key("Whh")])
        if rnn_bias and shapes.cell == "rnn":
            out[torch_key("bias_ih", layer)] = np.array(params[key("bh")])
            out[torch_key("bias_hh", layer)] = np.zeros_like(params[key("bh")])
        elif rnn_bias:
            out[torch_key("bias_ih", layer)] = np.array(params[key("bxh")])
            out[torch_key("bias_hh", layer)] = np.array(params[key("bhh")])
    out[HEAD_WEIGHT] = np.array(params["Why"])
    if "by" in params:
        out[HEAD_BIAS] = np.array(params["by"])
    return out


def to_torch_grads(grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The gradient with respect to the state_dict of :func:`to_torch_state_dict`.

    Equal to :func:`to_torch_state_dict` of ``grads`` except for the vanilla RNN's
    biases: b_h = bias_ih + bias_hh, so ∂J/∂bias_ih = ∂J/∂bias_hh = ∂J/∂b_h (the
    gradient torch autograd gives for an unfrozen bias_hh).
    """
    grads = _params_dict(grads, "grads")
    out = to_torch_state_dict(grads)
    if models.infer_cell(grads) == "rnn":
        for key in out:
            match = _LAYER_KEY.match(key)
            if match and match.group(1) == "bias_hh":
                out[key] = np.array(out[torch_key("bias_ih", int(match.group(2)))])
    return out


def recurrent_bias(params: Mapping[str, np.ndarray], shapes: models.Shapes) -> bool:
    """Whether the recurrent layers have biases (all of them), or raise if only some do."""
    keys = models.recurrent_bias_keys(shapes)
    present = [key in params for key in keys]
    if any(present) and not all(present):
        missing = [key for key in keys if key not in params]
        raise BpttError(
            f"params has recurrent biases in some layers but not {', '.join(missing)}: "
            "a PyTorch module has biases in every layer or in none"
        )
    return all(present)


def model_config(params: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The model config of a parameter dict, as ``checkpoint.model_meta(...)["model"]``.

    Keys: cell, num_layers, input_size, hidden_size, output_size, bias (recurrent
    biases), head_bias, dtype.  This is what :func:`torch_module` builds from.
    """
    params = _params_dict(params)
    shapes = models.check_params(params)
    recurrent_bias(params, shapes)  # a torch module has biases in every layer or in none
    return checkpoint.model_entry(params, shapes)


def from_torch_state_dict(
    sd: Mapping[str, Any],
    cell: str | None = None,
    dtype: Any = None,
    *,
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> dict[str, np.ndarray]:
    """The bptt parameter dict of a PyTorch state_dict (the reverse of to_torch_state_dict).

    sd: key -> array or CPU tensor, with the keys of the module docstring (the state_dict
    of a wrapped module is accepted too: every key starting with DDP's ``module.`` or
    torch.compile's ``_orig_mod.``, or both), or those of another character model: its
    recurrent module, head and optional embedding are found by :func:`read_layout`.
    cell: "rnn", "lstm" or "gru"; None reads it off the shape of rnn.weight_hh_l0
    (G·H rows); when given, weights of another cell are refused.  dtype: the float type
    of the result; None keeps the state_dict's (float16 becomes float32).
    rnn, head, embedding: the names of those modules (``"lstm"``, ``"model.rnn"``), for a
    state_dict whose layout cannot be read off its shapes; None reads them.  An embedding
    (D, K) is folded into W^xh = weight_ih_l0 @ embeddingᵀ (G, D), computed in float64.
    rnn: b_h = bias_ih + bias_hh.  Returns a dict of fresh arrays that passes
    :func:`bptt.models.check_params`.  A state_dict does not say an ``nn.RNN``'s
    nonlinearity: one of ``nonlinearity="relu"`` is read as tanh, bptt's only RNN (use
    :func:`from_torch_module`, which refuses it).

    Raises:
        CheckpointError naming the offending key: a key missing or unexpected, a shape
        that does not fit (including a cell other than ``cell``: its gate count), a
        non-float or non-finite tensor; or naming the candidates when the layout is
        ambiguous (two modules that could each be the head or the embedding).
    """
    arrays = _as_arrays(sd)
    if cell is not None:
        get_cell(cell)  # BpttError for an unknown cell (a list or dict too, not a TypeError)
    layout = _read_layout({k: a.shape for k, a in arrays.items()}, _wrapper_prefix(list(sd)),
                          rnn, head, embedding)
    layers = _check_keys(arrays, layout)
    kind, H = _read_cell(arrays, cell, layout)
    G = get_cell(kind).GATES * H
    bias = layout.key("bias_ih", 0) in arrays or layout.key("bias_hh", 0) in arrays
    # the input size of layer 0: D one-hot inputs, or K, an embedding's size
    D = _shape_of(arrays, layout.key("weight_ih", 0), 2, f"({G}, D)")[1]
    V = _shape_of(arrays, layout.head_weight, 2, f"(V, {H})")[0]
    if layout.head_bias in arrays and arrays[layout.head_bias].shape[:1] != (V,):
        raise CheckpointError(
            f"{layout.head_weight!r} has shape {arrays[layout.head_weight].shape} but "
            f"{layout.head_bias!r} has shape {arrays[layout.head_bias].shape}: they disagree "
            "on the output size V"
        )
    expected: dict[str, tuple[int, ...]] = {}
    for layer in range(layers):
        expected[layout.key("weight_ih", layer)] = (G, D if layer == 0 else H)
        expected[layout.key("weight_hh", layer)] = (G, H)
        if bias:
            expected[layout.key("bias_ih", layer)] = (G,)
            expected[layout.key("bias_hh", layer)] = (G,)
    expected[layout.head_weight] = (V, H)
    if layout.head_bias in arrays:
        expected[layout.head_bias] = (V,)
    if layout.embedding_weight is not None:
        expected[layout.embedding_weight] = _embedding_shape(arrays, layout, D)
    _check_against(arrays, expected, kind, H)
    target = _result_dtype(arrays, dtype)

    def tensor(name: str, layer: int) -> np.ndarray:
        return arrays[layout.key(name, layer)].astype(target)

    params: dict[str, np.ndarray] = {}
    for layer in range(layers):
        key = functools.partial(models.layer_key, layer=layer)
        if layer == 0 and layout.embedding_weight is not None:
            params[key("Wxh")] = fold_embedding(arrays[layout.key("weight_ih", 0)],
                                                arrays[layout.embedding_weight], target)
        else:
            params[key("Wxh")] = tensor("weight_ih", layer)
        params[key("Whh")] = tensor("weight_hh", layer)
        if bias and kind == "rnn":  # b_h = bias_ih + bias_hh
            with np.errstate(over="ignore"):  # an overflow (inf) is refused below, unwarned
                params[key("bh")] = tensor("bias_ih", layer) + tensor("bias_hh", layer)
        elif bias:
            params[key("bxh")] = tensor("bias_ih", layer)
            params[key("bhh")] = tensor("bias_hh", layer)
    params["Why"] = arrays[layout.head_weight].astype(target)
    if layout.head_bias in arrays:
        params["by"] = arrays[layout.head_bias].astype(target)
    try:
        models.check_params(params, kind)
    except BpttError as exc:  # e.g. a bias_ih + bias_hh that overflows
        raise CheckpointError(f"the state_dict does not make a valid {kind} model: {exc}") from exc
    return params


def fold_embedding(W_ih: np.ndarray, E: np.ndarray, dtype: Any = None) -> np.ndarray:
    """W^xh (G, D) of one-hot inputs that gives what weight_ih (G, K) gives an embedding E (D, K).

    x_t = E[id] = Eᵀ onehot(id), so W_ih x_t = (W_ih Eᵀ) onehot(id) = (W_ih Eᵀ)[:, id]:
    W^xh = W_ih Eᵀ, computed in float64 and cast to ``dtype`` (None: float64).  Exact math;
    the round-off is the product's, not that of the lookup followed by W_ih (the logits
    agree to round-off, not bit for bit).
    """
    product = np.asarray(W_ih, dtype=np.float64) @ np.asarray(E, dtype=np.float64).T
    with np.errstate(over="ignore"):  # an overflow (inf) is refused by check_params, unwarned
        return product.astype(dtype or np.float64)


class Layout(NamedTuple):
    """Which modules of a state_dict make a character model, by name (a key's prefix without
    its final dot): the recurrent module, the head, and the embedding (None: one-hot inputs,
    bptt's own layout).  An embedding named as the head is tied: the head's weight is it."""

    rnn: str = RNN_NAME
    head: str = HEAD_NAME
    embedding: str | None = None

    def key(self, name: str, layer: int) -> str:
        """The key of one recurrent tensor: ("weight_hh", 1) -> "<rnn>.weight_hh_l1"."""
        return f"{self.rnn}.{name}_l{layer}"

    @property
    def head_weight(self) -> str:
        """The key of the head's weight (V, H)."""
        return f"{self.head}.weight"

    @property
    def head_bias(self) -> str:
        """The key of the head's bias (V,), if it has one."""
        return f"{self.head}.bias"

    @property
    def embedding_weight(self) -> str | None:
        """The key of the embedding (D, K), or None."""
        return None if self.embedding is None else f"{self.embedding}.weight"

    def describe(self) -> str:
        """The keys this layout reads, for a message: "rnn.weight_ih_l0, …, head.weight, …"."""
        tied = self.embedding in (None, self.head)
        return (f"{self.key('weight_ih', 0)}, …, {self.head_weight}, {self.head_bias}"
                + ("" if tied else f", {self.embedding_weight}"))


BPTT_LAYOUT = Layout()
_LAYER_KEY = _layer_keys(BPTT_LAYOUT.rnn)  # rnn.weight_ih_l0, …
# a parameter of a recurrent torch module (bidirectional and projected ones too, refused later)
_RECURRENT_PARAM = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?$")


def read_layout(
    sd: Mapping[str, Any],
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> Layout:
    """Which modules of a state_dict are the recurrent module, the head and the embedding.

    sd: key -> array or tensor, wrappers' prefixes as :func:`from_torch_state_dict` takes
    them.  rnn, head, embedding: the names given (None:
    read off the structure).  The recurrent module is the one module with recurrent
    tensors (``rnn`` if that is one); the head, a module of ``weight`` (V, H) and an
    optional ``bias`` (V,) (``head`` if there is one); the embedding, a module of only
    ``weight`` (D, K), K the input size of weight_ih_l0.  Every module must have a part.

    Raises:
        CheckpointError naming the candidates when more than one layout fits, and naming a
        given module the state_dict does not have.  A state_dict that fits no layout gives
        the layout closest to it, whose checks (:func:`from_torch_state_dict`) name the key
        that does not fit.
    """
    arrays = _as_arrays(sd)
    return _read_layout({k: a.shape for k, a in arrays.items()}, _wrapper_prefix(list(sd)),
                        rnn, head, embedding)


def _read_layout(
    shapes: Mapping[str, tuple[int, ...]],
    strip: str,
    rnn: str | None,
    head: str | None,
    embedding: str | None,
) -> Layout:
    """:func:`read_layout` of key -> shape, the wrappers' prefix ``strip`` already dropped
    from the keys (a module given with it is found without it)."""
    modules = _modules(shapes)
    given_rnn, given_head, given_embedding = (
        _given_module(role, name, modules, strip)
        for role, name in (("rnn", rnn), ("head", head), ("embedding", embedding)))
    rnn = given_rnn or _the_rnn(modules)
    ih, hh = (modules.get(rnn, {}).get(f"weight_{name}_l0") for name in ("ih", "hh"))
    K = ih[1] if ih is not None and len(ih) == 2 else None
    H = hh[1] if hh is not None and len(hh) == 2 else None
    others = [name for name in modules if name != rnn]
    heads = ([given_head] if given_head else [BPTT_LAYOUT.head] if BPTT_LAYOUT.head in modules
             else [name for name in others if _fits_head(modules[name], H)])
    embeddings = ([given_embedding] if given_embedding
                  else [name for name in others if _fits_embedding(modules[name], K)])
    fits = [(h, e) for h in heads for e in (embeddings if given_embedding else [*embeddings, None])
            if (e != h or given_embedding) and set(others) <= {h, e}]
    if len(fits) == 1:
        return Layout(rnn, *fits[0])
    if len(fits) > 1:  # two modules, each of which could be the head or the embedding
        first, second = fits[0]
        assert second is not None  # (two modules, each fitting both roles)
        raise CheckpointError(
            f"cannot tell the head from the embedding: {first!r} (weight "
            f"{modules[first]['weight']}) and {second!r} (weight {modules[second]['weight']}) "
            f"each fit both (no bias, and H = K = {H}); say which with --head PREFIX "
            f"--embedding PREFIX, e.g. --head {first} --embedding {second} (head={first!r}, "
            f"embedding={second!r})"
        )
    if len(heads) > 1:
        raise CheckpointError(
            f"the state_dict has {len(heads)} modules that fit the head (weight (V, "
            f"{'H' if H is None else H}), bias (V,) or none): {_names(heads)}; say which with "
            "--head PREFIX (head=)"
        )
    # nothing fits every module: the closest layout, whose checks name the key that does not fit
    lone = [e for e in embeddings if e not in heads]
    return Layout(rnn, heads[0] if heads else BPTT_LAYOUT.head,
                  given_embedding or (lone[0] if len(lone) == 1 else None))


def _modules(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, tuple[int, ...]]]:
    """module -> {parameter: shape}: "model.rnn.weight_hh_l0" is the parameter "weight_hh_l0"
    of the module "model.rnn" (a key without a dot, of the module "")."""
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        module, _, name = key.rpartition(".")
        modules.setdefault(module, {})[name] = shape
    return modules


def _names(modules: list[str]) -> str:
    """Module names for a message: 'a', 'b'."""
    return ", ".join(repr(name) for name in modules)


def _given_module(
    role: str, name: Any, modules: Mapping[str, Any], strip: str
) -> str | None:
    """The module given for ``role`` (None: not given), one of ``modules``; a final dot and the
    wrappers' prefix ``strip`` are allowed ("module.lstm." is "lstm" of a DDP state_dict)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise BpttError(f"{role} must be a module name (a str), got {type(name).__name__}")
    found = name[:-1] if name.endswith(".") else name
    if found not in modules and strip and f"{found}.".startswith(strip):
        found = found[len(strip):]
    if found not in modules or not found:
        raise CheckpointError(
            f"--{role} {name!r} ({role}={name!r}) names no module of the state_dict; its "
            f"modules: {_names(sorted(m for m in modules if m))}"
        )
    return found


def _the_rnn(modules: Mapping[str, Mapping[str, Any]]) -> str:
    """The recurrent module: ``rnn`` if it is one, else the only module with recurrent tensors
    (``rnn`` when there is none, which the checks then say is missing)."""
    found = [name for name, params in modules.items()
             if name and any(_RECURRENT_PARAM.match(param) for param in params)]
    if BPTT_LAYOUT.rnn in found or not found:
        return BPTT_LAYOUT.rnn
    if len(found) > 1:
        raise CheckpointError(
            f"the state_dict has {len(found)} recurrent modules ({_names(found)}); bptt "
            "imports one: say which with --rnn PREFIX (rnn=)"
        )
    return found[0]


def _fits_head(params: Mapping[str, tuple[int, ...]], H: int | None) -> bool:
    """Whether a module's parameters are a head's: weight (V, H), bias (V,) or none."""
    weight, bias = params.get("weight"), params.get("bias")
    return (weight is not None and len(weight) == 2 and set(params) <= {"weight", "bias"}
            and (H is None or weight[1] == H) and (bias is None or bias == weight[:1]))


def _fits_embedding(params: Mapping[str, tuple[int, ...]], K: int | None) -> bool:
    """Whether a module's parameters are an embedding's: only weight (D, K)."""
    weight = params.get("weight")
    return (set(params) == {"weight"} and weight is not None and len(weight) == 2
            and weight[1] == K)


def _embedding_shape(arrays: dict[str, np.ndarray], layout: Layout, K: int) -> tuple[int, int]:
    """The shape (D, K) of the layout's embedding, which must give layer 0 its K inputs."""
    key = layout.embedding_weight
    assert key is not None
    D, width = _shape_of(arrays, key, 2, f"(D, {K})")
    if width != K:
        raise CheckpointError(
            f"{key!r} has shape {(D, width)}, expected (D, {K}): an embedding gives "
            f"{layout.key('weight_ih', 0)!r} its {K} inputs"
        )
    return D, width


def _as_arrays(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """key -> NumPy array (tensors are detached and copied to the CPU); the prefixes of
    wrappers (:data:`WRAPPER_PREFIXES`) that every key has are dropped."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"a state_dict must be a dict of arrays, got {type(sd).__name__}")
    strip = _wrapper_prefix(list(sd))
    arrays = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"state_dict key {key!r} is not a string")
        if hasattr(value, "detach"):  # a torch tensor, without importing torch
            try:
                value = value.detach().cpu().numpy()
            except (TypeError, RuntimeError) as exc:  # e.g. bfloat16, which NumPy lacks
                raise CheckpointError(f"{key!r} cannot become a NumPy array: {exc}") from exc
        try:
            array = np.asarray(value)
        except ValueError as exc:  # e.g. ragged nested lists
            raise CheckpointError(f"{key!r} cannot become a NumPy array: {exc}") from exc
        arrays[key[len(strip):]] = array
    return arrays


def _wrapper_prefix(keys: list[Any]) -> str:
    """The wrappers' prefixes that every key starts with, outermost first (e.g.
    ``_orig_mod.module.``); "" when there are none, or when a key is not a string."""
    prefix = ""
    while keys and all(isinstance(k, str) for k in keys):
        added = next((p for p in WRAPPER_PREFIXES
                      if all(k.startswith(prefix + p) for k in keys)), None)
        if added is None:
            break
        prefix += added
    return prefix


def _check_keys(arrays: dict[str, np.ndarray], layout: Layout) -> int:
    """Refuse keys that are not the layout's; return L (1 + the highest layer index seen)."""
    layer_key = _layer_keys(layout.rnn)
    known = {layout.head_weight, layout.head_bias, layout.embedding_weight}
    layers = 0
    for key in arrays:
        match = layer_key.match(key)
        if match:
            layers = max(layers, int(match.group(2)) + 1)
        elif key not in known:
            hint = ""
            if key.endswith("_reverse"):
                hint = " (bidirectional modules are not supported)"
            elif "_hr_" in key or "proj" in key:  # weight_hr_l0: an LSTM's projection
                hint = " (LSTM projections, proj_size > 0, are not supported)"
            elif not key.startswith((f"{layout.rnn}.", f"{layout.head}.")):
                hint = f" (expected {layout.describe()})"
            raise CheckpointError(f"unexpected key {key!r} in the state_dict{hint}")
    if layout.key("weight_hh", 0) not in arrays:
        raise CheckpointError(
            f"the state_dict is missing the key {layout.key('weight_hh', 0)!r}")
    return layers


def _shape_of(arrays: dict[str, np.ndarray], key: str, ndim: int, form: str) -> tuple[int, ...]:
    """The shape of arrays[key], which must exist and have ``ndim`` dimensions."""
    if key not in arrays:
        raise CheckpointError(f"the state_dict is missing the key {key!r}")
    shape = arrays[key].shape
    if len(shape) != ndim:
        raise CheckpointError(f"{key!r} has shape {shape}, expected {form}")
    return shape


def _read_cell(arrays: dict[str, np.ndarray], cell: str | None, layout: Layout) -> tuple[str, int]:
    """(cell, H) from rnn.weight_hh_l0 (G·H, H); a gate count not of ``cell`` raises."""
    key = layout.key("weight_hh", 0)
    rows, H = _shape_of(arrays, key, 2, "(G·H, H)")
    kinds = {get_cell(k).GATES: k for k in CELLS}
    found = kinds.get(rows // H) if H and rows % H == 0 else None
    if cell is not None and found != cell:
        G = get_cell(cell).GATES
        what = f"the weights of a {found!r} cell" if found else "no known cell"
        raise CheckpointError(
            f"{key!r} has shape {(rows, H)}: {what}, but cell={cell!r} needs "
            f"({G}·H, H) = ({G * H}, {H}) ({G} gate{'s' if G > 1 else ''})"
        )
    if found is None:
        raise CheckpointError(
            f"{key!r} has shape {(rows, H)}: expected (H, H) rnn, (3H, H) gru or (4H, H) lstm"
        )
    return found, H


def _check_against(
    arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], cell: str, H: int
) -> None:
    """Every expected key present, with its shape, float and finite; nothing else."""
    for key in expected:
        if key not in arrays:
            raise CheckpointError(f"the state_dict is missing the key {key!r} ({cell}, H={H})")
    for key, value in arrays.items():
        if key not in expected:
            raise CheckpointError(f"unexpected key {key!r} in the state_dict of a {cell} model")
        if value.dtype.kind != "f":
            raise CheckpointError(f"{key!r} has dtype {value.dtype}; expected a float tensor")
        if value.shape != expected[key]:
            raise CheckpointError(
                f"{key!r} has shape {value.shape}, expected {expected[key]} for a {cell} "
                f"model with hidden size {H}"
            )
        if not np.isfinite(value).all():
            raise CheckpointError(f"{key!r} contains NaN or inf")


def _result_dtype(arrays: dict[str, np.ndarray], dtype: Any) -> np.dtype:
    """The requested float dtype, or the common dtype of the tensors (at least float32)."""
    if dtype is not None:
        return np.dtype(models.check_float_dtype(dtype))
    return np.result_type(np.float32, *(a.dtype for a in arrays.values()))


# ----------------------------------------------------------------------------
# safetensors files of torch state_dicts
# ----------------------------------------------------------------------------


def export_meta(
    params: Mapping[str, np.ndarray],
    vocab: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    step: int = 0,
    carried: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON metadata of an exported state_dict: format, kind, model config, vocab, settings
    (a model file's metadata, :func:`bptt.checkpoint.model_meta`, whose "model" is
    :func:`model_config`, with this format's header).  carried: the model file's entries of
    :data:`CARRIED` (a saved estimator: its inputs are dense features, not token ids)."""
    params = _params_dict(params)
    meta = checkpoint.model_meta(params, vocab, config or {}, step)
    # a torch module has one bias flag: biases in some layers only are refused
    recurrent_bias(params, models.check_params(params))
    carried = carried_entries(carried)
    dense = "estimator" in carried
    return {
        **meta,
        **carried,
        **checkpoint.header(KIND),
        "torch": {
            "module": "bptt.interop.CharRNN",
            "rnn": f"torch.nn.{TORCH_CLASSES[meta['model']['cell']]}",
            "batch_first": False,
            "input": "dense features (T, B, D)" if dense
            else "one-hot: token j is column j of rnn.weight_ih_l0",
        },
    }


def write_torch_safetensors(
    path: str | os.PathLike[str],
    params: Mapping[str, np.ndarray],
    vocab: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    step: int = 0,
    carried: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write the torch state_dict of ``params`` and :func:`export_meta` to ``path`` atomically
    (overwrite: False refuses a file there, as checkpoint.write_safetensors_atomic does).

    The file loads with ``safetensors.torch.load_file`` straight into
    ``torch_module(meta["model"]).load_state_dict(..., strict=True)``.  Returns the path.
    """
    target = Path(path)
    meta = export_meta(params, vocab, config, step, carried)
    checkpoint.check_vocab_to_save(target, meta)
    # no checksums: an export is meant to be trained elsewhere and written back with its
    # metadata (examples/ddp_train.py), which must not then read as damage
    checkpoint.write_safetensors_atomic(target, to_torch_state_dict(params), meta, checksums=False,
                                        overwrite=overwrite)
    return target


def read_torch_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Return (tensors, bptt metadata or None) of any safetensors file.

    The header is validated before anything is allocated (as
    :func:`bptt.checkpoint.read_safetensors` does); files without bptt metadata (e.g.
    written by ``safetensors.torch.save_file``) give None.  Metadata written by bptt
    must be a ``torch_state_dict`` of this format version.
    """
    file = Path(path)
    tensors, metadata = checkpoint.read_any_safetensors(file)
    meta = _foreign_meta(file, metadata)
    return {k: tensors[k] for k in sorted(tensors, key=_key_order)}, meta


def _key_order(key: str) -> tuple[int, int, str]:
    """Sort state_dict keys as a module lists them: layer by layer, then the head."""
    match = _LAYER_KEY.match(key)
    if match:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return int(match.group(2)), names.index(match.group(1)), key
    return 1 << 30, 0 if key == HEAD_WEIGHT else 1, key


def _foreign_meta(file: Path, metadata: Any) -> dict[str, Any] | None:
    """The bptt metadata of a safetensors header, or None when there is none."""
    if not isinstance(metadata, dict) or checkpoint.METADATA_KEY not in metadata:
        return None
    try:
        meta = parse_json(metadata[checkpoint.METADATA_KEY])
    except (TypeError, ValueError) as exc:  # TypeError: a value that is no string
        raise CheckpointError(f"{file}: its bptt metadata is not valid JSON.") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{file}: its bptt metadata is not a JSON object.")
    if meta.get("kind") == "model" and meta.get("format") == checkpoint.FORMAT:
        raise CheckpointError(
            f"{file} is a bptt checkpoint already (kind 'model'), not an exported torch "
            "state_dict; use it directly (bptt sample, bptt export)."
        )
    checkpoint.check_format(file, meta, KIND)
    return meta


def file_layout(
    path: str | os.PathLike[str],
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> Layout:
    """:func:`read_layout` of a safetensors file's state_dict, from its header only."""
    file = Path(path)
    shapes = checkpoint.read_shapes(file)
    strip = _wrapper_prefix(list(shapes))
    try:
        return _read_layout({k[len(strip):]: v for k, v in shapes.items()}, strip, rnn, head,
                            embedding)
    except CheckpointError as exc:
        raise CheckpointError(f"{file}: {exc}") from exc


def has_bptt_metadata(path: str | os.PathLike[str]) -> bool:
    """Whether a readable safetensors file carries bptt's metadata (reads the header only).

    A file without it (``safetensors.torch.save_file(module.state_dict())``) does not say
    which nonlinearity its ``nn.RNN`` used: a ReLU RNN's state_dict is a tanh RNN's.
    """
    try:
        checkpoint.read_metadata(path)
    except CheckpointError:
        return False
    return True


def params_from_file(
    path: str | os.PathLike[str],
    cell: str | None = None,
    *,
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """(bptt params, bptt metadata or None) of a torch state_dict safetensors file.

    The cell comes from the file's metadata when bptt wrote it (``cell``, if also given,
    must agree), else from ``cell``; without either it is read off the weight shapes.
    The metadata's sizes must match the weights.  rnn, head, embedding: the modules'
    names, as :func:`from_torch_state_dict` takes them.
    """
    file = Path(path)
    tensors, meta = read_torch_safetensors(file)
    model = (meta or {}).get("model")
    if meta is not None:
        if not isinstance(model, dict) or any(k not in model for k in _MODEL_FIELDS) \
                or not isinstance(model["cell"], str):
            raise CheckpointError(f"{file}: its bptt metadata has no valid 'model' entry.")
        if cell is not None and cell != model["cell"]:
            raise CheckpointError(
                f"{file} holds a {model['cell']!r} model (its metadata says so), not {cell!r}"
            )
        cell = model["cell"]
    try:
        params = from_torch_state_dict(tensors, cell=cell, rnn=rnn, head=head,
                                       embedding=embedding)
    except CheckpointError as exc:
        raise CheckpointError(f"{file}: {exc}") from exc
    if model is not None:
        found = model_config(params)
        if model["cell"] != found["cell"]:
            raise CheckpointError(
                f"{file} metadata says cell={model['cell']!r} but the weights are a "
                f"{found['cell']!r} cell's"
            )
        checkpoint.check_model_sizes(
            file, model, {k: found[k] for k in _MODEL_FIELDS if k != "cell"}
        )
        checkpoint.check_model_kinds(file, model, found)
    return params, meta


# ----------------------------------------------------------------------------
# the PyTorch module (torch imported only here)
# ----------------------------------------------------------------------------


def _torch() -> Any:
    """The torch module, or a BpttError saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise BpttError(
            "this needs PyTorch, which is not installed: pip install 'bptt[torch]'"
        ) from exc
    return torch


@functools.cache
def char_rnn_class() -> type:
    """The class :class:`CharRNN` (built on first use, so that torch stays optional)."""
    torch = _torch()
    nn = torch.nn
    if TYPE_CHECKING:  # (a checker sees torch's class, or Any without torch)
        from torch.nn import Module
    else:
        Module = nn.Module

    class CharRNN(Module):
        """bptt's network in PyTorch: ``.rnn`` (nn.RNN tanh / nn.LSTM / nn.GRU) and ``.head``.

        forward(x, h0=None) -> (logits (T, B, V), h_n).  x: token ids (T, B), an integer
        tensor (one-hot encoded here: column j of weight_ih_l0 is token j's embedding),
        or dense inputs (T, B, D) of any real dtype (integers and booleans too, cast to the
        weights' dtype, as bptt reads dense inputs).  h0 / h_n: (L, B, H), or the pair
        (h, c) for the LSTM; None means zeros.  Time-major (batch_first=False), as bptt.
        """

        def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int,
                     num_layers: int = 1, bias: bool = True, head_bias: bool | None = None,
                     dtype: Any = None) -> None:
            super().__init__()
            kinds = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
            options = {"nonlinearity": "tanh"} if cell == "rnn" else {}
            self.cell = cell
            self.input_size = input_size
            self.rnn = kinds[cell](input_size, hidden_size, num_layers=num_layers, bias=bias,
                                   batch_first=False, dtype=dtype, **options)
            self.head = nn.Linear(hidden_size, output_size,
                                  bias=bias if head_bias is None else head_bias, dtype=dtype)
            if cell == "rnn" and bias:  # bptt's one b_h = bias_ih + bias_hh: only bias_ih moves
                for layer in range(num_layers):
                    getattr(self.rnn, f"bias_hh_l{layer}").requires_grad_(False)

        def forward(self, x: Any, h0: Any = None) -> tuple[Any, Any]:
            """x (T, B) ids or (T, B, D) -> (logits (T, B, V), final state)."""
            dtype = self.rnn.weight_hh_l0.dtype
            if x.dim() == 2 and not torch.is_floating_point(x):  # token ids (T, B)
                x = nn.functional.one_hot(x.long(), self.input_size).to(dtype)
            elif not torch.is_floating_point(x):  # dense (T, B, D) integers or booleans
                x = x.to(dtype)
            out, h_n = self.rnn(x, h0)
            return self.head(out), h_n

    CharRNN.__module__ = __name__
    CharRNN.__qualname__ = "CharRNN"
    return CharRNN


def __getattr__(name: str) -> Any:
    """``bptt.interop.CharRNN`` is built on first access (it needs torch)."""
    if name == "CharRNN":
        return char_rnn_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_module(config: Mapping[str, Any], dtype: Any = None) -> Any:
    """A fresh (PyTorch-initialized) :class:`CharRNN` for a model config.

    config: ``meta["model"]`` of a checkpoint or an exported file, or
    :func:`model_config`: cell, input_size, hidden_size, output_size, num_layers (1),
    bias (True), head_bias (= bias), dtype ("float32" / "float64"; the ``dtype``
    argument, a torch dtype, overrides it).  Load weights with
    ``module.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`` or use
    :func:`to_torch_module`.
    """
    torch = _torch()
    if not isinstance(config, Mapping):
        raise BpttError(f"config must be a dict, got {type(config).__name__}")
    missing = [k for k in ("cell", "input_size", "hidden_size", "output_size") if k not in config]
    if missing:
        raise BpttError(f"the model config is missing {', '.join(missing)}")
    get_cell(config["cell"])
    sizes = {k: config.get(k, 1) for k in ("input_size", "hidden_size", "output_size",
                                             "num_layers")}
    # torch takes Python ints only: a numpy integer is kept as the int it is
    sizes = {name: check_int(f"config {name}", value, 1) for name, value in sizes.items()}
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise BpttError(f"dtype must be a torch floating-point dtype, got {dtype!r}")
    if dtype is None:
        names = {"float32": torch.float32, "float64": torch.float64}
        name = config.get("dtype", "float32")
        if not isinstance(name, str) or name not in names:
            raise BpttError(f"config dtype must be float32 or float64, got {name!r}")
        dtype = names[name]
    bias = check_bool("config bias", config.get("bias", True))
    head_bias = check_bool("config head_bias", config.get("head_bias", bias))
    return char_rnn_class()(config["cell"], sizes["input_size"], sizes["hidden_size"],
                            sizes["output_size"], sizes["num_layers"], bias, head_bias, dtype)


def to_torch_module(params: Mapping[str, np.ndarray]) -> Any:
    """The :class:`CharRNN` holding exactly ``params`` (strict load, dtype of params)."""
    torch = _torch()
    module = torch_module(model_config(params))
    state = {k: torch.from_numpy(v) for k, v in to_torch_state_dict(params).items()}
    module.load_state_dict(state, strict=True)
    return module


def from_torch_module(
    module: Any,
    *,
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> dict[str, np.ndarray]:
    """The bptt parameters of a :class:`CharRNN` (or any character model whose state_dict
    :func:`from_torch_state_dict` reads; rnn, head, embedding as it takes them).

    A ReLU RNN is refused (``nn.RNN(nonlinearity="relu")``, a subclass of it, or
    ``nn.RNNBase("RNN_RELU", ...)``): its state_dict is a tanh RNN's, but bptt's RNN is tanh.
    """
    if not isinstance(module, _torch().nn.Module):
        raise BpttError(
            f"module must be a torch.nn.Module, got {type(module).__name__} (for a state_dict, "
            "use from_torch_state_dict)"
        )
    _check_tanh(module)
    return from_torch_state_dict(module.state_dict(), rnn=rnn, head=head, embedding=embedding)


def _check_tanh(module: Any) -> None:
    """Refuse a module holding a ReLU RNN, whatever its class is called.

    torch runs a recurrent module by its ``mode`` ("RNN_RELU" for ReLU); ``nonlinearity``
    is what ``nn.RNN`` was built with.  Either saying ReLU refuses it.
    """
    rnn_base = _torch().nn.RNNBase
    for part in module.modules():
        if not isinstance(part, rnn_base):
            continue
        nonlinearity = getattr(part, "nonlinearity", "tanh")
        if part.mode == "RNN_RELU" or nonlinearity != "tanh":
            shown = "relu" if part.mode == "RNN_RELU" else nonlinearity
            raise BpttError(
                f"the module's {type(part).__name__} has nonlinearity={shown!r}; "
                "bptt's RNN is tanh only"
            )


def torch_forward_from_ids(module: Any, ids: Any, h0: Any = None) -> tuple[Any, Any]:
    """Run ``module`` on token ids (T, B) given as NumPy or a tensor, without autograd.

    h0: the initial state as PyTorch takes it, (L, B, H) or for an LSTM the pair (h, c),
    as tensors or NumPy arrays (bptt's state form; made tensors of the module's dtype);
    None means zeros.  Returns (logits (T, B, V), final state) as torch tensors.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise BpttError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(ids, torch.Tensor):
        # a tensor off the CPU is left to torch's own checks (reading it here would copy it)
        if ids.device.type == "cpu":
            _check_ids(ids.detach().numpy(), getattr(module, "input_size", None))
        x = ids
    else:
        given = as_array("ids", ids)
        _check_ids(given, getattr(module, "input_size", None))
        x = torch.from_numpy(given.astype(np.int64))
    rnn = _module_rnn(torch, module)
    if rnn is not None and rnn.batch_first:
        # ids (T, B) would be read as (B, T): a wrong answer, not an error
        raise BpttError(
            f"the module's {type(rnn).__name__} has batch_first=True; the ids here are "
            "time-major (T, B), as CharRNN's rnn takes them (batch_first=False)"
        )
    state = _torch_state(torch, module, h0, x.shape[1] if x.dim() == 2 else None)
    with torch.no_grad():
        return module(x, state)


def _module_rnn(torch: Any, module: Any) -> Any:
    """The module's ``.rnn`` when it is a recurrent torch module (CharRNN's is), else None:
    what the ids and h0 it takes can be checked against."""
    rnn = getattr(module, "rnn", None)
    return rnn if isinstance(rnn, torch.nn.RNNBase) else None


def _torch_state(torch: Any, module: Any, h0: Any, batch: int | None) -> Any:
    """h0 for ``module``: NumPy parts become tensors of its dtype; for a module whose ``.rnn``
    is a recurrent torch module, the form and shapes are checked (BpttError) and tensors of
    another dtype are cast to its dtype."""
    if h0 is None:
        return None
    rnn = _module_rnn(torch, module)
    lstm = rnn is not None and rnn.mode == "LSTM"
    # a list is a pair for an LSTM, else nested rows of one array (as bptt reads h0)
    pair = isinstance(h0, tuple) or (lstm and isinstance(h0, list))
    if rnn is not None and (pair != lstm or (pair and len(h0) != 2)):
        form = "the pair (h0, c0)" if lstm else "one array (L, B, H), not a pair"
        raise BpttError(f"h0 of the module's {type(rnn).__name__} must be {form}")
    if rnn is not None and lstm and any(isinstance(part, tuple) for part in h0):
        # one (h, c) pair per layer has the shapes of (h0, c0) for two layers: refused, as
        # models.state_to_layers refuses it
        raise BpttError(f"h0 of the module's {type(rnn).__name__} is the pair (h0, c0), each "
                        "(L, B, H), not a pair per layer: stack each layer's h, and each c")
    parts = []
    for name, part in zip(("h0", "c0"), h0 if pair else (h0,), strict=False):
        if not isinstance(part, torch.Tensor):
            array = as_array(name, part)
            if array.dtype.kind not in "biuf":
                raise BpttError(f"{name} must hold real numbers, got dtype {array.dtype}")
            part = torch.from_numpy(np.ascontiguousarray(array))
        if rnn is not None:
            part = part.to(rnn.weight_hh_l0.dtype)
        if rnn is not None and batch is not None:
            expected = (rnn.num_layers, batch, rnn.hidden_size)
            if tuple(part.shape) != expected:
                raise BpttError(f"{name} has shape {tuple(part.shape)}, expected (L, B, H) = "
                                f"{expected}")
        parts.append(part)
    return tuple(parts) if pair else parts[0]


def _check_ids(ids: np.ndarray, D: int | None) -> None:
    """Token ids (T, B), each in [0, D) when D is known; else BpttError naming the first bad."""
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise BpttError(f"ids must be integer token ids of shape (T, B), got {ids.dtype} of "
                        f"shape {ids.shape}")
    if ids.size == 0:
        raise BpttError(f"ids has shape {ids.shape}: need T >= 1 and B >= 1")
    if D is not None and ops.any_outside(ids, D):
        bad = ids[(ids < 0) | (ids >= D)].flat[0]
        raise BpttError(f"ids holds token id {bad} outside [0, {D}) (the module's input_size)")


def torch_loss_and_grads(
    params: Mapping[str, np.ndarray], inputs: Any, targets: Any, h0: Any = None
) -> tuple[float, dict[str, np.ndarray], Any]:
    """The third witness: J = Σ_t Σ_b −log p_t[label] and its gradient by torch autograd.

    Runs in float64 on the :class:`CharRNN` holding ``params``.  inputs: token ids (T, B)
    or dense (T, B, D); targets (T, B); h0 in bptt's public form (None = zeros).
    Returns (loss, grads with the keys of params, ∂J/∂h0 in the form of h0 — the zero
    state's form (L, B, H) when h0 is None).  The vanilla RNN's bias_hh is frozen in the
    module, so ∂J/∂b_h is the gradient of bias_ih.
    """
    torch = _torch()
    params64 = {k: np.asarray(v, dtype=np.float64) for k, v in _params_dict(params).items()}
    shapes = models.check_params(params64)
    x = models.check_inputs(inputs, shapes, np.float64)
    T, B = x.shape[:2]
    labels = torch.from_numpy(models.check_targets(targets, T, B, shapes.V).astype(np.int64))
    # h0 read and checked as bptt reads it; per part of the state a leaf (L, B, H) to differentiate
    layers, flat = models.state_to_layers(h0, shapes, B, np.float64)
    states = [
        torch.tensor(np.stack([layer[i] for layer in layers]), requires_grad=True)
        for i in range(len(layers[0]))
    ]
    paired = len(states) > 1
    module = to_torch_module(params64)
    x_t = torch.from_numpy(np.ascontiguousarray(x if x.ndim == 2 else x.astype(np.float64)))
    logits, _ = module(x_t, tuple(states) if paired else states[0])
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(T * B, shapes.V), labels.reshape(T * B), reduction="sum"
    )
    loss.backward()
    torch_grads = {
        f"{prefix}.{name}": tensor.grad
        for prefix, part in (("rnn", module.rnn), ("head", module.head))
        for name, tensor in part.named_parameters()
        if tensor.grad is not None
    }
    grads = {}
    for key in params:
        layer_name = key.split("_l")[0]
        layer = int(key.split("_l")[1]) if "_l" in key else 0
        torch_name = (HEAD_WEIGHT if key == "Why" else HEAD_BIAS if key == "by"
                      else torch_key(models.TORCH_NAMES[layer_name], layer))
        grads[key] = torch_grads[torch_name].numpy().copy()
    dstates = [st.grad.numpy() for st in states]
    dJ_dstate0 = [tuple(d[layer] for d in dstates) for layer in range(shapes.L)]
    return float(loss.item()), grads, models.layers_to_state(dJ_dstate0, flat)


# ----------------------------------------------------------------------------
# whole files: a bptt checkpoint -> torch safetensors, and back
# ----------------------------------------------------------------------------


def export_checkpoint(
    source: str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Write the model of a bptt checkpoint (run directory or model file) as a torch file.

    Refuses an existing ``out`` unless ``overwrite``, and never overwrites the checkpoint
    itself nor the model or train state of a training run's directory.  Returns (the file
    written, its metadata).
    """
    from bptt.train import is_run_checkpoint

    target = Path(out)
    model = checkpoint.load_model(source)
    source_file = Path(source) / checkpoint.MODEL_FILE if Path(source).is_dir() else Path(source)
    if target.is_dir():
        raise BpttError(f"{target} is a directory; give the name of the .safetensors file to write")
    if target.exists() and target.resolve() == source_file.resolve():
        raise BpttError(f"{target} is the checkpoint being exported; choose another file name")
    if is_run_checkpoint(target):
        raise BpttError(f"{target} belongs to the training run in {target.parent}; "
                        "choose another file name")
    if target.exists() and not overwrite:
        raise BpttError(f"{target} already exists; overwrite it with --force (overwrite=True)")
    from bptt.train import not_while_training

    carried = carried_entries(model.meta)
    with not_while_training(target, "choose another file name"):
        # (not overwrite: a file another export wrote there meanwhile is refused, not replaced)
        write_torch_safetensors(target, model.params, model.vocab, model.config, model.step,
                                carried, overwrite=overwrite)
    return target, export_meta(model.params, model.vocab, model.config, model.step, carried)


def import_file(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cell: str | None = None,
    vocab: list[str] | None = None,
    overwrite: bool = False,
    *,
    rnn: str | None = None,
    head: str | None = None,
    embedding: str | None = None,
) -> checkpoint.LoadedModel:
    """Read a torch state_dict safetensors file into a bptt run directory (model.safetensors).

    The cell and vocabulary come from the file's bptt metadata if it has any (``cell`` and
    ``vocab``, when also given, must agree), else from ``cell`` (or the weight shapes) and
    ``vocab``; the sizes are read off the shapes.  The directory is created if needed; one
    holding a model is refused unless ``overwrite``, one holding a training state always
    (its optimizer state would no longer match).  Everything is checked (the weights, the
    vocabulary as :class:`bptt.data.Vocab` checks it, the directory) before anything is
    created or written.  rnn, head, embedding: the modules' names, for a state_dict whose
    layout cannot be read off its shapes (:func:`from_torch_state_dict`).  Returns the model
    as read back.
    """
    from bptt.train import not_while_training

    given = _given_vocab(vocab)
    params, meta = params_from_file(path, cell, rnn=rnn, head=head, embedding=embedding)
    meta = meta or {}
    shapes = models.check_params(params)
    layout = None if meta else file_layout(path, rnn, head, embedding)
    hint = None if layout is None or not maybe_tied(layout, shapes) else (
        f"if {layout.head_weight} is also the input embedding (tied weights, saved once), say "
        f"so with --embedding {layout.head} (embedding={layout.head!r})")
    chars = _import_vocab(Path(path), meta, given, shapes, hint)
    saved = meta.get("config")
    config = saved if isinstance(saved, dict) else {}
    step = meta.get("step", 0)
    try:  # what save_model would refuse (a step < 0, or not an integer), refused before
        # anything is made
        checkpoint.model_meta(params, chars, config, step)
    except BpttError as exc:
        raise CheckpointError(f"{path}: its bptt metadata cannot be imported: {exc}") from exc
    target = Path(out_dir)
    _check_import_target(Path(path), target, overwrite)
    with checkpoint.made_dir(target), \
            not_while_training(target / checkpoint.MODEL_FILE, "import into another directory"):
        _check_import_target(Path(path), target, overwrite)  # again, locked: a run may have started
        file = checkpoint.save_model(target, params, chars, config, step,
                                     carried_entries(meta))
    return checkpoint.load_model(file)


def _given_vocab(vocab: Any) -> list[str] | None:
    """The ``vocab`` argument of :func:`import_file` as a list (checked later as a Vocab)."""
    if vocab is None:
        return None
    try:
        return list(vocab)
    except TypeError as exc:
        raise BpttError(f"vocab must be a list of characters, got {type(vocab).__name__}") from exc


def _import_vocab(
    file: Path, meta: Mapping[str, Any], vocab: list[str] | None, shapes: models.Shapes,
    hint: str | None = None,
) -> list[str] | None:
    """The vocabulary to store: the file's own, else the one given (None: neither), checked
    as a :class:`bptt.data.Vocab` and against the weights' D inputs and V outputs.  Errors
    name ``file``; one on the vocabulary given ends with ``hint``."""
    saved = meta.get("vocab")
    if saved is not None:
        chars = _checked_vocab(f"{file}: its vocabulary", saved, shapes)
        if vocab is not None and vocab != chars:
            raise BpttError(
                f"{file} carries its own vocabulary ({len(chars)} characters), which "
                "differs from the --vocab given; drop --vocab (vocab=None)"
            )
        return chars
    if vocab is not None:
        return _checked_vocab(f"{file}: the vocabulary given", vocab, shapes, hint)
    return None


def _checked_vocab(
    source: str, chars: Any, shapes: models.Shapes, hint: str | None = None
) -> list[str]:
    """``chars`` if it makes a Vocab of D = V characters; else a CheckpointError on ``source``
    (ending with ``hint`` when the characters are as many as the outputs)."""
    try:
        checked = Vocab.from_list(chars).to_list()
    except DataError as exc:
        raise CheckpointError(f"{source} cannot be used: {exc}") from exc
    if len(checked) != shapes.D or len(checked) != shapes.V:
        raise CheckpointError(
            f"{source} has {len(checked)} characters but the weights take {shapes.D} inputs "
            f"and give {shapes.V} outputs" + (f"; {hint}" if hint and len(checked) == shapes.V
                                               else "")
        )
    return checked


def maybe_tied(layout: Layout, shapes: models.Shapes) -> bool:
    """Whether a state_dict read with ``layout`` (no embedding) may have held a tied embedding,
    saved once as safetensors.torch.save_model saves tied weights (the head's weight (V, H)
    is also the embedding): layer 0 then takes D = H inputs and V != D, and an import reads
    one-hot inputs unless told ``embedding=`` the head.  Never for bptt's own layout (whose
    names hold no embedding)."""
    return (layout.embedding is None and layout[:2] != BPTT_LAYOUT[:2]
            and shapes.D == shapes.H != shapes.V)


def _check_import_target(source: Path, target: Path, overwrite: bool) -> None:
    """Refuse a file, a training run's directory, the directory of ``source`` itself when the
    model file would replace it, and (unless overwrite) a directory holding a model."""
    from bptt.train import STATE_FILE, holds_train_state

    if target.exists() and not target.is_dir():
        raise BpttError(f"{target} is a file; give a directory to import into")
    if holds_train_state(target):
        raise BpttError(
            f"{target} holds a training run ({STATE_FILE}); import into a new directory"
        )
    model_file = target / checkpoint.MODEL_FILE
    if model_file.exists() and model_file.resolve() == source.resolve():
        raise BpttError(f"{model_file} is the file being imported; import into another directory")
    if model_file.exists() and not overwrite:
        raise BpttError(
            f"{target} already holds {checkpoint.MODEL_FILE}; overwrite it with --force "
            "(overwrite=True)"
        )
