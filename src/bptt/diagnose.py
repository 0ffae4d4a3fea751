"""Check a learner's own RNN, LSTM or GRU backward against the reference; say what is wrong.

Legend: T time, B batch, D input size, H hidden size, V output size.

The function under test has the signature of :func:`bptt.loss_and_grads` for
the vanilla RNN of one layer::

    fn(params, inputs, targets, h0=None, truncate=None)

    params   dict of float64 arrays: Wxh (H, D), Whh (H, H), bh (H,), Why (V, H), by (V,)
    inputs   (T, B) integer token ids; x_t is the one-hot vector of size D
    targets  (T, B) integer labels in [0, V)
    h0       (B, H) the initial hidden state
    truncate None (full BPTT), or K: keep only the terms with t − k < K (passed only
             when the check is asked for a truncated gradient)

    returns  grads, or (loss, grads), or (loss, grads, h_last): grads is a dict with
             the keys of params (it may add "h0": ∂J/∂h0 of shape (B, H)); loss is
             J = Σ_t Σ_b −log softmax(W^hy h_t + b_y)[label], the TOTAL.

For the LSTM of one layer (``make_problem(cell="lstm")``, gates in PyTorch's order i, f, g,
o, each a block of H rows) the signature is the same with

    params   Wxh (4H, D), Whh (4H, H), bxh (4H,), bhh (4H,), Why (V, H), by (V,)
    h0       the pair (h0, c0), each (B, H)
    returns  as above; grads may add "h0" and "c0"; the state (h_T, c_T) or h_T alone.

For the GRU (cell "gru", gates r, z, n): Wxh (3H, D), Whh (3H, H), bxh (3H,), bhh (3H,),
h0 (B, H), as PyTorch's nn.GRU; grads may add "h0".

:func:`check_backward` runs it on a small random float64 problem (non-zero biases,
a random h0, T ≥ 4) and compares it, parameter by parameter, with the literal
double sum of :mod:`bptt.reference`.  When they disagree it tests named
HYPOTHESES.  Each hypothesis is the reference gradient transformed the way one
known bug transforms it (see /work/shared/BPTT-BUGS.md):

* masks over the (t, k) terms of the double sum (recurrence truncated to m steps,
  only the last loss sent back, first or last step skipped);
* constant factors (the mean over T, B or T·B instead of the total; a flipped sign);
* a transposed weight gradient;
* VARIANT WALKS: the double sum again, with one factor of its terms changed
  (tanh' taken as 1, tanh' at the wrong step, at the pre-activation (1 − z_t²),
  with tanh applied twice (1 − tanh²(h_t)) or the activation h_t in its place,
  h_t where h_{t−1} belongs, W^hh where W^hhᵀ belongs, the carried error
  skipping tanh', the first step's h0 taken as zero, the head using h_{t−1}).

For the LSTM and GRU (:func:`gated_walk`, the double sum with the reference's step
Jacobians, or a bug's from :func:`gated_step_variant`): the direct path cut (the LSTM's
∂c_k/∂c_{k−1} = 0, the GRU's z ⊙ h_{k−1} term dropped), one gate's activation derivative
left out or taken at another gate's activation (a copy-paste mix-up),
besides the generic masks, factors, transposes and missing initial-state gradients.  Its
failing gradients are localised by gate (:func:`gate_blocks`: which blocks of rows i, f, g, o
agree), and, when no hypothesis fits, on the first step alone, where nothing is carried back.

The hypothesis that reproduces the learner's gradient to ~1e-8 is the diagnosis.
When none does, for the RNN :func:`localise` calls the learner's function on the prefixes of
the sequence (T' = 1 … T): the gradient of the first T' steps is
Σ_{t<T'} Σ_{k≤t} terms, so successive differences are the terms of each J_t,
and the first wrong J_t says where the mistake lives.

Index conventions.  The messages a learner reads count steps as the derivation
does: t, k = 1 … T, with h_0 = h0 the initial state (so the first step is z_1 and
its term of ∂J/∂W^hh is ∂J/∂z_1 h0ᵀ); where they name an array, they say which
loop they mean (hs[0] = h0 and hs[t + 1] the state after step t of a 0-based
``for t in range(T)``).  Arrays in the report, and the code here, are 0-based, as
everywhere in bptt: ``hs[k + 1]`` is h_k, the output of step k, and ``hs[0]`` is
h0.  A subscript that means another step in the two conventions is never
written: no h_{−1} or z_0 for the initial state or the first step — they are
called h0 and "the first step".  (Subscripts relative to one step, h_t and
h_{t−1}, z_k and h_{k−1}, read the same in both.)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bptt import cells, models, ops, reference
from bptt.errors import BpttError
from bptt.gradcheck import TINY, Comparison, compare_arrays, random_problem

PASS_TOL = 1e-9  # a correct float64 backward agrees with the reference far closer than this
NEAR_TOL = 1e-5  # failing by less than this everywhere: round-off (float32?), not a bug
# a correct float32 backward agrees to about 1e-7 (float32's round-off); a bug is far beyond
FLOAT32_PASS_TOL = 1e-5
LOSS_TOL = 1e-10  # a float64 loss, relative to max(|J|, 1)
MATCH_TOL = 1e-8  # a hypothesis fits when it reproduces the learner's gradient this closely
MIN_SEQ_LEN = 4  # below this some hypotheses coincide (e.g. truncations)
RECURRENT = ("Wxh", "Whh", "bh")
HEAD = ("Why", "by")
PARAM_KEYS = RECURRENT + HEAD
MATH = {"Wxh": "W^xh", "Whh": "W^hh", "bh": "b_h", "Why": "W^hy", "by": "b_y", "h0": "h0",
        "bxh": "b^xh", "bhh": "b^hh", "c0": "c0"}
CELLS = tuple(cells.CELLS)  # the cells whose backward a learner can have checked: every one
GATES = ("i", "f", "g", "o")  # the LSTM's blocks of H rows of Wxh, Whh, bxh, bhh, in order
GATES_OF = {"lstm": GATES, "gru": ("r", "z", "n")}  # PyTorch's order
SIGNATURE = "fn(params, inputs, targets, h0=None, truncate=None)"


# ----------------------------------------------------------------------------
# loading the learner's function
# ----------------------------------------------------------------------------


def load_backward(spec: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` or ``"path/to/file.py:function"`` and return it.

    The current directory is importable while loading (as with ``python -m``), and for
    a file its own directory too, so it may import its neighbours.
    Raises BpttError (one sentence) for a bad spec, a missing file or module, an
    import that fails, a missing name, or a name that is not callable.
    """
    target, sep, name = str(spec).rpartition(":")
    if not sep or not target or not name:
        raise BpttError(
            f"--backward expects MODULE:FUNCTION or FILE.py:FUNCTION, got {spec!r}"
        )
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    extra = [os.getcwd()]
    if is_file:
        path = Path(target)
        if not path.exists():
            raise BpttError(f"{target} does not exist: pass the path of your Python file")
        if not path.is_file():
            raise BpttError(f"{target} is not a file: pass the path of your Python file")
        extra.insert(0, str(path.resolve().parent))
    added = [p for p in extra if p not in sys.path]
    sys.path[:0] = added
    try:
        module = _import_file(Path(target)) if is_file else _import_module(target)
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    if not hasattr(module, name):
        public = sorted(
            n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )
        more = ", …" if len(public) > 8 else ""
        hint = f" (it defines: {', '.join(public[:8])}{more})" if public else ""
        raise BpttError(f"{target} has no function {name!r}{hint}")
    fn = getattr(module, name)
    if not callable(fn):
        raise BpttError(f"{target}:{name} is a {type(fn).__name__}, not a function")
    return fn


def _import_module(target: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise BpttError(
                f"cannot import module {target!r}: no module named {exc.name!r} "
                "(run from the directory that holds it, or pass FILE.py:FUNCTION)"
            ) from exc
        raise BpttError(f"importing {target} failed: {_exception_line(exc)}") from exc
    except (Exception, SystemExit) as exc:  # the learner's code may call sys.exit()
        raise BpttError(f"importing {target} failed: {_exception_line(exc)}") from exc


def _import_file(path: Path):
    name = f"_bptt_backward_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BpttError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise BpttError(f"importing {path} failed: {_exception_line(exc)}") from exc
    return module


def _exception_line(exc: BaseException) -> str:
    """'TypeError: message (file.py, line 12)' — where in the learner's code it happened."""
    if isinstance(exc, SyntaxError) and exc.lineno:  # its str() already says where: say it once
        where = f"{Path(exc.filename or '?').name}, line {exc.lineno}"
        return f"{type(exc).__name__}: {exc.msg} ({where})"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        # the learner's line, not the line inside numpy (or Python) that raised for it
        own = [f for f in frames if not _is_library(f.filename)]
        last = own[-1] if own else frames[-1]
        text += f" ({Path(last.filename).name}, line {last.lineno})"
    return text


def _is_library(filename: str) -> bool:
    """Is this file part of Python, an installed package or bptt (not the learner's)?"""
    path = os.path.realpath(filename)
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(__file__).parent))
    return filename.startswith("<") or any(
        path.startswith(os.path.realpath(root) + os.sep) for root in roots)


# ----------------------------------------------------------------------------
# the problem and one call of the learner's function
# ----------------------------------------------------------------------------


@dataclass
class Problem:
    """A small vanilla-RNN problem in float64.

    params: Wxh (H, D), Whh (H, H), bh (H,), Why (V, H), by (V,); inputs, targets (T, B) ints;
    h0 (B, H); truncate None or K.
    """

    params: dict[str, np.ndarray]
    inputs: np.ndarray
    targets: np.ndarray
    h0: np.ndarray
    truncate: int | None = None
    seed: int = 0
    cell: str = "rnn"
    c0: np.ndarray | None = None  # the LSTM's initial cell state (B, H)

    @property
    def recurrent(self) -> tuple[str, ...]:
        """The keys of the recurrent parameters of its cell (its PARAM_NAMES)."""
        return cells.get_cell(self.cell).PARAM_NAMES

    @property
    def gates(self) -> tuple[str, ...]:
        """The gates of its cell, one block of H rows each (none for the vanilla RNN)."""
        return GATES_OF.get(self.cell, ())

    @property
    def param_keys(self) -> tuple[str, ...]:
        """The keys of params: the recurrent ones, then the head's."""
        return self.recurrent + HEAD

    @property
    def state_keys(self) -> tuple[str, ...]:
        """The parts of the initial state, as the learner's grads name them: h0 (and c0), its
        cell's STATE_NAMES with a 0."""
        return tuple(f"{name}0" for name in cells.get_cell(self.cell).STATE_NAMES)

    @property
    def state(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The initial state as the learner's function is passed it: h0, or (h0, c0)."""
        return self.h0 if self.c0 is None else (self.h0, self.c0)

    @property
    def T(self) -> int:
        """Time steps of the problem."""
        return int(self.inputs.shape[0])

    @property
    def B(self) -> int:
        """Sequences in its batch."""
        return int(self.inputs.shape[1])

    def prefix(self, steps: int) -> Problem:
        """The same problem on its first ``steps`` time steps."""
        return Problem(self.params, self.inputs[:steps], self.targets[:steps], self.h0,
                       self.truncate, self.seed, self.cell, self.c0)

    def describe(self) -> str:
        """One line: the sizes and how the problem was made."""
        D = self.params["Wxh"].shape[1]
        V = self.params["Why"].shape[0]
        H = self.params["Whh"].shape[1]
        window = "full BPTT" if self.truncate is None else f"truncated to {self.truncate} steps"
        cell, state = {"rnn": ("vanilla RNN", "h0"), "lstm": ("LSTM (gates i, f, g, o)",
                                                              "h0 and c0"),
                       "gru": ("GRU (gates r, z, n)", "h0")}[self.cell]
        return (f"{cell}, T = {self.T}, B = {self.B}, H = {H}, D = {D}, V = {V}, float64, "
                f"random non-zero biases and {state} (seed {self.seed}), {window}")


def make_problem(
    hidden: int = 4, seq_len: int = 5, batch: int = 2, seed: int = 0, truncate: int | None = None,
    cell: str = "rnn",
) -> Problem:
    """The random problem a learner's backward is checked on (T = seq_len ≥ 4), for a
    vanilla RNN (cell "rnn"), an LSTM ("lstm": h0 and c0 both random) or a GRU ("gru")."""
    if cell not in CELLS:
        raise BpttError(f"a backward can be checked for the cells {', '.join(CELLS)}, not "
                        f"{cell!r}")
    if seq_len < MIN_SEQ_LEN:
        raise BpttError(
            f"checking a backward needs --seq-len of at least {MIN_SEQ_LEN} (got {seq_len}): "
            "with fewer steps some bugs give the same gradient"
        )
    truncate = models.check_truncate(truncate)
    params, inputs, targets, h0 = random_problem(cell, hidden, seq_len, batch, 1, seed)
    if cell == "lstm":
        return Problem(params, inputs, targets, h0[0][0], truncate, seed, cell, h0[1][0])
    return Problem(params, inputs, targets, np.asarray(h0)[0], truncate, seed, cell)


@dataclass
class UserResult:
    """What the learner's function returned, normalised.

    grads: key -> float64 array (whatever shape it came in); loss, h_last: None when not
    returned; dtypes: key -> the dtype it came in.  float32: every float it returned (the
    gradients, and the loss and h_last when they are numpy values) is float32 or float64,
    and at least one is float32: it computes in float32.  unknown: the keys of its grads
    that name no parameter (W_xh for Wxh, say), as text, sorted.
    """

    grads: dict[str, np.ndarray]
    loss: float | None = None
    h_last: np.ndarray | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    float32: bool = False
    unknown: tuple[str, ...] = ()


def call_backward(fn: Callable[..., Any], problem: Problem, name: str = "your function"
                  ) -> UserResult:
    """Call fn on copies of the problem's arrays and check the form of what it returns.

    Raises BpttError when it cannot be called with the documented signature, raises, or
    returns something that is not grads / (loss, grads) / (loss, grads, h_last).
    """
    args = (
        {k: v.copy() for k, v in problem.params.items()},
        problem.inputs.copy(),
        problem.targets.copy(),
    )
    state = problem.state
    kwargs: dict[str, Any] = {
        "h0": state.copy() if isinstance(state, np.ndarray) else tuple(s.copy() for s in state)}
    if problem.truncate is not None:
        kwargs["truncate"] = problem.truncate
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise BpttError(
            f"{name} cannot be called as {SIGNATURE}: {exc}"
        ) from exc
    except ValueError:  # no signature (a builtin): just try it
        pass
    try:
        out = fn(*args, **kwargs)
    except (Exception, SystemExit) as exc:
        raise BpttError(f"{name} raised {_exception_line(exc)}") from exc
    user = _normalise(out, name, problem.param_keys, problem.state_keys)
    _check_shapes(user, problem, name)
    return user


def _check_shapes(user: UserResult, problem: Problem, name: str) -> None:
    """Each gradient has the shape of what it is the gradient of (or its transpose: that
    mistake is diagnosed), and h_last the size of h0: a mis-shaped one is a mistake in the
    form, said as such, not diagnosed as maths.  An h_last of h0's size is brought to h0's
    (B, H) rows (see :func:`_as_rows`)."""
    for key, array in user.grads.items():
        of = key if key in problem.state_keys else f"params[{key!r}]"
        want = problem.h0.shape if key in problem.state_keys else problem.params[key].shape
        if array.shape != want and array.shape[::-1] != want:
            raise BpttError(f"{name} returned grads[{key!r}] of shape {array.shape}; the "
                            f"gradient of {of} has its shape, {want}")
    if user.h_last is None:
        return
    rows = _as_rows(user.h_last, problem.h0.shape)
    if rows is None and problem.cell == "lstm" and user.h_last.shape[:1] == (2,):
        # the LSTM's final state as the pair (h_T, c_T), each part as h0 is or in a form
        # _as_rows reads (nn.LSTM's (1, B, H), columns)
        pair = [_as_rows(part, problem.h0.shape) for part in user.h_last]
        read = [part for part in pair if part is not None]
        if len(read) == len(pair):
            user.h_last = np.stack(read)
            return
    if rows is None:
        raise BpttError(f"{name} returned an h_last of shape {user.h_last.shape}; the "
                        f"last state h_T has the shape of h0, {problem.h0.shape}")
    user.h_last = rows


def _as_rows(h: np.ndarray, want: tuple[int, ...]) -> np.ndarray | None:
    """h as (B, H) rows: as it is, without axes of size 1 (PyTorch's (1, B, H), min-char-rnn's
    (H, 1) column for B = 1), or transposed from the derivation's (H, B) columns; None when
    it is none of these.  (Reshaping (H, B) columns to (B, H) scrambled them.)  When B = H
    the shape cannot tell the layouts apart: h is kept as it is (see :func:`_h_last_ok`)."""
    core = tuple(n for n in want if n != 1)
    squeezed = h.reshape(tuple(n for n in h.shape if n != 1))
    if squeezed.shape == core:
        return squeezed.reshape(want)
    if squeezed.shape == core[::-1]:
        return squeezed.T.reshape(want)
    return None


def _normalise(out: Any, name: str, param_keys: tuple[str, ...] = PARAM_KEYS,
               state_keys: tuple[str, ...] = ("h0",)) -> UserResult:
    loss: Any = None
    h_last: Any = None
    if isinstance(out, dict):
        grads = out
    elif isinstance(out, (tuple, list)) and len(out) in (2, 3) and isinstance(out[1], dict):
        loss, grads = out[0], out[1]
        h_last = out[2] if len(out) == 3 else None
    else:
        shown = type(out).__name__
        if isinstance(out, (tuple, list)):
            shown += f" of {len(out)} items (" + ", ".join(type(o).__name__ for o in out[:4]) + ")"
        raise BpttError(
            f"{name} returned a {shown}; expected a dict of gradients, (loss, grads) "
            "or (loss, grads, h_last)"
        )
    if not any(k in grads for k in param_keys):
        raise BpttError(
            f"{name} returned gradients with keys {sorted(map(str, grads))[:6]}; expected the "
            f"keys of params: {', '.join(param_keys)} (and optionally {', '.join(state_keys)})"
        )
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for key in (*param_keys, *state_keys):
        if key not in grads:
            continue
        if grads[key] is None:
            raise BpttError(f"{name} returned grads[{key!r}] = None; return ∂J/∂{key} as an "
                            "array")
        try:
            raw = np.asarray(grads[key])
        except RuntimeError as exc:  # a torch tensor that requires grad
            raise BpttError(f"{name} returned grads[{key!r}] numpy cannot read ({exc})") from exc
        except (TypeError, ValueError) as exc:
            raise BpttError(f"{name} returned grads[{key!r}] that is not a numeric array") from exc
        if raw.dtype.kind == "c":
            raise BpttError(f"{name} returned grads[{key!r}] of dtype {raw.dtype}; a gradient "
                            "of J (a real number) is an array of real numbers")
        if raw.dtype.kind not in "biuf":
            raise BpttError(f"{name} returned grads[{key!r}] that is not a numeric array")
        arrays[key] = raw.astype(np.float64)
        dtypes[key] = str(raw.dtype)
    float32 = _computes_in_float32([*dtypes.values(), *(
        _dtype_of(v) for v in (loss, h_last) if v is not None)])
    if loss is not None:
        try:
            loss = float(np.asarray(loss, dtype=np.float64).reshape(()))
        except OverflowError as exc:  # a Python int past float64's range (10**400)
            raise BpttError(f"{name} returned a loss too large for a float64 number (an "
                            "integer over 1.8e308)") from exc
        except RuntimeError as exc:  # a torch tensor that requires grad: numpy may not read it
            raise BpttError(f"{name} returned a loss numpy cannot read ({exc}): return it as a "
                            "number, loss.item()") from exc
        except (TypeError, ValueError) as exc:
            raise BpttError(f"{name} returned a loss that is not one number: {loss!r}") from exc
    if h_last is not None:
        try:
            raw = np.asarray(h_last)
            # (a cast to float64 would drop the imaginary part, with a ComplexWarning)
            h_last = None if raw.dtype.kind == "c" else np.asarray(raw, dtype=np.float64)
        except RuntimeError as exc:  # a torch tensor that requires grad
            raise BpttError(f"{name} returned an h_last numpy cannot read ({exc})") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise BpttError(f"{name} returned an h_last that is not a numeric array") from exc
        if h_last is None:
            raise BpttError(f"{name} returned an h_last of dtype {raw.dtype}; the last state "
                            "h_T is an array of real numbers")
    unknown = tuple(sorted(repr(k) for k in grads if k not in (*param_keys, *state_keys)))[:6]
    return UserResult(arrays, loss, h_last, dtypes, float32, unknown)


def _dtype_of(value: Any) -> str:
    """The dtype numpy gives value (a Python float is float64), or "object"."""
    try:
        return str(np.asarray(value).dtype)
    except (TypeError, ValueError, RuntimeError):
        return "object"


def _computes_in_float32(dtypes: list[str]) -> bool:
    """Some of what came back is float32 and the rest float64 (a Python float is float64)."""
    return "float32" in dtypes and set(dtypes) <= {"float32", "float64"}

# ----------------------------------------------------------------------------
# the double sum, term by term, with room for one wrong factor
# ----------------------------------------------------------------------------


@dataclass
class Expansion:
    """Every term of the double sum for the vanilla RNN of one layer (0-based t, k).

    losses: (T,) J_t.  head: "Why" (T, V, H), "by" (T, V): the term of J_t.
    rec: "Wxh" (T, T, H, D), "Whh" (T, T, H, H), "bh" (T, T, H): [t, k] the term of (t, k).
    h0: (T, B, H): the term of J_t in ∂J/∂h0 (zero when J_t does not reach h0).
    h_last: (B, H) the final state of the forward.
    The LSTM's and GRU's (:func:`gated_walk`): rec keyed Wxh (T, T, G, D), Whh (T, T, G, H),
    bxh, bhh (T, T, G) with G = 4H or 3H; the LSTM's c0 (T, B, H) the term of J_t in ∂J/∂c0,
    c_last (B, H) its final cell state.
    """

    losses: np.ndarray
    head: dict[str, np.ndarray]
    rec: dict[str, np.ndarray]
    h0: np.ndarray
    h_last: np.ndarray
    c0: np.ndarray | None = None
    c_last: np.ndarray | None = None

    def grads(self, rec_mask: np.ndarray | None = None, head_mask: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        """Σ of the kept terms: rec_mask (T, T) over (t, k), head_mask (T,) over t.

        h0's (and c0's) term of J_t is kept when (t, 0) is.  Returns the keys of params and
        "h0" (and "c0").
        """
        T = self.losses.shape[0]
        rm = np.ones((T, T), bool) if rec_mask is None else rec_mask
        hm = np.ones(T, bool) if head_mask is None else head_mask
        out = {key: np.tensordot(rm, value, axes=([0, 1], [0, 1]))
               for key, value in self.rec.items()}
        out.update({key: np.tensordot(hm, value, axes=(0, 0)) for key, value in self.head.items()})
        out["h0"] = np.tensordot(rm[:, 0], self.h0, axes=(0, 0))
        if self.c0 is not None:
            out["c0"] = np.tensordot(rm[:, 0], self.c0, axes=(0, 0))
        return out


def walk(
    problem: Problem,
    tanh_prime: str = "h_t",
    whh_factor: str = "h_prev",
    carry: str = "WhhT_dz",
    head_factor: str = "h_t",
) -> Expansion:
    """The literal double sum for the vanilla RNN, with one factor optionally changed.

    The defaults give the reference (held equal to :func:`bptt.reference.loss_and_grads`
    by the tests).  Variants, each the signature of one bug:

    tanh_prime  "h_t": ∂h_k/∂z_k = 1 − h_k²;  "one": tanh' treated as 1;  "h_prev": 1 − h_{k−1}²;
                "z": 1 − z_k² (at the pre-activation);  "tanh_h": 1 − tanh²(h_k) (tanh applied
                twice);  "h": h_k (the activation in place of its derivative)
    whh_factor  "h_prev": ∂z_k/∂W^hh = h_{k−1};  "h_t": h_k;  "zero_first": h_{k−1}, but 0 at
                the first step instead of h0
    carry       "WhhT_dz": ∂J_t/∂h_{k−1} = W^hhᵀ ∂J_t/∂z_k;  "Whh_dz": W^hh ∂J_t/∂z_k;
                "WhhT_dh": W^hhᵀ ∂J_t/∂h_k (tanh' skipped on the way back)
    head_factor "h_t": ∂y_t/∂W^hy = h_t;  "h_prev": h_{t−1}
    """
    p = problem.params
    Wxh, Whh, bh, Why, by = (p[k] for k in PARAM_KEYS)
    H, D = Wxh.shape
    T, B = problem.inputs.shape
    K = problem.truncate
    x = np.eye(D)[problem.inputs]  # (T, B, D) one-hot x_t
    hs = np.empty((T + 1, B, H))  # hs[0] = h0, hs[k + 1] = h_k
    zs = np.empty((T, B, H))  # zs[k] = z_k
    hs[0] = problem.h0
    for k in range(T):
        # z_k = W^xh x_k + W^hh h_{k−1} + b_h,   h_k = tanh z_k
        zs[k] = x[k] @ Wxh.T + hs[k] @ Whh.T + bh
        hs[k + 1] = np.tanh(zs[k])
    losses = np.zeros(T)
    head = {"Why": np.zeros((T, *Why.shape)), "by": np.zeros((T, *by.shape))}
    rec = {"Wxh": np.zeros((T, T, H, D)), "Whh": np.zeros((T, T, H, H)), "bh": np.zeros((T, T, H))}
    dh0 = np.zeros((T, B, H))
    for t in range(T):
        h_t = hs[t + 1]
        # J_t = Σ_b −log softmax(W^hy h_t + b_y)[label_t];  ∂J_t/∂y_t = p_t − onehot
        losses[t], p_t = ops.cross_entropy_forward(h_t @ Why.T + by, problem.targets[t])
        dJt_dy = ops.cross_entropy_backward(p_t, problem.targets[t])
        # ∂J_t/∂W^hy = ∂J_t/∂y_t h_tᵀ,  ∂J_t/∂b_y = ∂J_t/∂y_t
        head["Why"][t] = dJt_dy.T @ (h_t if head_factor == "h_t" else hs[t])
        head["by"][t] = dJt_dy.sum(axis=0)
        # ∂J_t/∂h_t = W^hyᵀ ∂J_t/∂y_t
        dJt_dh = dJt_dy @ Why
        oldest = 0 if K is None else max(0, t - K + 1)
        for k in range(t, oldest - 1, -1):
            h_k, h_prev = hs[k + 1], hs[k]
            # ∂J_t/∂z_k = ∂J_t/∂h_k ⊙ ∂h_k/∂z_k
            dJt_dz = dJt_dh * _dh_dz(tanh_prime, h_k, h_prev, zs[k])
            # the term (t, k): ∂z_k/∂W^xh = x_k, ∂z_k/∂W^hh = h_{k−1}, ∂z_k/∂b_h = 1
            rec["Wxh"][t, k] = dJt_dz.T @ x[k]
            whh_input = {
                "h_prev": h_prev,
                "h_t": h_k,
                "zero_first": np.zeros_like(h_prev) if k == 0 else h_prev,
            }[whh_factor]
            rec["Whh"][t, k] = dJt_dz.T @ whh_input
            rec["bh"][t, k] = dJt_dz.sum(axis=0)
            # one step further back: ∂J_t/∂h_{k−1} = W^hhᵀ ∂J_t/∂z_k (rows: dJt_dz @ Whh)
            if carry == "WhhT_dz":
                dJt_dh = dJt_dz @ Whh
            elif carry == "Whh_dz":
                dJt_dh = dJt_dz @ Whh.T
            else:  # "WhhT_dh"
                dJt_dh = dJt_dh @ Whh
            if k == 0:
                dh0[t] = dJt_dh  # the initial state h0 is read by the first step
    return Expansion(losses, head, rec, dh0, hs[-1].copy())


def _dh_dz(variant: str, h_k: np.ndarray, h_prev: np.ndarray, z_k: np.ndarray) -> np.ndarray:
    """∂h_k/∂z_k = 1 − h_k² ("h_t"), or what a bug takes for it (see :func:`walk`)."""
    if variant == "h_t":
        return 1 - h_k**2
    if variant == "one":
        return np.ones_like(h_k)
    if variant == "h_prev":
        return 1 - h_prev**2
    if variant == "z":
        return 1 - z_k**2
    if variant == "tanh_h":
        return 1 - np.tanh(h_k) ** 2
    if variant == "h":
        return h_k
    raise ValueError(f"unknown tanh_prime variant {variant!r}")


def expansion(problem: Problem) -> Expansion:
    """The correct expansion: the (t, k) terms of the recurrent weights are those of
    :func:`bptt.reference.loss_and_grads` (its ``contributions``), the head's and h0's
    terms per J_t come from :func:`walk` (which the reference does not keep).  For the
    LSTM and GRU, :func:`gated_walk` with the reference's own step (held equal to the reference by
    the tests)."""
    if problem.gates:
        return gated_walk(problem)
    _, _, terms = reference.loss_and_grads(
        problem.params, problem.inputs, problem.targets, h0=problem.h0,
        truncate=problem.truncate,
    )
    mine = walk(problem)
    mine.rec = {key: terms.contributions[key] for key in RECURRENT}
    return mine


# ----------------------------------------------------------------------------
# the gated cells' double sum (LSTM, GRU): the reference's step Jacobians, or a bug's
# ----------------------------------------------------------------------------

Step = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], reference.LocalStep]


def gated_walk(problem: Problem, step: Step | None = None) -> Expansion:
    """The literal double sum for the LSTM or GRU of one layer, every (t, k) term kept.

    With the default ``step`` (:func:`bptt.reference.lstm_step`: the state s_k = [h_k; c_k],
    or :func:`bptt.reference.gru_step`: s_k = h_k, and their local Jacobians) it is the
    reference; a variant step from :func:`gated_step_variant` gives the gradient of one bug.
    For each J_t the walk goes back k = t, t − 1, … (to t − K + 1 when truncated) carrying
    ∂J_t/∂s_k.
    """
    step = reference.STEPS[problem.cell] if step is None else step
    p = problem.params
    Wxh, Whh, Why, by = p["Wxh"], p["Whh"], p["Why"], p["by"]
    H, D = Whh.shape[1], Wxh.shape[1]
    T, B = problem.inputs.shape
    K = problem.truncate
    x = np.eye(D)[problem.inputs]  # (T, B, D) one-hot x_k
    s_prev, steps = [], []  # s_prev[k] = s_{k−1} (s_prev[0] = [h0; c0] or h0); steps[k] = step k
    s = problem.h0 if problem.c0 is None else np.concatenate([problem.h0, problem.c0], axis=1)
    for k in range(T):
        s_prev.append(s)
        steps.append(step(p, x[k], s))
        s = steps[k].s
    S = s.shape[1]
    losses = np.zeros(T)
    head = {"Why": np.zeros((T, *Why.shape)), "by": np.zeros((T, *by.shape))}
    rec = {key: np.zeros((T, T, *p[key].shape)) for key in problem.recurrent}
    ds0 = np.zeros((T, B, S))
    for t in range(T):
        h_t = steps[t].s[:, :H]
        # J_t = Σ_b −log softmax(W^hy h_t + b_y)[label_t];  ∂J_t/∂y_t = p_t − onehot
        losses[t], p_t = ops.cross_entropy_forward(h_t @ Why.T + by, problem.targets[t])
        dJt_dy = ops.cross_entropy_backward(p_t, problem.targets[t])
        head["Why"][t] = dJt_dy.T @ h_t
        head["by"][t] = dJt_dy.sum(axis=0)
        # ∂J_t/∂s_t = [W^hyᵀ ∂J_t/∂y_t; 0]: the head reads h_t only
        dJt_ds = np.zeros((B, S))
        dJt_ds[:, :H] = dJt_dy @ Why
        oldest = 0 if K is None else max(0, t - K + 1)
        for k in range(t, oldest - 1, -1):
            local = steps[k]
            # ∂J_t/∂a^ih_k = ∂J_t/∂s_k · ∂s_k/∂a^ih_k;  likewise a^hh (the LSTM's are one)
            dJt_da_ih = np.einsum("bm,bmn->bn", dJt_ds, local.ds_da_ih)
            dJt_da_hh = np.einsum("bm,bmn->bn", dJt_ds, local.ds_da_hh)
            # the term (t, k): ∂a^ih_k/∂W^xh = x_k, ∂a^hh_k/∂W^hh = h_{k−1}, ∂a/∂b = 1
            rec["Wxh"][t, k] = dJt_da_ih.T @ x[k]
            rec["Whh"][t, k] = dJt_da_hh.T @ s_prev[k][:, :H]
            rec["bxh"][t, k] = dJt_da_ih.sum(axis=0)
            rec["bhh"][t, k] = dJt_da_hh.sum(axis=0)
            # ∂s_k/∂s_{k−1} = ∂s_k/∂a^hh_k [W^hh 0] + (the direct paths: c_{k−1}, z ⊙ h_{k−1})
            ds_ds_prev = local.ds_ds_direct.copy()
            ds_ds_prev[:, :, :H] += local.ds_da_hh @ Whh
            # ∂J_t/∂s_{k−1} = ∂J_t/∂s_k · ∂s_k/∂s_{k−1}
            dJt_ds = np.einsum("bm,bmn->bn", dJt_ds, ds_ds_prev)
            if k == 0:
                ds0[t] = dJt_ds  # the initial state is read by the first step
    if problem.c0 is None:
        return Expansion(losses, head, rec, ds0, s.copy())
    return Expansion(losses, head, rec, ds0[..., :H], s[:, :H].copy(), ds0[..., H:],
                     s[:, H:].copy())


def gate_values(cell: str, p: dict[str, np.ndarray], x: np.ndarray, s_prev: np.ndarray
                ) -> np.ndarray:
    """(gates, B, H): the gate activations of one step, in the cell's order (LSTM i, f, g, o;
    GRU r, z, n), as :mod:`bptt.reference`'s step computes them."""
    H = p["Whh"].shape[1]
    h_prev = s_prev[:, :H]
    a_ih = x @ p["Wxh"].T + p["bxh"]
    a_hh = h_prev @ p["Whh"].T + p["bhh"]
    block = [slice(q * H, (q + 1) * H) for q in range(len(GATES_OF[cell]))]
    if cell == "lstm":
        a = a_ih + a_hh
        i, f, o = (ops.sigmoid_forward(a[:, block[q]]) for q in (0, 1, 3))
        return np.stack([i, f, np.tanh(a[:, block[2]]), o])
    # GRU: r, z = σ(a^i + a^h),  n = tanh(a^in + r ⊙ a^hn)
    r, z = (ops.sigmoid_forward(a_ih[:, block[q]] + a_hh[:, block[q]]) for q in (0, 1))
    return np.stack([r, z, np.tanh(a_ih[:, block[2]] + r * a_hh[:, block[2]])])


TANH_GATES = ("g", "n")  # the gates with tanh as their activation (the others: σ)


def _gate_derivative(gate: str, value: np.ndarray) -> np.ndarray:
    """The derivative of gate ``gate``'s activation written in terms of ``value``: σ(1 − σ)
    for i, f, o, r, z and 1 − tanh² for g, n (at a gate's own value: ∂gate/∂a^gate)."""
    return 1 - value**2 if gate in TANH_GATES else value * (1 - value)


def gated_step_variant(cell: str, cut_direct: bool = False, gate: str | None = None,
                       taken_at: str | None = None, other_formula: bool = False,
                       no_tanh_c: bool = False, tanh_c_prev: bool = False) -> Step:
    """The reference's step of ``cell`` (lstm or gru) with one factor changed, as a bug does.

    cut_direct: every path from s_{k−1} that skips W^hh dropped (∂s_k/∂s_{k−1}'s direct part:
    the LSTM's ∂c_k/∂c_{k−1} = diag(f_k), the GRU's ∂h_k/∂h_{k−1} = diag(z_k) through
    z ⊙ h_{k−1}) — that error never carried back.
    gate, taken_at: gate ``gate``'s activation derivative taken at gate ``taken_at``'s value
    (a copy-paste mix-up); taken_at None: that derivative left out (taken as 1);
    other_formula: the other activation's derivative formula at the gate's own value (σ's
    g(1 − g) for tanh's 1 − g², or tanh's 1 − i² for σ's i(1 − i)).
    no_tanh_c (LSTM): ∂h_k/∂c_k taken as diag(o_k), tanh' at c_k left out — the h rows of
    ∂s_k/∂a^i, a^f, a^g and of ∂s_k/∂c_{k−1} each hold it once.
    tanh_c_prev (LSTM): tanh c_{k−1} where tanh c_k belongs (cs[t] for cs[t + 1]), in ∂h_k/∂o_k
    = diag(tanh c) and in ∂h_k/∂c_k = diag(o ⊙ (1 − tanh² c)) alike.  The
    columns of gate ``gate`` in ∂s_k/∂a^ih_k and ∂s_k/∂a^hh_k are rescaled by
    (wrong / right derivative): each holds that derivative once.  The GRU's r columns hold
    n's derivative too (∂h/∂a^r = ∂h/∂n ∂n/∂a^n ∂a^n/∂r ∂r/∂a^r), as a learner's dJ_dr =
    dJ_da_n * a_hn does: a changed n derivative rescales them as well.
    """
    gates = GATES_OF[cell]

    def step(p: dict[str, np.ndarray], x: np.ndarray, s_prev: np.ndarray
             ) -> reference.LocalStep:
        local = reference.STEPS[cell](p, x, s_prev)
        if cut_direct:
            local = local._replace(ds_ds_direct=np.zeros_like(local.ds_ds_direct))
        if gate is not None:
            H = p["Whh"].shape[1]
            values = dict(zip(gates, gate_values(cell, p, x, s_prev), strict=True))
            right = _gate_derivative(gate, values[gate])
            wrong = np.ones_like(right) if taken_at is None else \
                _gate_derivative(gate, values[taken_at])
            if other_formula:
                wrong = values[gate] * (1 - values[gate]) if gate in TANH_GATES \
                    else 1 - values[gate]**2
            ds_da_ih, ds_da_hh = local.ds_da_ih.copy(), local.ds_da_hh.copy()
            for changed in (gate, "r") if (cell, gate) == ("gru", "n") else (gate,):
                rows = slice(gates.index(changed) * H, (gates.index(changed) + 1) * H)
                ds_da_ih[:, :, rows] *= (wrong / right)[:, None, :]
                ds_da_hh[:, :, rows] *= (wrong / right)[:, None, :]
            local = local._replace(ds_da_ih=ds_da_ih, ds_da_hh=ds_da_hh)
        if no_tanh_c:
            local = _without_tanh_c(local, s_prev.shape[1] // 2)
        if tanh_c_prev:
            local = _tanh_c_at_prev(local, s_prev)
        return local

    return step


def _without_tanh_c(local: reference.LocalStep, H: int) -> reference.LocalStep:
    """The LSTM's step with ∂h/∂c = diag(o ⊙ (1 − tanh² c)) taken as diag(o): its h rows
    through c (the i, f, g columns of ∂s/∂a; the c columns of the direct ∂s/∂s_{k−1})
    divided by 1 − tanh² c, unit by unit."""
    tanh_c = np.tanh(local.s[:, H:])
    undo = (1 / (1 - tanh_c**2))[:, :, None]
    ds_da_ih, ds_da_hh, direct = (a.copy() for a in (local.ds_da_ih, local.ds_da_hh,
                                                      local.ds_ds_direct))
    for a in (ds_da_ih, ds_da_hh):
        a[:, :H, :3 * H] *= undo
    direct[:, :H, H:] *= undo
    return local._replace(ds_da_ih=ds_da_ih, ds_da_hh=ds_da_hh, ds_ds_direct=direct)


def _tanh_c_at_prev(local: reference.LocalStep, s_prev: np.ndarray) -> reference.LocalStep:
    """The LSTM's step with tanh c_{k−1} where tanh c_k belongs: its h rows rescaled unit by
    unit, the o columns of ∂s/∂a (∂h/∂o = diag(tanh c)) by tanh c_{k−1} / tanh c_k, the i, f,
    g columns and the c columns of the direct ∂s/∂s_{k−1} (through ∂h/∂c = diag(o ⊙ (1 −
    tanh² c))) by (1 − tanh² c_{k−1}) / (1 − tanh² c_k)."""
    H = s_prev.shape[1] // 2
    tanh_c, tanh_prev = np.tanh(local.s[:, H:]), np.tanh(s_prev[:, H:])
    for_o = (tanh_prev / tanh_c)[:, :, None]
    for_c = ((1 - tanh_prev**2) / (1 - tanh_c**2))[:, :, None]
    ds_da_ih, ds_da_hh, direct = (a.copy() for a in (local.ds_da_ih, local.ds_da_hh,
                                                      local.ds_ds_direct))
    for a in (ds_da_ih, ds_da_hh):
        a[:, :H, :3 * H] *= for_c
        a[:, :H, 3 * H:] *= for_o
    direct[:, :H, H:] *= for_c
    return local._replace(ds_da_ih=ds_da_ih, ds_da_hh=ds_da_hh, ds_ds_direct=direct)


# ----------------------------------------------------------------------------
# hypotheses
# ----------------------------------------------------------------------------


@dataclass
class Hypothesis:
    """A named bug and the gradient it would produce (keys of params and "h0").

    A value None: the bug leaves that gradient undefined (it is not compared).
    """

    name: str
    message: str
    grads: Mapping[str, np.ndarray | None]


def _steps(m: int) -> str:
    return f"{m} step" if m == 1 else f"{m} steps"


def _fractions(T: int, B: int) -> list[tuple[float, str, str]]:
    """The known constant factors, each (value, what it is called, the sentence), one per
    value, smallest first.

    With T = B, 1/T and 1/B are one number: one entry says both.  With B = 1 the mean over
    time and batch is the mean over time (1/(T·B) = 1/T) and 1/B is no factor at all
    (T ≥ 4 here: make_problem's bound)."""
    over_all = (1 / (T * B), f"1/(T·B) = 1/{T * B}", "the MEAN loss over time and batch")
    if T == B:  # (a run with T ≠ B tells them apart)
        return [over_all, (1 / T, f"1/T = 1/B = 1/{T}", "the MEAN over time or over the batch "
                           "(T = B here: check with --seq-len other than --batch to tell which)")]
    if B == 1:
        return [(1 / T, f"1/T = 1/{T}", "the MEAN over time (B = 1 here, so the mean over "
                 "time and batch too)")]
    return sorted([over_all, (1 / T, f"1/T = 1/{T}", "the MEAN over time"),
                   (1 / B, f"1/B = 1/{B}", "the MEAN over the batch")])


def _fraction(ratio: float, T: int, B: int) -> tuple[str, str] | None:
    """(what the factor is called, the sentence) when ``ratio`` is a known constant factor."""
    for value, name, what in _fractions(T, B):
        if abs(ratio - value) <= 1e-9 * value:
            return name, what
    return None


# the words of the hypotheses that differ between the cells
TEXT = {
    "rnn": {
        "rec": "W^xh, W^hh and b_h",
        "step": "∂h_t/∂h_{t−1} = diag(1 − h_t²) W^hh",
        "carry": "∂J/∂h_t = W^hyᵀ ∂J_t/∂y_t + W^hhᵀ ∂J/∂z_{t+1}",
        "z1": "z_1",
        "Wxh": "Σ_t ∂J/∂z_t x_tᵀ, shaped like W^xh (H × D): in batch rows dJ_dz.T @ x",
        "Whh": "Σ_t ∂J/∂z_t h_{t−1}ᵀ, shaped like W^hh (H × H): in batch rows "
               "dJ_dz.T @ h_prev, not h_prev.T @ dJ_dz",
    },
    "gru": {
        "rec": "W^xh, W^hh, b^xh and b^hh",
        "step": "∂h_t/∂h_{t−1} (through W^hh and through the direct path z_t ⊙ h_{t−1})",
        "carry": "∂J/∂h_t = W^hyᵀ ∂J_t/∂y_t + W^hhᵀ ∂J/∂a^hh_{t+1} + ∂J/∂h_{t+1} ⊙ z_{t+1}",
        "z1": "a^hh_1 and, directly, h_1",
        "Wxh": "Σ_t ∂J/∂a^ih_t x_tᵀ, shaped like W^xh (3H × D): in batch rows dJ_da_ih.T @ x",
        "Whh": "Σ_t ∂J/∂a^hh_t h_{t−1}ᵀ, shaped like W^hh (3H × H): in batch rows "
               "dJ_da_hh.T @ h_prev, not h_prev.T @ dJ_da_hh",
    },
    "lstm": {
        "rec": "W^xh, W^hh, b^xh and b^hh",
        "step": "∂(h_t, c_t)/∂(h_{t−1}, c_{t−1}) (through W^hh and through c_t = f_t ⊙ "
                "c_{t−1} + i_t ⊙ g_t)",
        "carry": "∂J/∂h_t = W^hyᵀ ∂J_t/∂y_t + W^hhᵀ ∂J/∂a_{t+1} and ∂J/∂c_t = ∂J/∂h_t ⊙ "
                 "o_t ⊙ (1 − tanh² c_t) + ∂J/∂c_{t+1} ⊙ f_{t+1}",
        "z1": "a_1",
        "Wxh": "Σ_t ∂J/∂a_t x_tᵀ, shaped like W^xh (4H × D): in batch rows dJ_da.T @ x",
        "Whh": "Σ_t ∂J/∂a_t h_{t−1}ᵀ, shaped like W^hh (4H × H): in batch rows "
               "dJ_da.T @ h_prev, not h_prev.T @ dJ_da",
    },
}


def _window_message(m: int, K: int, cell: str = "rnn") -> str:
    """The sentence for a learner asked for truncate=K whose window keeps m steps."""
    text = TEXT[cell]
    if m == 1:
        why = f"the error is never carried back through {text['step']} at all"
    elif abs(m - K) == 1:
        why = (f"one step {'fewer' if m < K else 'more'} than asked, an off-by-one in the "
               f"bound of your walk back (J_t reaches k = t … t − {K - 1}: t − k < {K}, not "
               f"t − k {'<' if m < K else '≤'} {K - 1 if m < K else K})")
    else:
        why = "another window than the one asked for"
    return (f"You were asked for truncated BPTT with truncate = {K} (only the terms with "
            f"t − k < {K}), but your {text['rec']} gradients keep {_steps(m)} (the terms "
            f"with t − k < {m}): {why}. Walk each J_t back exactly {_steps(K)}.")


def hypotheses(problem: Problem, correct: Expansion) -> list[Hypothesis]:
    """Every named bug, each as the gradient it would produce on ``problem``."""
    T, B = problem.T, problem.B
    ref = correct.grads()
    out: list[Hypothesis] = []
    t_idx, k_idx = np.indices((T, T))
    K = problem.truncate
    text = TEXT[problem.cell]
    # the same sum without truncation: asked for truncate=K, a learner may keep more than K steps
    full = correct if K is None else expansion(
        Problem(problem.params, problem.inputs, problem.targets, problem.h0, None,
                problem.seed, problem.cell, problem.c0))

    # constant factors
    for ratio, name, what in _fractions(T, B):
        out.append(Hypothesis(
            "mean",
            f"You differentiate {what}: every gradient is {name} of the reference, which "
            "uses the total J = Σ_t Σ_b J_t. Remove that division from your backward (or, "
            "if you want the mean, divide the loss too and compare against the total × "
            f"{name}).",
            {k: ratio * v for k, v in ref.items()},
        ))
    out.append(Hypothesis(
        "sign",
        "The sign is flipped: every gradient is −1 × the reference. ∂J_t/∂y_t = p_t − "
        "onehot(label_t), not onehot − p_t; and a gradient is returned before the descent "
        "step's minus sign is applied.",
        {k: -v for k, v in ref.items()},
    ))
    # recurrence cut short: the terms with t − k < m only
    for m in range(1, T if K is None else 0):
        out.append(Hypothesis(
            "truncated",
            f"Your dW^hh keeps only {_steps(m)} of the recurrence: the term {text['step']} "
            f"is missing or not accumulated. Your {text['rec']} "
            f"gradients equal the reference truncated to {_steps(m)} (only the terms with "
            f"t − k < {m}). At every step add the error coming back from the later steps, "
            f"{text['carry']}, and carry it all the way back "
            "to the first step. (If you meant truncated BPTT, check against the truncated "
            f"reference: --truncate {m}.)",
            correct.grads(rec_mask=(t_idx - k_idx < m)),
        ))
    # asked for truncate=K: a window of m ≠ K steps (m ≥ T keeps every term: the full gradient)
    if K is not None:
        for m in range(1, T):
            if m != K:
                kept = full.grads(rec_mask=(t_idx - k_idx < m))
                out.append(Hypothesis("truncate-window", _window_message(m, K, problem.cell),
                                      kept))
    if problem.truncate is not None and problem.truncate < T:
        out.append(Hypothesis(
            "truncate-ignored",
            f"You were asked for truncated BPTT (truncate = {problem.truncate}: only the "
            f"terms with t − k < {problem.truncate}) but return the FULL gradient: your "
            "function ignores its truncate argument. Stop walking each J_t back after "
            "truncate steps.",
            full.grads(),
        ))
    out.append(Hypothesis(
        "last-loss-only",
        f"Only the last loss J_T is sent back through time: your {text['rec']} "
        "gradients hold the terms of J_T alone. Add ∂J_t/∂h_t = W^hyᵀ ∂J_t/∂y_t into the "
        "error at EVERY step t, not only at the last one.",
        correct.grads(rec_mask=(t_idx == T - 1)),
    ))
    skipped_first: dict[str, np.ndarray | None] = dict(
        correct.grads(rec_mask=(k_idx >= 1), head_mask=np.arange(T) >= 1))
    for key in problem.state_keys:  # such a loop hands back ∂J/∂h_1 as "∂J/∂h0": not compared
        skipped_first[key] = None
    out.append(Hypothesis(
        "first-step-skipped",
        "Your loop over time skips the first step (t = 1): its head term and every term "
        f"through {text['z1']} are missing. Loop over all T steps, e.g. for t in "
        "reversed(range(T)).",
        skipped_first,
    ))
    out.append(Hypothesis(
        "last-step-skipped",
        "Your loop over time skips the last step (t = T): the terms of J_T are missing. "
        "Loop over all T steps, e.g. for t in reversed(range(T)).",
        correct.grads(rec_mask=(t_idx <= T - 2), head_mask=np.arange(T) <= T - 2),
    ))
    if problem.gates:
        return out + _gated_hypotheses(problem, ref)
    # one factor of every term changed: the reference walk with that factor swapped
    variants = [
        ("no-tanh-derivative", {"tanh_prime": "one"},
         "The derivative of tanh is missing: your gradients equal those of a network whose "
         "tanh' is 1. Since h_t = tanh(z_t), multiply by ∂h_t/∂z_t = 1 − h_t² before going "
         "on: dJ_dz = dJ_dh * (1 - h_t**2)."),
        ("tanh-derivative-off-by-one", {"tanh_prime": "h_prev"},
         "Off by one step: you take tanh' at the previous state, 1 − h_{t−1}², where it "
         "belongs at the output of the same step: h_t = tanh(z_t), so ∂h_t/∂z_t = 1 − h_t² "
         "(hs[t + 1], not hs[t], in a 0-based loop whose forward keeps hs[0] = h0): "
         "dJ_dz = dJ_dh * (1 - h_t**2)."),
        ("tanh-derivative-at-pre-activation", {"tanh_prime": "z"},
         "You take tanh' at the pre-activation, 1 − z_t², where it belongs at the output: "
         "h_t = tanh(z_t), so ∂h_t/∂z_t = 1 − tanh²(z_t) = 1 − h_t². Square h_t, not z_t: "
         "dJ_dz = dJ_dh * (1 - h_t**2)."),
        ("tanh-applied-twice", {"tanh_prime": "tanh_h"},
         "Your tanh' applies tanh once too often: 1 − tanh²(h_t), where h_t is already "
         "tanh(z_t). ∂h_t/∂z_t = 1 − tanh²(z_t) = 1 − h_t²: dJ_dz = dJ_dh * (1 - h_t**2)."),
        ("activation-for-derivative", {"tanh_prime": "h"},
         "You multiply by the activation h_t itself where its derivative belongs: h_t = "
         "tanh(z_t), so ∂h_t/∂z_t = 1 − h_t², not h_t: dJ_dz = dJ_dh * (1 - h_t**2)."),
        ("h-instead-of-h-prev", {"whh_factor": "h_t"},
         "Your dW^hh uses h_t where h_{t−1} belongs: z_t = W^hh h_{t−1} + …, so "
         "∂J/∂W^hh = Σ_t ∂J/∂z_t h_{t−1}ᵀ. Take the state from BEFORE the step: in a "
         "0-based loop for t in range(T) whose forward keeps hs[0] = h0 and hs[t + 1] = "
         "the state after step t, that is hs[t], not hs[t + 1]."),
        ("first-step-zero-state", {"whh_factor": "zero_first"},
         "Your dW^hh leaves out the first step's term ∂J/∂z_1 h0ᵀ: at the first step the "
         "previous state is the initial state h0, not zero. Use h0 there (it matters "
         "whenever h0 ≠ 0, e.g. when the state is carried from one chunk to the next)."),
        ("carry-skips-tanh-derivative", {"carry": "WhhT_dh"},
         "The error you carry back to h_{t−1} skips tanh': you pass W^hhᵀ ∂J/∂h_t back, "
         "but h_t = tanh(z_t) stands between them, so carry W^hhᵀ ∂J/∂z_t = "
         "W^hhᵀ (∂J/∂h_t ⊙ (1 − h_t²)) — in batch rows dJ_dz @ Whh, not dJ_dh @ Whh."),
        ("carry-untransposed", {"carry": "Whh_dz"},
         "You carry the error back with W^hh where W^hhᵀ belongs: ∂J/∂h_{t−1} = W^hhᵀ "
         "∂J/∂z_t (in batch rows dJ_dz @ Whh; in columns Whh.T @ dJ_dz). W^hh is square, "
         "so the shapes never complained."),
        ("head-h-prev", {"head_factor": "h_prev"},
         "Off by one step in the head: your dW^hy uses h_{t−1} where h_t belongs: "
         "y_t = W^hy h_t + b_y, so ∂J/∂W^hy = Σ_t ∂J_t/∂y_t h_tᵀ."),
    ]
    for name, options, message in variants:
        out.append(Hypothesis(name, message, walk(problem, **options).grads()))
    # a transposed weight gradient, one weight at a time
    out += _transposed_hypotheses(problem, ref)
    out.append(_h0_ignored(problem))
    out.append(_h0_missing(problem.cell, ref))
    return out


def _transposed_hypotheses(problem: Problem, ref: dict[str, np.ndarray]) -> list[Hypothesis]:
    """A transposed weight gradient, one weight at a time."""
    text = TEXT[problem.cell]
    formulas = {
        "Wxh": text["Wxh"],
        "Whh": text["Whh"],
        "Why": "Σ_t ∂J_t/∂y_t h_tᵀ, shaped like W^hy (V × H): in batch rows dJ_dy.T @ h",
    }
    return [Hypothesis(
        "transposed",
        f"Your d{MATH[key]} is the transpose of the right gradient: ∂J/∂{MATH[key]} = "
        f"{formula}.",
        dict(ref, **{key: ref[key].T}),
    ) for key, formula in formulas.items()]


GATE_NAMES = {"i": "input gate", "f": "forget gate", "g": "candidate cell", "o": "output gate",
              "r": "reset gate", "z": "update gate", "n": "candidate state"}


def _derivative_text(gate: str, of: str) -> str:
    """Gate ``gate``'s activation derivative written at gate ``of``'s value, in math."""
    return f"1 − {of}_t²" if gate in TANH_GATES else f"{of}_t ⊙ (1 − {of}_t)"


def _derivative_code(gate: str) -> str:
    """The line that computes ∂J/∂a^gate from ∂J/∂gate, in batch rows."""
    factor = f"(1 - {gate}**2)" if gate in TANH_GATES else f"{gate} * (1 - {gate})"
    return f"dJ_da_{gate} = dJ_d{gate} * {factor}"


CUT_DIRECT = {
    "lstm": ("lstm-c-path-cut",
             "The error through the cell state is not carried back: your gradients equal the "
             "reference with the path c_{t−1} → c_t cut (∂c_t/∂c_{t−1} = diag(f_t) taken as "
             "0). c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, so at every step ∂J/∂c_t = ∂J/∂h_t ⊙ o_t ⊙ "
             "(1 − tanh² c_t) + ∂J/∂c_{t+1} ⊙ f_{t+1}: carry dJ_dc_prev = dJ_dc * f back and "
             "ADD it (+=, not =) to the next step's dJ_dc. A carried dJ/dc that is never "
             "updated does this."),
    "gru": ("gru-direct-path-cut",
            "The error through the direct path z_t ⊙ h_{t−1} is not carried back: your "
            "gradients equal the reference with ∂h_t/∂h_{t−1} through it (diag(z_t)) taken as "
            "0. h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}, so the error reaching h_{t−1} is "
            "W^hhᵀ ∂J/∂a^hh_t PLUS ∂J/∂h_t ⊙ z_t: dJ_dh_prev = dJ_da_hh @ Whh + dJ_dh * z."),
}
H0_MISSING = {
    "rnn": "∂J/∂h0 = W^hhᵀ ∂J/∂z_1, the error carried one step past the first",
    "lstm": "∂J/∂h0 = W^hhᵀ ∂J/∂a_1, the error carried one step past the first",
    "gru": "∂J/∂h0 = W^hhᵀ ∂J/∂a^hh_1 + ∂J/∂h_1 ⊙ z_1, the error carried one step past the "
           "first",
}


# the initial state as the "h0 ignored" hypothesis names it: the state, the zeros taken for
# it, and where the forward should start from
STATE_WORDS = {"rnn": ("h0", "h0 = 0", "h0 (hs[0] = h0)"),
               "lstm": ("(h0, c0)", "h0 = c0 = 0", "it"),
               "gru": ("h0", "h0 = 0", "it")}


def _h0_ignored(problem: Problem) -> Hypothesis:
    """The hypothesis of a backward that starts from zeros, not from the initial state given:
    the double sum of the same problem with h0 (and c0) = 0."""
    zero = np.zeros_like(problem.h0)
    zero_start = Problem(problem.params, problem.inputs, problem.targets, zero,
                         problem.truncate, problem.seed, problem.cell,
                         None if problem.c0 is None else zero)
    state, start, start_from = STATE_WORDS[problem.cell]
    return Hypothesis(
        "h0-ignored",
        f"Your function ignores the initial state {state} it is given and starts from zeros: "
        f"its gradients are exactly those of the same network with {start}. Start the "
        f"forward from {start_from}; it matters whenever the state is carried between chunks.",
        (gated_walk(zero_start) if problem.gates else walk(zero_start)).grads(),
    )


def _h0_missing(cell: str, ref: dict[str, np.ndarray]) -> Hypothesis:
    """The hypothesis of a backward that hands back ∂J/∂h0 = 0."""
    return Hypothesis(
        "h0-missing",
        f"Your ∂J/∂h0 is zero, but the initial state feeds the first step: {H0_MISSING[cell]}.",
        dict(ref, h0=np.zeros_like(ref["h0"])),
    )


def _gated_hypotheses(problem: Problem, ref: dict[str, np.ndarray]) -> list[Hypothesis]:
    """The LSTM's or GRU's own bugs, each the double sum walked with a changed step
    (:func:`gated_step_variant`), then its transposed gradients and missing initial state."""
    cell, gates = problem.cell, problem.gates
    kind = {"lstm": "an LSTM", "gru": "a GRU"}[cell]
    name, message = CUT_DIRECT[cell]

    def also(gate: str) -> str:  # the GRU's r error passes through n's derivative
        return " and r's, whose error passes through it," if (cell, gate) == ("gru", "n") else ""

    # truncated to one step the LSTM's cut c-path changes ∂J/∂c0 alone, to zero: that is
    # "c0-missing", and the cut's advice (add the carried dJ_dc in) would break the truncation
    cut = cell == "gru" or problem.truncate != 1
    out = [Hypothesis(name, message,
                      gated_walk(problem, gated_step_variant(cell, cut_direct=True)).grads())
           ] if cut else []
    for gate in gates:
        activation = "tanh" if gate in TANH_GATES else "σ"
        out.append(Hypothesis(
            f"{cell}-gate-derivative-missing",
            f"The derivative of gate {gate}'s activation ({GATE_NAMES[gate]}) is missing: "
            f"your gradients equal those of {kind} whose ∂{gate}_t/∂a^{gate}_t is 1. "
            f"{gate}_t = {activation}(a^{gate}_t), so multiply by ∂{gate}_t/∂a^{gate}_t = "
            f"{_derivative_text(gate, gate)}: {_derivative_code(gate)}.",
            gated_walk(problem, gated_step_variant(cell, gate=gate)).grads(),
        ))
    for gate in gates:
        activation, other = ("tanh", "σ") if gate in TANH_GATES else ("σ", "tanh")
        written = f"{gate}_t ⊙ (1 − {gate}_t)" if gate in TANH_GATES else f"1 − {gate}_t²"
        out.append(Hypothesis(
            f"{cell}-other-activation-derivative",
            f"The derivative of gate {gate}'s activation ({GATE_NAMES[gate]}) is {other}'s, "
            f"{written}, but {gate}_t = {activation}(a^{gate}_t): ∂{gate}_t/∂a^{gate}_t = "
            f"{_derivative_text(gate, gate)}: {_derivative_code(gate)}.",
            gated_walk(problem, gated_step_variant(cell, gate=gate, other_formula=True)).grads(),
        ))
    for gate in gates:
        for other in gates:
            if other == gate:
                continue
            out.append(Hypothesis(
                f"{cell}-gate-mixup",
                f"Gate mix-up: the derivative of gate {gate} ({GATE_NAMES[gate]}) is taken "
                f"at gate {other}'s activation, {_derivative_text(gate, other)}, where "
                f"∂{gate}_t/∂a^{gate}_t = {_derivative_text(gate, gate)} belongs (a line "
                f"copied from gate {other}'s and not fully changed?): "
                f"{_derivative_code(gate)}. Gate {gate}'s rows (block "
                f"{gates.index(gate) + 1} of {len(gates)}){also(gate)} go wrong first; through "
                "W^hhᵀ the error carried back then spoils every gate's rows at the earlier "
                "steps.",
                gated_walk(problem, gated_step_variant(cell, gate=gate, taken_at=other)).grads(),
            ))
    out += _convention_hypotheses(problem)
    out += _transposed_hypotheses(problem, ref)
    out.append(_h0_ignored(problem))
    out.append(_h0_missing(cell, ref))
    if cell == "lstm":
        out.append(Hypothesis(
            "lstm-tanh-c-derivative-missing",
            "The derivative of tanh at the cell state is missing: your gradients equal those "
            "of an LSTM whose ∂h_t/∂c_t is o_t, not o_t ⊙ (1 − tanh² c_t). h_t = o_t ⊙ tanh "
            "c_t, so ∂J/∂c_t = ∂J/∂h_t ⊙ o_t ⊙ (1 − tanh² c_t) + ∂J/∂c_{t+1} ⊙ f_{t+1}: "
            "dJ_dc = dJ_dh * o * (1 - np.tanh(c)**2) + dJ_dc_from_later.",
            gated_walk(problem, gated_step_variant(cell, no_tanh_c=True)).grads(),
        ))
        out.append(Hypothesis(
            "lstm-tanh-c-prev",
            "Off by one step: you take tanh at the previous cell state c_{t−1} where tanh c_t "
            "belongs: your gradients equal those of an LSTM whose ∂h_t/∂o_t is tanh c_{t−1} "
            "and ∂h_t/∂c_t is o_t ⊙ (1 − tanh² c_{t−1}). h_t = o_t ⊙ tanh c_t, so ∂J/∂o_t = "
            "∂J/∂h_t ⊙ tanh c_t and ∂h_t/∂c_t = o_t ⊙ (1 − tanh² c_t): dJ_do = dJ_dh * "
            "np.tanh(c) with c = c_t (cs[t + 1] when cs[0] = c0, not cs[t]).",
            gated_walk(problem, gated_step_variant(cell, tanh_c_prev=True)).grads(),
        ))
        out.append(Hypothesis(
            "state-gradients-swapped",
            "Your ∂J/∂h0 and ∂J/∂c0 are swapped: grads['h0'] holds ∂J/∂c0 and grads['c0'] "
            "holds ∂J/∂h0. ∂J/∂h0 = W^hhᵀ ∂J/∂a_1 (the error carried through W^hh), ∂J/∂c0 = "
            "∂J/∂c_1 ⊙ f_1 (through the cell state).",
            dict(ref, h0=ref["c0"], c0=ref["h0"]),
        ))
        out.append(Hypothesis(
            "c0-missing",
            "Your ∂J/∂c0 is zero, but the initial cell state feeds the first one: c_1 = f_1 ⊙ "
            "c0 + i_1 ⊙ g_1, so ∂J/∂c0 = ∂J/∂c_1 ⊙ f_1.",
            dict(ref, c0=np.zeros_like(ref["c0"])),
        ))
    return out


def _rel(mine: np.ndarray | None, theirs: np.ndarray) -> float:
    """Relative error of two gradients of one tensor; inf when missing, mis-shaped or NaN."""
    if mine is None or np.shape(mine) != np.shape(theirs) or not np.isfinite(mine).all():
        return float("inf")
    return compare_arrays("", mine, theirs).max_rel


# ----------------------------------------------------------------------------
# localisation: which J_t's terms are wrong, probed on prefixes
# ----------------------------------------------------------------------------


@dataclass
class StepVerdict:
    """The terms of one loss J_t (t 0-based) in the learner's gradient.

    max_rel: worst relative error over the parameters; wrong: the parameters that differ;
    reach: when the recurrent part equals the terms k = t−reach+1 … t only, that reach;
    judged: the parameters the learner returned (the others are not judged).
    """

    t: int
    max_rel: float
    wrong: tuple[str, ...]
    reach: int | None = None
    judged: tuple[str, ...] = PARAM_KEYS

    @property
    def ok(self) -> bool:
        """True when J_t's terms are right in every parameter."""
        return not self.wrong


@dataclass
class Localisation:
    """Per J_t verdicts from prefix probing, the first wrong t (0-based) and a sentence."""

    steps: list[StepVerdict]
    first_wrong: int | None
    message: str


def localise(fn: Callable[..., Any], problem: Problem, correct: Expansion,
             name: str = "your function") -> Localisation:
    """Call fn on the first T' = 1 … T steps; the differences are the terms of each J_t.

    grads(T') − grads(T' − 1) should be the head term of J_{T'−1} plus Σ_k of its (t, k)
    terms; the first J_t where it is not is where the mistake shows first.
    Raises BpttError when a prefix call fails.
    """
    previous: dict[str, np.ndarray] = {}
    steps: list[StepVerdict] = []
    for t in range(problem.T):
        result = call_backward(fn, problem.prefix(t + 1), name)
        expected = {key: correct.head[key][t] for key in HEAD}
        expected.update({key: correct.rec[key][t].sum(axis=0) for key in RECURRENT})
        rows: dict[str, np.ndarray | None] = {}
        returned = [key for key in PARAM_KEYS if key in result.grads]  # missing: not judged
        for key in returned:
            got = result.grads[key]
            if got.shape != expected[key].shape:
                rows[key] = None
                continue
            with np.errstate(invalid="ignore", over="ignore"):  # inf − inf: NaN, said by _rel
                rows[key] = got - previous[key] if key in previous else got
            previous[key] = got
        rel = {key: _rel(rows[key], expected[key]) for key in returned}
        wrong = tuple(key for key in returned if not rel[key] <= PASS_TOL)
        reach = None
        if any(key in RECURRENT for key in wrong):
            for m in range(1, t + 1):
                kept = {key: correct.rec[key][t, t - m + 1:].sum(axis=0) for key in RECURRENT}
                if all(_rel(rows.get(key), kept[key]) <= MATCH_TOL for key in RECURRENT):
                    reach = m
                    break
        steps.append(StepVerdict(t, max(rel.values(), default=0.0), wrong, reach,
                                 tuple(returned)))
    first = next((s.t for s in steps if not s.ok), None)
    return Localisation(steps, first, _localisation_message(steps, first))


def _one_step_suspects(bad: StepVerdict) -> str:
    """Where a mistake already wrong at T = 1 can be, given which of J_1's terms are right
    (the end of the sentence "the mistake is inside a single step…")."""
    wrong, judged = set(bad.wrong), set(bad.judged)
    if wrong & set(HEAD) or not set(HEAD) <= judged:
        return (" — the head, ∂J_t/∂y_t = p_t − onehot, tanh' = 1 − h_t², the input x_t, or "
                "h0 as the previous state")
    if "bh" in judged and "bh" not in wrong:
        factors = [f for key, f in (("Wxh", "the input x_t for W^xh"),
                                    ("Whh", "the previous state h0 for W^hh")) if key in wrong]
        return (". b_h's term is ∂J/∂z_t itself and is right, so ∂J/∂z_t is right: what it is "
                f"multiplied by is wrong, {' and '.join(factors)}")
    if wrong == {"bh"} and {"Wxh", "Whh"} <= judged:
        return (". W^xh's and W^hh's terms are right, so ∂J/∂z_t is right: only b_h's term, "
                "Σ_b ∂J/∂z_t (summed over the batch rows), is assembled wrongly")
    return (". The head's terms are right, so ∂J_t/∂y_t is right: the mistake lies between it "
            "and the weights, in ∂J_t/∂h_t = W^hyᵀ ∂J_t/∂y_t, tanh' = 1 − h_t², the input x_t, "
            "or h0 as the previous state")


def _localisation_message(steps: list[StepVerdict], first: int | None) -> str:
    if first is None:
        return ("Run on the first T' = 1 … T steps, your function gives the right terms for "
                "every J_t: the mistake appears only on the whole sequence (a factor that "
                "depends on T?).")
    T = len(steps)
    labels = " ".join(f"J_{s.t + 1} {'right' if s.ok else 'WRONG'}," for s in steps)[:-1]
    text = (f"Run on the first T' = 1 … {T} steps, your gradient differs first in the terms of "
            f"J_{first + 1} (t counted from 1): {labels}. ")
    bad = steps[first]
    keys = ", ".join(MATH[k] for k in bad.wrong)
    right = "J_1" if first == 1 else f"J_1 … J_{first}"  # the terms found right (first > 0)
    if first == 0:
        text += (f"It is wrong already at T = 1 (in {keys}), where nothing is carried through "
                 f"time: the mistake is inside a single step{_one_step_suspects(bad)}.")
    elif any(k in HEAD for k in bad.wrong):
        head = ", ".join(MATH[k] for k in bad.wrong if k in HEAD)
        text += (f"The terms of {right} are right, but the head's terms of J_{first + 1} are "
                 f"not ({head}): they are ∂J_t/∂y_t h_tᵀ and ∂J_t/∂y_t, which no error "
                 "carried back through time enters, so what your backward pairs there after "
                 "the first step is not step t's: the state h_t, or p_t in ∂J_t/∂y_t = p_t − "
                 "onehot(label_t) (a buffer overwritten or shared between steps, an index off "
                 "by one?).")
    elif "bh" in bad.judged and "bh" not in bad.wrong:
        verb = "differs" if len(bad.wrong) == 1 else "differ"
        text += (f"The terms of {right} are right, and at J_{first + 1} only {keys} {verb} "
                 "while b_h is right: b_h's terms are ∂J/∂z_k themselves, so the error is "
                 "carried back right; what ∂J/∂z_k is multiplied by at the earlier steps is "
                 "wrong (x_k for W^xh, h_{k−1} for W^hh).")
    else:
        text += (f"The terms of {right} are right, so a single step is right: the "
                 f"mistake is in how the error is carried back from h_t to h_{{t−1}} "
                 "(∂h_t/∂h_{t−1} = diag(1 − h_t²) W^hh, transposed on the way back) or in how "
                 "the carried errors are added up.")
    if bad.reach is not None:
        t1 = first + 1
        text += (f" For J_{t1} your gradient holds only the terms k = {t1 - bad.reach + 1} … "
                 f"{t1}: the error stops after {_steps(bad.reach)}.")
    return text


# ----------------------------------------------------------------------------
# the whole check
# ----------------------------------------------------------------------------


@dataclass
class ParamCheck:
    """One parameter (or "h0"): the learner's gradient against the reference.

    comparison: None when missing or mis-shaped (note says which).  explanation: the
    sentence of the hypothesis that reproduces this parameter's gradient, if one does.
    """

    name: str
    comparison: Comparison | None
    passed: bool
    note: str = ""
    explanation: str = ""


@dataclass
class LossCheck:
    """The learner's loss against the reference J (the total), when it was returned."""

    yours: float
    reference: float
    passed: bool
    message: str = ""

    @property
    def rel_error(self) -> float:
        """The error the verdict is held to (see :func:`_loss_error`)."""
        return _loss_error(self.yours, self.reference)


def _loss_error(loss: float, ref_loss: float) -> float:
    """|loss − J| / max(|J|, 1): relative, or absolute for a J below 1 (a J near 0 would
    make round-off a large relative error)."""
    return abs(loss - ref_loss) / max(abs(ref_loss), 1.0)


@dataclass
class BackwardReport:
    """Everything :func:`check_backward` found.

    diagnosis: the one hypothesis that reproduces every gradient (None if none does, or
    if all pass).  findings: further sentences (per parameter, or by pattern).
    localisation: prefix probing, run when no single hypothesis fits.  tolerance: the
    relative error a gradient passes within (PASS_TOL; FLOAT32_PASS_TOL for a backward that
    computes in float32).
    """

    name: str
    problem: Problem
    params: list[ParamCheck]
    tolerance: float = PASS_TOL
    loss: LossCheck | None = None
    h_last_ok: bool | None = None
    repeatable: bool = True
    diagnosis: Hypothesis | None = None
    findings: list[str] = field(default_factory=list)
    localisation: Localisation | None = None
    gates: dict[str, dict[str, bool]] | None = None  # LSTM: per parameter, gate -> right?

    @property
    def passed(self) -> bool:
        """Every parameter (and the loss and final state, when returned) agrees, and a
        second call returns the same."""
        return (all(p.passed for p in self.params)
                and (self.loss is None or self.loss.passed)
                and self.h_last_ok is not False and self.repeatable)

    def failures(self) -> list[str]:
        """What failed, in a few words each (for the last line of a report)."""
        failed = sum(not p.passed for p in self.params)
        out = [f"{failed} of {len(self.params)} gradients differ from the reference"] \
            if failed else []
        if self.loss is not None and not self.loss.passed:
            out.append("the loss differs")
        if self.h_last_ok is False:
            out.append("h_last differs")
        if not self.repeatable:
            out.append("a second call returns other results")
        return out

    def messages(self) -> list[str]:
        """The sentences to show a learner, most important first."""
        out = []
        if self.loss is not None and not self.loss.passed:
            out.append(self.loss.message)
        if self.h_last_ok is False:
            out.append("Your h_last differs from the final state of the forward pass h_T: "
                       f"check the forward ({FORWARD[self.problem.cell]}, starting from "
                       f"{' and '.join(self.problem.state_keys)}).")
        if self.diagnosis is not None:
            out.append(self.diagnosis.message)
        out += self.findings
        if self.localisation is not None and self.diagnosis is None:
            out.append(self.localisation.message)
        return out


# other libraries' and courses' gate orders: the learner read bptt's blocks in one of these
GATE_ORDERS: dict[str, dict[tuple[str, ...], str]] = {
    "lstm": {("i", "f", "o", "g"): "CS231n's", ("i", "g", "f", "o"): "TensorFlow 1's LSTMCell's",
             ("f", "i", "g", "o"): "", ("i", "f", "g", "o"): ""},
    "gru": {("z", "r", "n"): "Keras's", ("r", "z", "n"): ""},
}


def _reparametrised(problem: Problem, blocks: list[int], signs: list[float]
                    ) -> dict[str, np.ndarray]:
    """The gradient of a learner whose forward is the reference's with the recurrent
    parameters' block q of H rows read from block blocks[q], times signs[q]: the reference's
    gradient at those parameters, brought back to the learner's (a block's gradient goes where
    the block came from, with its sign)."""
    H = problem.params["Whh"].shape[1]

    def rows(q: int) -> slice:
        return slice(q * H, (q + 1) * H)

    seen = {}
    for key in problem.recurrent:
        value = problem.params[key]
        seen[key] = np.concatenate([signs[q] * value[rows(b)] for q, b in enumerate(blocks)])
    params = dict(problem.params, **seen)
    _, grads, terms = reference.loss_and_grads(
        params, problem.inputs, problem.targets, h0=problem.state, truncate=problem.truncate,
        keep_contributions=False, cell=problem.cell)
    out = {key: np.asarray(value) for key, value in grads.items()}
    for key in problem.recurrent:
        back = np.empty_like(out[key])
        for q, b in enumerate(blocks):
            back[rows(b)] = signs[q] * out[key][rows(q)]
        out[key] = back
    state = terms.dJ_dstate0 if isinstance(terms.dJ_dstate0, tuple) else (terms.dJ_dstate0,)
    out.update(zip(problem.state_keys, map(np.asarray, state), strict=True))
    return out


def _rows(q: int) -> str:
    """Block q's rows in the learner's slicing: 0:H, H:2H, 2H:3H, …"""
    return ":".join("0" if n == 0 else "H" if n == 1 else f"{n}H" for n in (q, q + 1))


def _convention_hypotheses(problem: Problem) -> list[Hypothesis]:
    """Right maths in another convention: the gate blocks in another library's order, or
    (GRU) the other paper's h_t = z_t ⊙ n_t + (1 − z_t) ⊙ h_{t−1}.  Either is the
    reference's forward with the blocks moved (or z's negated: 1 − σ(a) = σ(−a)), so its
    gradient is the reference's at the moved parameters, moved back."""
    cell, gates = problem.cell, problem.gates
    out = []
    for order, whose in GATE_ORDERS[cell].items():
        if order == gates:
            continue
        source = f" ({whose} order)" if whose else ""
        moved = _gate_list([f"{g} from rows {_rows(q)}" for q, g in enumerate(gates)
                            if order[q] != g])
        out.append(Hypothesis(
            f"{cell}-gate-order",
            f"Gate order: your gradients (and so your loss) are exactly the reference's for "
            f"the gate blocks in the order {', '.join(order)}{source}. bptt, like PyTorch, "
            f"stacks the blocks of H rows of W^xh, W^hh, b^xh, b^hh in the order "
            f"{', '.join(gates)}: read gate {moved}, in your forward and your backward "
            "alike. Your maths is right.",
            _reparametrised(problem, [order.index(g) for g in gates], [1.0] * len(gates)),
        ))
    if cell == "gru":
        out.append(Hypothesis(
            "gru-z-swapped",
            "z and 1 − z swapped: your gradients (and so your loss) are exactly those of a GRU "
            "with h_t = z_t ⊙ n_t + (1 − z_t) ⊙ h_{t−1} (the convention of Chung et al. 2014 "
            "and of Wikipedia). bptt, like PyTorch and Cho et al. 2014, keeps the previous "
            "state with z: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}, so dJ_dn = dJ_dh * (1 - z), "
            "dJ_dz = dJ_dh * (h_prev - n) and the direct path carries dJ_dh * z. Your maths "
            "is right for your convention.",
            _reparametrised(problem, [0, 1, 2], [1.0, -1.0, 1.0]),
        ))
    return out


def check_backward(
    fn: Callable[..., Any],
    problem: Problem | None = None,
    name: str = "your function",
    probe: bool = True,
) -> BackwardReport:
    """Compare a learner's RNN, LSTM or GRU backward with the reference and diagnose any difference.

    fn: see the module docstring for its signature.  problem: from :func:`make_problem`
    (default: its defaults, the RNN; its cell says which backward fn is).  probe: when no
    hypothesis fits, call fn on prefixes (RNN) or on the first step alone (LSTM, GRU: gate
    by gate) to localise the wrong terms.  Returns a :class:`BackwardReport`; raises
    BpttError when fn cannot be called or returns the wrong kind of thing.
    """
    problem = make_problem() if problem is None else problem
    user = call_backward(fn, problem, name)
    again = call_backward(fn, problem, name)  # a backward keeps no state between calls
    correct = expansion(problem)
    ref_loss, ref_grads, terms = reference.loss_and_grads(
        problem.params, problem.inputs, problem.targets, h0=problem.state,
        truncate=problem.truncate, keep_contributions=False, cell=problem.cell,
    )
    dJ_dstate0 = terms.dJ_dstate0 if isinstance(terms.dJ_dstate0, tuple) \
        else (terms.dJ_dstate0,)
    ref = dict(ref_grads, **dict(zip(problem.state_keys, map(np.asarray, dJ_dstate0),
                                     strict=True)))
    keys = [*problem.param_keys, *(k for k in problem.state_keys if k in user.grads)]
    tol = FLOAT32_PASS_TOL if user.float32 else PASS_TOL
    report = BackwardReport(name, problem, [_param_check(key, user, ref, tol) for key in keys],
                            tolerance=tol)
    if not _same_result(user, again):
        report.repeatable = False
        report.findings.append(
            "Called a second time on the same arrays, your function returns other results: it "
            "keeps something between calls (a module-level array, a default argument, an "
            "input changed in place). Each call must start afresh: the error carried back "
            "from later steps is zero at the last step. The table checks the first call.")
    if user.loss is not None:
        report.loss = _loss_check(user.loss, ref_loss, problem,
                                  FLOAT32_PASS_TOL if user.float32 else LOSS_TOL)
    if user.h_last is not None:
        if user.h_last.ndim == 2:
            final = correct.h_last
        else:  # an LSTM's pair (h_T, c_T), as _check_shapes stacked it: the LSTM has c_last
            assert correct.c_last is not None
            final = np.stack([correct.h_last, correct.c_last])
        report.h_last_ok = _h_last_ok(user.h_last, final, tol)
    failing = [p.name for p in report.params if not p.passed]
    worst = max((p.comparison.max_rel if p.comparison else np.inf) for p in report.params)
    if not failing:
        if report.passed:
            report.findings += _blind_spots(problem) + _unchecked(user, problem)
        if user.float32 and report.passed:
            report.findings.append(
                f"Your backward computes in float32: it agrees with the reference to "
                f"{worst:.0e}, float32's round-off, so it passes at float32's tolerance "
                f"{FLOAT32_PASS_TOL:g}. A float64 result is checked to {PASS_TOL:g}, and only "
                "float64 can tell the known bugs apart.")
        return report
    if problem.gates and set(failing) & set(problem.recurrent):
        report.gates = gate_blocks(user, ref, problem.recurrent, problem.gates, tol)
        report.findings.append(_gates_message(report.gates, problem.gates))
    low = [k for k in failing if user.dtypes.get(k, "float64") not in ("float64", "object")]
    if low or worst < NEAR_TOL:  # round-off or precision: the hypotheses would only add noise
        report.findings.append(_precision_finding(user, low, worst))
        return report
    candidates = hypotheses(problem, correct)
    fits = [h for h in candidates if _fits(h, user, keys)]
    if fits:
        report.diagnosis = fits[0]
        return report
    _explain_each(report, candidates, user, ref, failing)
    wrong = [k for k in failing if k in user.grads]  # a missing one is said in its row
    report.findings += _patterns(report, wrong)
    # (prefixes tell nothing about ∂J/∂h0 alone; their sentences speak the RNN's math: the
    # LSTM and GRU are localised by gate instead)
    if probe and problem.gates and set(wrong) & set(problem.recurrent):
        first_step = _first_step_gates(fn, problem, correct, name, tol)
        if first_step is not None:
            report.findings.append(first_step)
    if probe and set(wrong) - {"h0"} and problem.cell == "rnn":
        try:
            report.localisation = localise(fn, problem, correct, name)
        except BpttError as exc:
            report.findings.append(f"(Could not probe prefixes of the sequence: {exc}.)")
    return report


def _h_last_ok(h_last: np.ndarray, h_T: np.ndarray, tol: float) -> bool:
    """The learner's h_last is the forward's h_T (B, H): in rows, or, when B = H (where
    :func:`_as_rows` cannot tell the layouts apart by their shape), in (H, B) columns."""
    if _rel(h_last, h_T) <= tol:
        return True
    return h_T.ndim == 2 and h_T.shape[0] == h_T.shape[1] and _rel(h_last.T, h_T) <= tol


def _unchecked(user: UserResult, problem: Problem) -> list[str]:
    """A pass vouches only for the keys it read: say which of the learner's it did not (its
    dJ/dh0 under "dh0", say, which the learner may believe was checked)."""
    if not user.unknown:
        return []
    verb = "names" if len(user.unknown) == 1 else "name"
    missing = [k for k in problem.state_keys if k not in user.grads]
    read = f" ∂J/∂{MATH[missing[0]]} is read under the key {missing[0]!r}" + "".join(
        f", ∂J/∂{MATH[k]} under {k!r}" for k in missing[1:]) + "." if missing else ""
    return [f"Your grads also have {', '.join(user.unknown)}, which {verb} no parameter: not "
            f"checked.{read}"]


def _blind_spots(problem: Problem) -> list[str]:
    """What a pass cannot vouch for on this problem's sizes (as T < 4 is refused, for the
    same reason, but a learner's code may only handle H = 1 or B = 1)."""
    H = problem.params["Whh"].shape[1]
    out = []
    if H == 1 and problem.cell == "rnn":
        out.append("With H = 1, W^hh is 1 × 1: a transposed dW^hh, or W^hh where W^hhᵀ "
                   "carries the error back, gives the same numbers and cannot show here. "
                   "Check again with --hidden 2 or more.")
    if problem.B == 1:
        out.append("With B = 1, a mean over the batch equals the total and cannot show here. "
                   "Check again with --batch 2 or more if your backward takes a batch.")
    return out


def _precision_finding(user: UserResult, low: list[str], worst: float) -> str:
    """The sentence for gradients that came back in a low precision (low: their keys) or
    that miss by round-off only (worst < NEAR_TOL)."""
    if not low:
        return (f"Your gradients agree with the reference to {worst:.0e} but not to "
                f"{PASS_TOL:g}: that is round-off, not a bug in the formulas — is something "
                "computed in float32? Check in float64.")
    names, dtype = ", ".join(MATH[k] for k in low), user.dtypes[low[0]]
    if dtype == "float32":
        return (f"Your {names} gradient came back as float32, and the gradients differ from "
                f"the reference by up to {worst:.1g}: far more than float32's round-off (about "
                f"1e-7; a float32 backward passes within {FLOAT32_PASS_TOL:g}), so there is a "
                "mistake besides the precision. Compute in float64 and check again: naming "
                "it needs float64.")
    return (f"Your {names} gradient came back as {dtype}, which cannot hold a gradient to "
            "the precision of a check: compute and return float64 (naming a mistake needs "
            "float64).")


def _same_result(a: UserResult, b: UserResult) -> bool:
    """Two calls returned the same gradients, loss and h_last (to the last bit)."""
    if a.grads.keys() != b.grads.keys() or (a.loss is None) != (b.loss is None) \
            or (a.h_last is None) != (b.h_last is None):
        return False
    same = [np.array_equal(a.grads[k], b.grads[k], equal_nan=True) for k in a.grads]
    if a.loss is not None and b.loss is not None:  # (both or neither: checked above)
        same.append(a.loss == b.loss or (np.isnan(a.loss) and np.isnan(b.loss)))
    if a.h_last is not None and b.h_last is not None:
        same.append(np.array_equal(a.h_last, b.h_last, equal_nan=True))
    return all(same)


def _param_check(key: str, user: UserResult, ref: dict[str, np.ndarray], tol: float = PASS_TOL
                 ) -> ParamCheck:
    mine = user.grads.get(key)
    if mine is None:
        verb = "names" if len(user.unknown) == 1 else "name"
        others = f" (they have {', '.join(user.unknown)}, which {verb} no parameter)" \
            if user.unknown else ""
        return ParamCheck(key, None, False, "missing", f"Your grads have no {key!r}{others}: "
                          f"return ∂J/∂{MATH[key]} under that key.")
    if mine.shape != ref[key].shape:
        note = f"shape {mine.shape}, expected {ref[key].shape}"
        if _rel(mine.T, ref[key]) <= tol:  # the right numbers, in columns
            return ParamCheck(key, None, False, note, _transposed(key, ref[key].shape))
        return ParamCheck(key, None, False, note)
    if not np.isfinite(mine).all():
        return ParamCheck(key, None, False, "NaN or inf",
                          f"Your ∂J/∂{MATH[key]} contains NaN or inf.")
    comparison = compare_arrays(key, mine, ref[key])
    passed = comparison.passed(tol)
    if not passed and key == "h0" and _rel(mine.T, ref[key]) <= tol:
        # B = H: (H, B) columns have the shape of h0's (B, H) rows, which cannot tell them
        # apart (a transposed dW^hh, square too, is one of the hypotheses)
        return ParamCheck(key, comparison, False, "transposed", _transposed(key, mine.shape))
    return ParamCheck(key, comparison, passed)


def _transposed(key: str, shape: tuple[int, ...]) -> str:
    """The sentence for a gradient with the right values, transposed."""
    return (f"Your ∂J/∂{MATH[key]} has the right values, transposed: return it in the shape "
            f"of {'h0' if key == 'h0' else MATH[key]}, {shape}.")


def _loss_check(loss: float, ref_loss: float, problem: Problem, tol: float = LOSS_TOL
                ) -> LossCheck:
    """The learner's loss against the reference J, to tolerance tol (:func:`_loss_error`)."""
    off = _loss_error(loss, ref_loss)
    if off <= tol:
        return LossCheck(loss, ref_loss, True)
    ratio = loss / ref_loss if ref_loss else float("nan")
    if off < NEAR_TOL:
        return LossCheck(loss, ref_loss, False, (
            f"Your loss {loss:.10g} agrees with the reference J = {ref_loss:.10g} to {off:.0e} "
            f"but not to {tol:g}: that is round-off, not another loss — is it computed in "
            "float32? Check in float64."))
    known = _fraction(ratio, problem.T, problem.B)
    if known:
        return LossCheck(loss, ref_loss, False, (
            f"Your loss {loss:.10g} is {known[0]} of the reference J = {ref_loss:.10g}: it is "
            f"{known[1]}, while the reference J = Σ_t Σ_b −log p_t[label_t] is the total."))
    return LossCheck(loss, ref_loss, False, (
        f"Your loss {loss:.10g} differs from the reference J = {ref_loss:.10g}: the forward "
        "pass or the loss itself is different. The reference is J = Σ_t Σ_b −log "
        f"softmax(W^hy h_t + b_y)[label_t] with {FORWARD[problem.cell]}, "
        f"{STARTS[problem.cell]}; if the gradients are wrong too, fix the forward first."
        + VARIANTS.get(problem.cell, "")))


# the forward a learner's must match, in words
FORWARD = {
    "rnn": "z_t = W^xh x_t + W^hh h_{t−1} + b_h, h_t = tanh z_t",
    "lstm": "a_t = W^xh x_t + b^xh + W^hh h_{t−1} + b^hh split into the gates i, f, g, o "
            "(rows of H each), i_t, f_t, o_t = σ(·), g_t = tanh(·), c_t = f_t ⊙ c_{t−1} + "
            "i_t ⊙ g_t, h_t = o_t ⊙ tanh c_t",
    "gru": "a^ih_t = W^xh x_t + b^xh and a^hh_t = W^hh h_{t−1} + b^hh split into the gates r, "
           "z, n (rows of H each), r_t, z_t = σ(a^ih + a^hh), n_t = tanh(a^in_t + r_t ⊙ "
           "a^hn_t), h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}",
}
# the published forms a learner's forward may follow instead of PyTorch's (none of them the
# reference's forward with its parameters moved, so no hypothesis can name them)
VARIANTS = {
    "gru": " Two other GRU forms are common, and differ from PyTorch's here: b^hn outside the "
           "reset, n_t = tanh(a^in_t + r_t ⊙ (W^hn h_{t−1}) + b^hn), and the reset applied "
           "before the weights, n_t = tanh(a^in_t + W^hn (r_t ⊙ h_{t−1}) + b^hn) (Cho et al. "
           "2014; Keras's reset_after=False). bptt's, PyTorch's, is n_t = tanh(a^in_t + r_t ⊙ "
           "(W^hn h_{t−1} + b^hn)).",
}
STARTS = {"rnn": "h_0 = h0", "lstm": "h_0 = h0, c_0 = c0", "gru": "h_0 = h0"}


def _fits(h: Hypothesis, user: UserResult, keys: list[str]) -> bool:
    """Does the hypothesis reproduce every gradient the learner returned?

    (Hypotheses are tried only when the worst gradient misses the reference by NEAR_TOL or
    more, :func:`check_backward`'s round-off check: a hypothesis that reproduces it within
    MATCH_TOL, far below that, is not the reference.)"""
    return all((theirs := h.grads[key]) is None
               or _rel(user.grads.get(key), theirs) <= MATCH_TOL for key in keys)


def _explain_each(report: BackwardReport, candidates: list[Hypothesis], user: UserResult,
                  ref: dict[str, np.ndarray], failing: list[str]) -> None:
    """Per failing parameter: the first hypothesis that alters it and reproduces it, or a
    constant factor; one sentence per hypothesis, naming the parameters it explains."""
    T, B = report.problem.T, report.problem.B
    right = {c.name for c in report.params if c.passed}
    explained: dict[str, list[str]] = {}
    # the narrowest bug first: one that changes this gradient alone speaks of it alone, while
    # a wider one that happens to give the same numbers here speaks of gradients it does not fit
    # (truncated to K, ∂J/∂h0 = 0 is also what "only the last loss is sent back" gives)
    candidates = sorted(candidates, key=lambda h: len(_altered(h, ref)))
    for check in report.params:
        if check.passed:
            continue
        if check.explanation:  # missing or NaN: said when the row was made
            explained.setdefault(check.explanation, []).append(MATH[check.name])
            continue
        key = check.name
        mine = user.grads.get(key)
        for h in candidates:
            guess = h.grads[key]
            if guess is not None and _rel(guess, ref[key]) > MATCH_TOL \
                    and _rel(mine, guess) <= MATCH_TOL and not _alters(h, right, ref):
                check.explanation = h.message
                break
        else:
            if mine is not None and mine.shape == ref[key].shape and np.isfinite(mine).all():
                c = _factor(mine, ref[key])
                # (a c within round-off of 1 is no factor: it was "1 × the reference")
                if c != 0 and abs(c - 1) >= NEAR_TOL and _rel(mine, c * ref[key]) <= MATCH_TOL:
                    known = _fraction(c, T, B)
                    factor = known[0] if known else f"{c:.6g}"
                    check.explanation = (f"Your gradient is {factor} × the reference: a "
                                         "constant factor slipped in here.")
        if check.explanation:
            explained.setdefault(check.explanation, []).append(MATH[key])
    for message, names in explained.items():
        report.findings.append(f"{', '.join(names)}: {message}")


def _factor(mine: np.ndarray, ref: np.ndarray) -> float:
    """The c that brings c × ref closest to the learner's finite gradient (least squares),
    to be tested as a constant factor; 0 when there is none: ref is 0, or c × ref would
    pass float64's largest, or stay under TINY (compare_arrays holds any two tensors that
    small equal: a gradient of 1e-310s was "-8.17e-311 × the reference")."""
    r, m = ref.reshape(-1), mine.reshape(-1)
    top = float(np.max(np.abs(m), initial=0.0))
    if not r @ r > 0 or top == 0:
        return 0.0
    # mine scaled to at most 1 first: the dot product of a learner's 1e308s overflowed; the
    # rest in Python floats, which become inf past float64's largest without a warning
    c = float((m / top) @ r) / float(r @ r) * top
    largest = abs(c) * float(np.max(np.abs(r)))
    return c if TINY < largest < math.inf else 0.0


def _altered(h: Hypothesis, ref: dict[str, np.ndarray]) -> list[str]:
    """The gradients the bug ``h`` changes."""
    return [k for k, v in h.grads.items() if v is not None and _rel(v, ref[k]) > MATCH_TOL]


def _alters(h: Hypothesis, keys: set[str], ref: dict[str, np.ndarray]) -> bool:
    """Would the bug ``h`` change one of ``keys`` (gradients the learner got right)?  Then
    its sentence, about the whole bug, would be false for this learner."""
    return any(h.grads.get(k) is not None and _rel(h.grads[k], ref[k]) > MATCH_TOL
               for k in keys)


# one bias gradient wrong, both weights right: what that bias's gradient is
BIAS_ONLY = {
    "lstm": {key: f"Only d{MATH[key]} is wrong, and your weight gradients are right: b^xh and "
                  "b^hh both add to a_t, so each gradient is Σ_t Σ_b ∂J/∂a_t (summed over steps "
                  "and batch rows), the same for both — accumulate it into each."
             for key in ("bxh", "bhh")},
    "gru": {"bxh": "Only db^xh is wrong, and your weight gradients are right: it is Σ_t Σ_b "
                   "∂J/∂a^ih_t (summed over steps and batch rows).",
            "bhh": "Only db^hh is wrong, and your weight gradients are right: it is Σ_t Σ_b "
                   "∂J/∂a^hh_t (summed over steps and batch rows), whose n block is r_t ⊙ "
                   "∂J/∂a^n_t: b^hn sits inside r_t ⊙ (W^hn h_{t−1} + b^hn)."},
}


def _patterns(report: BackwardReport, failing: list[str]) -> list[str]:
    """Sentences from which parameters agree, when no single hypothesis fits."""
    recurrent = report.problem.recurrent
    bad = set(failing) - set(report.problem.state_keys)
    unexplained = {c.name for c in report.params if not c.passed and not c.explanation}
    if not unexplained:
        return []
    # what a sentence calls right must be right, not missing (a missing one is not in bad)
    right = {c.name for c in report.params if c.passed}
    out = []
    if bad and not bad & set(HEAD) and set(HEAD) <= right:
        out.append("Your head gradients (W^hy, b_y) are right, so your forward pass and "
                   "∂J_t/∂y_t = p_t − onehot(label_t) are right: the mistake is in the "
                   "backward through the recurrence (" + ", ".join(
                       MATH[k] for k in recurrent if k in bad)
                   + (" differs)." if len(bad) == 1 else " differ)."))
        if bad == {"Whh"} and {"Wxh", "bh"} <= right:
            out.append("Your W^xh and b_h gradients are right, so ∂J/∂z_t is right at every "
                       "step: only dW^hh is assembled wrongly. It is Σ_t ∂J/∂z_t h_{t−1}ᵀ.")
        elif bad == {"Wxh"} and {"Whh", "bh"} <= right:
            out.append("Your W^hh and b_h gradients are right, so ∂J/∂z_t is right: only "
                       "dW^xh is assembled wrongly. It is Σ_t ∂J/∂z_t x_tᵀ with x_t the "
                       "one-hot input of step t.")
        elif bad == {"bh"} and {"Wxh", "Whh"} <= right:
            out.append("Only db_h is wrong: it is Σ_t Σ_b ∂J/∂z_t (summed over steps and "
                       "batch rows).")
        elif len(bad) == 1 and bad <= {"bxh", "bhh"} and {"Wxh", "Whh"} <= right:
            out.append(BIAS_ONLY[report.problem.cell][next(iter(bad))])
    elif bad and bad <= set(HEAD) and set(recurrent) <= right:
        out.append("Only your head gradients are wrong (" + ", ".join(
                       MATH[k] for k in HEAD if k in bad) + "): ∂J_t/∂y_t = p_t − "
                   "onehot(label_t), ∂J/∂W^hy = Σ_t ∂J_t/∂y_t h_tᵀ, ∂J/∂b_y = Σ_t Σ_b "
                   "∂J_t/∂y_t (summed over steps and batch rows, one entry per output).")
    elif bad & set(HEAD):
        out.append("Your head gradients are wrong too, so start there: ∂J_t/∂y_t = p_t − "
                   "onehot(label_t), ∂J/∂W^hy = Σ_t ∂J_t/∂y_t h_tᵀ, ∂J/∂b_y = Σ_t ∂J_t/∂y_t.")
    if "h0" in unexplained:
        z1 = TEXT[report.problem.cell]["z1"]
        out.append(f"Your ∂J/∂h0 differs from the reference: the initial state feeds {z1}, so "
                   f"{H0_MISSING[report.problem.cell]}.")
    if "c0" in unexplained:
        out.append("Your ∂J/∂c0 differs from the reference: c_1 = f_1 ⊙ c0 + i_1 ⊙ g_1, so "
                   "∂J/∂c0 = ∂J/∂c_1 ⊙ f_1.")
    return out


# ----------------------------------------------------------------------------
# the LSTM: localised by gate (the row blocks i, f, g, o)
# ----------------------------------------------------------------------------


def gate_blocks(user: UserResult, ref: dict[str, np.ndarray], keys: tuple[str, ...],
                gates: tuple[str, ...] = GATES, tol: float = PASS_TOL
                ) -> dict[str, dict[str, bool]]:
    """Per recurrent parameter the learner returned in its shape: gate -> does that gate's
    block of H rows agree with the reference's (relative to the whole tensor's scale)?"""
    out: dict[str, dict[str, bool]] = {}
    for key in keys:
        mine = user.grads.get(key)
        if mine is None or mine.shape != ref[key].shape or not np.isfinite(mine).all():
            continue
        H = ref[key].shape[0] // len(gates)
        scale = max(float(np.max(np.abs(mine) + np.abs(ref[key]))), TINY)
        out[key] = {gate: float(np.max(np.abs(mine[q * H:(q + 1) * H]
                                              - ref[key][q * H:(q + 1) * H]))) / scale <= tol
                    for q, gate in enumerate(gates)}
    return out


def _gate_list(gates: list[str]) -> str:
    return ", ".join(gates[:-1]) + " and " + gates[-1] if len(gates) > 1 else gates[0]


def _gates_message(blocks: dict[str, dict[str, bool]], gates: tuple[str, ...] = GATES) -> str:
    """The sentence saying which gates' rows of which parameters are wrong."""
    parts = []
    for key, right in blocks.items():
        wrong = [g for g in gates if not right[g]]
        good = [g for g in gates if right[g]]
        if not wrong:
            parts.append(f"{MATH[key]}: every gate right")
        elif not good:
            parts.append(f"{MATH[key]}: every gate wrong")
        else:
            parts.append(f"{MATH[key]}: {_gate_list(wrong)} wrong, {_gate_list(good)} right")
    text = (f"By gate (the blocks of H rows {', '.join(gates)}, in PyTorch's order) — "
            + "; ".join(parts) + ".")
    wrong_gates = {g for right in blocks.values() for g in gates if not right[g]}
    if len(wrong_gates) == 1:
        gate = wrong_gates.pop()
        text += (f" Exactly one gate's rows fail, gate {gate}'s: the signature of a gate "
                 f"mix-up — in {gate}'s part of your backward a line copied from another gate "
                 "(its bias, its weights, its activation or derivative) and not fully changed.")
    return text


def _first_step_gates(fn: Callable[..., Any], problem: Problem, correct: Expansion, name: str,
                      tol: float) -> str | None:
    """Which gates are wrong on the first step alone (T = 1: nothing carried back through time,
    so a mistake in one gate's part of a step shows in that gate's rows only); None when the
    call fails or says nothing more."""
    try:
        result = call_backward(fn, problem.prefix(1), name)
    except BpttError:
        return None
    expected = {key: correct.rec[key][0, 0] for key in problem.recurrent}
    blocks = gate_blocks(result, expected, problem.recurrent, problem.gates, tol)
    wrong = [g for g in problem.gates if any(not right[g] for right in blocks.values())]
    returned = [key for key in problem.recurrent if key in result.grads]
    # a gradient it cannot judge by gate (mis-shaped, NaN) may hold the mistake: say nothing
    if not blocks or len(blocks) < len(returned) or len(wrong) == len(problem.gates):
        return None
    if not wrong:
        errors = "errors ∂J/∂h and ∂J/∂c are" if problem.cell == "lstm" else "error ∂J/∂h is"
        return ("On the first step alone (T = 1, nothing carried back through time) every "
                "gate's rows are right: a single step is right, so the mistake is in how the "
                f"{errors} carried back from step t to step t − 1.")
    factors = {"lstm": "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t or h_t = o_t ⊙ tanh c_t",
               "gru": "n_t = tanh(a^in_t + r_t ⊙ a^hn_t) or h_t = (1 − z_t) ⊙ n_t + z_t ⊙ "
                      "h_{t−1}"}[problem.cell]
    return (f"On the first step alone (T = 1, nothing carried back through time) only gate "
            f"{_gate_list(wrong)}'s rows are wrong: the mistake lives in "
            f"{'that gate’s' if len(wrong) == 1 else 'those gates’'} part of a single step (its "
            f"activation's derivative, its bias or weights, its factor in {factors}); later "
            "steps spoil the other gates through the error carried back.")
