"""Optimizers and gradient clipping over plain dicts of arrays.

Parameters and gradients are ``dict[str, np.ndarray]`` with identical keys
(any keys: ``"Wxh"``, ``"by"``, or a single ``"flat"`` buffer).  Optimizer
state is ``dict[str, dict[str, np.ndarray]]``: slot name -> parameter key ->
array, e.g. ``{"m": {...}, "v": {...}, "step": {"t": 0-d int64}}``, so that
:func:`flatten_state` turns it into ``"slot.key"`` tensors for safetensors
and a resumed run continues bit for bit.  Every optimizer keeps the step
counter ``state["step"]["t"]``.

Each ``update`` changes the parameter arrays and the state IN PLACE (the
arrays are never rebound: a caller may hold views into one flat buffer) and
keeps the parameters' dtype.  The formulas and the order of the floating
point operations are PyTorch's ``torch.optim`` (CPU, single-tensor path),
so a benchmark can run the same optimizer in torch and compare:

    SGD       p ← p − lr·g
    Momentum  buf ← μ·buf + g   (buf starts at 0, so the first step is buf = g)
              p ← p − lr·buf
    Adagrad   sum ← sum + g·g
              p ← p − (lr·g) / (√sum + ε)
    Adam      t ← t + 1
              m ← m + (1 − β1)·(g − m)          (torch's lerp; = β1·m + (1 − β1)·g)
              v ← β2·v + (1 − β2)·g·g
              p ← p − (lr / (1 − β1^t))·m / (√v / (1 − β2^t)^0.5 + ε)

Clipping follows min-char-rnn (:func:`clip_by_value`, elementwise to
±clip) and ``torch.nn.utils.clip_grad_norm_`` (:func:`clip_by_global_norm`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from bptt import flat
from bptt.errors import BpttError, CheckpointError, check_positive, is_number

if TYPE_CHECKING:  # the optimizers know nothing of networks; only this annotation names them
    from bptt.models import Shapes

Params = dict[str, np.ndarray]
State = dict[str, dict[str, np.ndarray]]

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adagrad", "adam")

STEP_SLOT = "step"
"""Slot holding the step counter ``{"t": 0-d int64 array}`` in every state."""


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a number (see is_number) with 0 <= value < 1, else
    raise BpttError."""
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise BpttError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_grads(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
    """Raise BpttError unless ``grads`` has exactly the keys and shapes of ``params``, the
    parameters are writeable float arrays and the gradients real ones."""
    if params.keys() != grads.keys():
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise BpttError(
            f"gradients do not match the parameters (missing {missing}, extra {extra}); "
            "compute one gradient per parameter key."
        )
    for key, p in params.items():
        _check_parameter(key, p)
        _check_writeable(f"parameter {key!r}", p)
        _check_gradient(key, grads[key])
        if grads[key].shape != p.shape:
            raise BpttError(
                f"gradient {key!r} has shape {grads[key].shape} but the parameter has "
                f"shape {p.shape}; they must match."
            )


def _check_parameter(key: str, p: object) -> None:
    """Raise BpttError unless the parameter ``p`` is a float numpy array (p ← p − lr·g must
    stay in p's float type, and the state is made like it)."""
    if not isinstance(p, np.ndarray):
        raise BpttError(f"parameter {key!r} must be a numpy array, got {type(p).__name__}.")
    if p.dtype.kind != "f":
        raise BpttError(
            f"parameter {key!r} has dtype {p.dtype}; parameters must be float arrays "
            "(float32 or float64)."
        )


def _check_writeable(what: str, array: np.ndarray) -> None:
    """Raise BpttError unless ``array`` can be written: updates and clipping change arrays in
    place, and a read-only one (a memmap opened "r", np.broadcast_to) would fail halfway
    through, the arrays before it already changed."""
    if not array.flags.writeable:
        raise BpttError(
            f"{what} is a read-only array; it is changed in place, so it must be writeable "
            "(give a copy, np.array(value))."
        )


def _check_gradient(key: str, g: object) -> None:
    """Raise BpttError unless the gradient ``g`` is a numpy array of real numbers."""
    if not isinstance(g, np.ndarray):
        raise BpttError(f"gradient {key!r} must be a numpy array, got {type(g).__name__}.")
    if g.dtype.kind not in "biuf":
        raise BpttError(f"gradient {key!r} has dtype {g.dtype}; gradients must hold real numbers.")


BLOCK_BYTES = 1 << 21
"""A parameter larger than this is updated block by block, each block this many bytes of it
and of its gradient and state: every pass of an update (Adam makes 13) then goes over one
block of each array, and the scratch arrays are one block, not the size of the whole.  The
same operations on every element, so the same bits.  Measured on a 2-core machine (1 MiB
of L2 a core, 32 MiB of L3), Adam over a flat buffer of 1.0M float32 values (GRU, H = 512)
took 0.91–0.95 of the time, 1.4M (LSTM, H = 512) 0.87–0.92, 0.39M float64 (LSTM, H = 256)
0.91–0.94, and 0.3M float64 (GRU, H = 256: blocks of 2 MiB and 0.3 MiB) 1.04; a whole
training step at B = 1 came out 5–7% faster for the GRU at H = 512.  Smaller buffers are
updated whole (float32 at H <= 256), where blocks of 1 MiB measured slower."""


def _blocks(
    p: np.ndarray, g: np.ndarray, slots: list[np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """The arrays of one parameter as they are, or, when it is larger than a block and
    every array is C-contiguous, as consecutive blocks of the flattened arrays (views, so
    the update writes through).  Every update is elementwise: blocks change nothing else."""
    size = max(1, BLOCK_BYTES // p.itemsize)
    arrays = [p, g, *slots]
    if p.size <= size or not all(a.flags.c_contiguous for a in arrays):
        yield p, g, slots
        return
    p_flat, g_flat, *slots_flat = (a.reshape(-1) for a in arrays)
    for start in range(0, p.size, size):
        block = slice(start, start + size)
        yield p_flat[block], g_flat[block], [s[block] for s in slots_flat]


def _step_counter() -> dict[str, np.ndarray]:
    """A fresh step counter slot ``{"t": 0-d int64 zero}``."""
    return {"t": np.zeros((), dtype=np.int64)}


def _advance(state: State) -> int:
    """Increment the step counter in place and return the new step number t (1 on the first)."""
    counter = state[STEP_SLOT]["t"]
    counter += 1
    return int(counter.item())


# --------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------


class Optimizer:
    """Base class: hyper-parameters live on the object, everything that changes in the state.

    Subclasses set ``name`` and ``slots`` (per-parameter state arrays, each
    shaped and typed like its parameter) and implement ``_update_one``.
    """

    name: str = ""
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("learning rate (lr)", lr)
        self._scratch: dict[tuple, np.ndarray] = {}

    def _temp(self, like: np.ndarray, n: int) -> np.ndarray:
        """Scratch array number n shaped and typed like ``like``, kept between updates
        (memory only, never state: its contents are overwritten before they are read)."""
        key = (like.shape, like.dtype.str, n)
        temp = self._scratch.get(key)
        if temp is None:
            temp = self._scratch[key] = np.empty_like(like)
        return temp

    def __getstate__(self) -> dict[str, object]:
        """Pickle (and deepcopy) without the scratch arrays: memory only, as large as the
        parameters each, made again by the next update."""
        state = self.__dict__.copy()
        state["_scratch"] = {}
        return state

    def config(self) -> dict[str, object]:
        """Return the JSON-able settings: ``make_optimizer(**opt.config())`` rebuilds it."""
        return {"name": self.name, "lr": self.lr}

    def init_state(self, params: Mapping[str, np.ndarray]) -> State:
        """Return a fresh state: zeros like each parameter for every slot, and step t = 0."""
        _check_dict("params", params)
        for key, p in params.items():
            _check_parameter(key, p)
        state: State = {
            slot: {key: np.zeros_like(p) for key, p in params.items()} for slot in self.slots
        }
        state[STEP_SLOT] = _step_counter()
        return state

    def check_state(self, params: Mapping[str, np.ndarray], state: Mapping[str, Mapping]) -> None:
        """Raise CheckpointError unless ``state`` has this optimizer's slots for exactly ``params``.

        Call it on a state loaded from a checkpoint before the first update.
        """
        expected = {*self.slots, STEP_SLOT}
        if set(state) != expected:
            raise CheckpointError(
                f"optimizer state has slots {sorted(state)} but {self.name!r} needs "
                f"{sorted(expected)}; resume with the optimizer the checkpoint was trained with."
            )
        _check_counter(state[STEP_SLOT])
        for slot in self.slots:
            _check_slot(slot, params, state[slot])

    def update(self, params: Params, grads: Mapping[str, np.ndarray], state: State) -> None:
        """Apply one step: change ``params`` and ``state`` in place from ``grads``."""
        _check_dict("params", params)
        _check_dict("grads", grads)
        if not isinstance(state, Mapping):
            raise BpttError(
                f"the optimizer state must be a dict, got {type(state).__name__}: make it with "
                "this optimizer's init_state(params)"
            )
        _check_grads(params, grads)
        self._check_update_state(params, state)
        t = _advance(state)
        # g² of a float32 gradient above ~1e19 is inf, as in torch: IEEE's answer, no warning
        # (and an lr so large that a step is inf or NaN: the next forward reports that)
        with np.errstate(over="ignore", invalid="ignore"):
            for key, p in params.items():
                slot_arrays = [state[slot][key] for slot in self.slots]
                for p_block, g_block, slot_blocks in _blocks(p, grads[key], slot_arrays):
                    self._update_one(p_block, g_block, slot_blocks, t)

    def _check_update_state(self, params: Params, state: State) -> None:
        """Raise BpttError unless ``state`` is this optimizer's state for exactly ``params``
        (its slots, and in each slot the keys and shapes of the parameters), before anything
        is changed: a state made for other parameters would fail halfway through an update."""
        if state.keys() != {*self.slots, STEP_SLOT}:
            raise BpttError(
                f"optimizer state has slots {sorted(state)} but {self.name!r} needs "
                f"{sorted({*self.slots, STEP_SLOT})}: make it with this optimizer's init_state"
            )
        counter = state[STEP_SLOT].get("t") if isinstance(state[STEP_SLOT], Mapping) else None
        if not (isinstance(counter, np.ndarray) and counter.shape == ()
                and counter.dtype.kind in "iu"):
            raise BpttError(
                "the optimizer state's step counter state['step']['t'] must be a 0-d integer "
                f"numpy array, got {counter!r}: make the state with init_state(params)"
            )
        for slot in self.slots:
            arrays = state[slot]
            for key, p in params.items():
                entry = arrays.get(key) if isinstance(arrays, Mapping) else None
                if entry is not None and not isinstance(entry, np.ndarray):
                    raise BpttError(
                        f"optimizer state slot {slot!r} holds a {type(entry).__name__} for "
                        f"parameter {key!r}: the state must be numpy arrays like the "
                        "parameters; make it with init_state(params)"
                    )
                if entry is None or entry.shape != p.shape:
                    found = "nothing" if entry is None else f"shape {entry.shape}"
                    raise BpttError(
                        f"optimizer state slot {slot!r} holds {found} for parameter {key!r} "
                        f"of shape {p.shape}: the state was made for other parameters; make it "
                        "with init_state(params) after the parameters are made"
                    )
                if entry.dtype.kind != "f":
                    raise BpttError(
                        f"optimizer state slot {slot!r} holds dtype {entry.dtype} for parameter "
                        f"{key!r}: the state must be float arrays like the parameters; make it "
                        "with init_state(params)"
                    )
                _check_writeable(f"optimizer state slot {slot!r} of parameter {key!r}", entry)

    def _update_one(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], t: int) -> None:
        raise NotImplementedError


def _check_counter(slot: Mapping) -> None:
    """Raise CheckpointError unless ``slot`` is ``{"t": one integer >= 0}``."""
    counter = slot.get("t")
    if set(slot) != {"t"} or not isinstance(counter, np.ndarray) or counter.size != 1:
        raise CheckpointError("optimizer state has no valid step counter 'step.t'.")
    if counter.dtype.kind not in "iu" or counter.item() < 0:
        raise CheckpointError(
            f"the optimizer's step counter 'step.t' must be an integer >= 0, got "
            f"{counter.item()!r} ({counter.dtype})."
        )


def step_count(state: State) -> int:
    """How many updates the optimizer state has seen (its step counter t)."""
    slot = state.get(STEP_SLOT) if isinstance(state, Mapping) else None
    if not isinstance(slot, Mapping):
        raise BpttError(
            f"the optimizer state has no step counter state[{STEP_SLOT!r}]: make the state "
            "with init_state(params)"
        )
    _check_counter(slot)
    return int(slot["t"].item())


def _check_slot(slot: str, params: Mapping[str, np.ndarray], arrays: Mapping) -> None:
    """Raise CheckpointError unless slot ``arrays`` match ``params`` key for key and shape."""
    if set(arrays) != set(params):
        raise CheckpointError(
            f"optimizer slot {slot!r} has keys {sorted(arrays)} but the model has "
            f"{sorted(params)}; the checkpoint belongs to a different model."
        )
    for key, p in params.items():
        if arrays[key].shape != p.shape:
            raise CheckpointError(
                f"optimizer slot {slot!r} entry {key!r} has shape {arrays[key].shape} but the "
                f"parameter has shape {p.shape}; the checkpoint belongs to a different model."
            )


class SGD(Optimizer):
    """Plain stochastic gradient descent: p ← p − lr·g."""

    name = "sgd"
    slots = ()

    def _update_one(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], t: int) -> None:
        p -= np.multiply(g, self.lr, out=self._temp(p, 0))


class Momentum(Optimizer):
    """Heavy-ball momentum as torch.optim.SGD(momentum=μ): buf ← μ·buf + g; p ← p − lr·buf."""

    name = "momentum"
    slots = ("buf",)

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = _check_unit_interval("momentum", momentum)

    def config(self) -> dict[str, object]:
        return {**super().config(), "momentum": self.momentum}

    def _update_one(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], t: int) -> None:
        (buf,) = slots
        # buf starts at zero, so step 1 gives μ·0 + g = g exactly, as torch's clone(g).
        buf *= self.momentum
        buf += g
        p -= np.multiply(buf, self.lr, out=self._temp(p, 0))


class Adagrad(Optimizer):
    """Adagrad as torch.optim.Adagrad: sum ← sum + g²; p ← p − lr·g / (√sum + ε)."""

    name = "adagrad"
    slots = ("sum",)

    def __init__(self, lr: float, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.eps = check_positive("eps", eps)

    def config(self) -> dict[str, object]:
        return {**super().config(), "eps": self.eps}

    def _update_one(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], t: int) -> None:
        (total,) = slots
        total += np.multiply(g, g, out=self._temp(p, 0))
        std = np.sqrt(total, out=self._temp(p, 0))
        std += self.eps
        step = np.multiply(g, self.lr, out=self._temp(p, 1))
        step /= std
        p -= step


class Adam(Optimizer):
    """Adam with bias correction as torch.optim.Adam (no weight decay, no amsgrad)."""

    name = "adam"
    slots = ("m", "v")

    def __init__(
        self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise BpttError(f"betas must be two numbers (beta1, beta2), got {betas!r}.")
        self.betas = (
            _check_unit_interval("beta1", betas[0]),
            _check_unit_interval("beta2", betas[1]),
        )
        self.eps = check_positive("eps", eps)

    def config(self) -> dict[str, object]:
        return {**super().config(), "betas": list(self.betas), "eps": self.eps}

    def _update_one(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], t: int) -> None:
        m, v = slots
        beta1, beta2 = self.betas
        temp = self._temp(p, 0)
        # m ← lerp(m, g, 1 − β1) = m + (1 − β1)(g − m), torch's order of operations
        np.subtract(g, m, out=temp)
        temp *= 1 - beta1
        m += temp
        # v ← β2·v + (1 − β2)·g², as (1 − β2)·g then ·g
        v *= beta2
        np.multiply(g, 1 - beta2, out=temp)
        temp *= g
        v += temp
        step_size = self.lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        denom = np.sqrt(v, out=temp)
        denom /= bias_correction2_sqrt
        denom += self.eps
        step = np.multiply(m, step_size, out=self._temp(p, 1))
        step /= denom
        p -= step


_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "adagrad": Adagrad,
    "adam": Adam,
}

_OPTIONS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum",),
    "adagrad": ("eps",),
    "adam": ("betas", "eps"),
}


def make_optimizer(name: str, lr: float, **kw: object) -> Optimizer:
    """Build the optimizer called ``name`` (one of :data:`OPTIMIZERS`) with learning rate ``lr``.

    Extra keyword options are the class's (``momentum``; ``eps``; ``betas``,
    ``eps``).  An unknown name, a bad ``lr`` or an unknown option raises BpttError.
    """
    if not isinstance(name, str) or name not in _CLASSES:
        raise BpttError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}.")
    check_positive("learning rate (lr)", lr)
    unknown = sorted(set(kw) - set(_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(_OPTIONS[name]) or "none"
        raise BpttError(
            f"optimizer {name!r} has no option {unknown[0]!r}; its options are: {allowed}."
        )
    if isinstance(kw.get("betas"), list):
        kw["betas"] = tuple(kw["betas"])  # type: ignore[arg-type]  # JSON gives a list
    return _CLASSES[name](lr, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# clipping
# --------------------------------------------------------------------------


def global_norm(grads: Mapping[str, np.ndarray], scratch: np.ndarray | None = None) -> float:
    """Return the L2 norm of all gradients together, √(Σ_k Σ g_k²), accumulated in float64.

    The sum runs in sorted key order with np.sum, so it is the same whatever order the
    dict was built in (a checkpoint loads its keys sorted) and whatever the memory
    alignment: a resumed run must repeat every bit of an uninterrupted one.
    scratch: a float64 array of at least as many elements as the largest gradient, kept
    by a training loop, for the squares (the same bits; without it each call takes fresh
    memory of 8 bytes a gradient element, whose pages fault in anew at every step).
    """
    _check_dict("grads", grads)
    for key, g in grads.items():
        _check_gradient(key, g)
    total = 0.0
    with np.errstate(over="ignore"):
        for key in sorted(grads):
            g = grads[key].ravel()
            out = None if scratch is None else scratch[: g.size]
            total += float(np.sum(np.multiply(g, g, out=out, dtype=np.float64)))
    return _scaled_norm(grads) if math.isinf(total) else math.sqrt(total)


def _scaled_norm(grads: Mapping[str, np.ndarray]) -> float:
    """The global norm when Σ g² overflows float64 (entries of 1e154 and more): m √(Σ (g/m)²)
    with m the largest |g|; inf when a gradient holds inf, NaN when one holds NaN."""
    m = max((float(np.max(np.abs(g))) for g in grads.values() if g.size), default=0.0)
    if not math.isfinite(m):
        return m
    total = 0.0
    for key in sorted(grads):
        scaled = grads[key].ravel().astype(np.float64) / m
        total += float(np.sum(scaled * scaled))
    return m * math.sqrt(total)


def _check_dict(name: str, value: object) -> None:
    """Raise BpttError unless ``value`` (params or grads) is a dict (a Mapping) of arrays."""
    if not isinstance(value, Mapping):
        raise BpttError(f"{name} must be a dict of arrays, got {type(value).__name__}")


def _check_clippable(grads: Params) -> None:
    """Raise BpttError unless every gradient is a float array (clipping changes it in place:
    an integer one would fail halfway, the gradients before it already changed)."""
    _check_dict("grads", grads)
    for key, g in grads.items():
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            what = f"dtype {g.dtype}" if isinstance(g, np.ndarray) else type(g).__name__
            raise BpttError(
                f"gradient {key!r} is {what}; clipping changes gradients in place, so they "
                "must be float arrays (float32 or float64)."
            )
        _check_writeable(f"gradient {key!r}", g)


def clip_by_value(grads: Params, clip: float) -> None:
    """Clip every gradient element into [−clip, clip] in place (min-char-rnn's np.clip ±5)."""
    limit = check_positive("clip value", clip)
    _check_clippable(grads)
    for g in grads.values():
        np.clip(g, -limit, limit, out=g)  # one pass; NaN stays NaN


def clip_by_global_norm(grads: Params, max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    torch.nn.utils.clip_grad_norm_ convention: with n the global norm, the
    gradients are multiplied by max_norm / (n + 1e-6) only when that factor is
    < 1.  A non-finite norm leaves the gradients untouched, so the caller can
    see it and stop.  norm: :func:`global_norm` of ``grads`` if the caller has it already.

    Returns:
        The global norm before clipping.
    """
    limit = check_positive("max_norm", max_norm)
    _check_clippable(grads)
    if norm is not None and (not is_number(norm) or norm < 0):  # (NaN, inf: as computed)
        raise BpttError(f"norm must be None or a number >= 0 (global_norm(grads)), got {norm!r}")
    norm = global_norm(grads) if norm is None else norm
    if not math.isfinite(norm):
        return norm
    scale = limit / (norm + 1e-6)
    if scale < 1.0:
        for g in grads.values():
            np.multiply(g, scale, out=g)
    return norm


# --------------------------------------------------------------------------
# state <-> flat tensors
# --------------------------------------------------------------------------


def flatten_state(state: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return ``{"slot.key": array}`` for saving; the arrays are shared, not copied."""
    flat: dict[str, np.ndarray] = {}
    for slot, arrays in state.items():
        if "." in slot:
            raise BpttError(f"optimizer slot name {slot!r} must not contain '.'.")
        for key, array in arrays.items():
            flat[f"{slot}.{key}"] = array
    return flat


def unflatten_state(flat: Mapping[str, np.ndarray]) -> State:
    """Invert :func:`flatten_state`: split each name at its first '.' into slot and key."""
    state: State = {}
    for name, array in flat.items():
        slot, dot, key = name.partition(".")
        if not dot or not slot or not key:
            raise CheckpointError(
                f"optimizer state entry {name!r} is not of the form 'slot.key'; "
                "the checkpoint is damaged or was not written by bptt."
            )
        state.setdefault(slot, {})[key] = array
    return state


def checkpoint_tensors(params: Params, state: State) -> dict[str, np.ndarray]:
    """A run's parameters and optimizer state as the tensors of one train-state file:
    "param.<key>" and "opt.<slot>.<key>" (the arrays themselves, not copies)."""
    tensors = {f"param.{k}": v for k, v in params.items()}
    tensors.update({f"opt.{k}": v for k, v in flatten_state(state).items()})
    return tensors


def from_checkpoint_tensors(
    tensors: Mapping[str, np.ndarray], optimizer: Optimizer, cell: str | None = None
) -> tuple[dict[str, np.ndarray], State, Shapes]:
    """Invert :func:`checkpoint_tensors`: the parameters (checked, in the network's
    canonical order), the state of ``optimizer`` (checked against them) and the network's
    sizes (models.Shapes, read off the parameters as they were checked).  BpttError
    (CheckpointError for the state) when they do not fit together."""
    from bptt import models  # deferred: the optimizers know nothing of networks otherwise

    params = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    shapes = models.check_params(params, cell)
    params = models.canonical_order(params)
    state = unflatten_state(
        {k[len("opt."):]: v for k, v in tensors.items() if k.startswith("opt.")}
    )
    optimizer.check_state(params, state)
    return params, state, shapes


# --------------------------------------------------------------------------
# state in flat buffers (the training loop's fast path)
# --------------------------------------------------------------------------


def pack_state(state: State, layout: flat.Layout) -> State:
    """Lay every slot of ``state`` out like the parameters: one flat buffer per slot.

    Each slot's entries are copied into a new buffer laid out by ``layout`` and REBOUND
    to its views (in place: ``state`` keeps its keys, shapes and values, so
    :func:`flatten_state` and checkpoints see no difference).  Returns the flat form,
    ``{slot: {"flat": buffer}, "step": the same counter}``, for :meth:`Optimizer.update`
    on ``{"flat": params buffer}`` — the same arithmetic element by element.
    """
    packed: State = {}
    for slot, arrays in state.items():
        if slot == STEP_SLOT:
            packed[slot] = arrays
        else:
            packed[slot] = {flat.FLAT_KEY: flat.pack(arrays, layout)[0]}
    return packed
