"""Estimators in scikit-learn's conventions: classify or regress your own sequences in five lines.

Legend: N sequences, T padded length, T_i the length of sequence i, D features per step,
C classes, V regression outputs, H hidden size, L layers.

    clf = bptt.SequenceClassifier(cell="lstm", hidden_size=32, epochs=30, random_state=0)
    clf.fit(X, y)                        # X: a list of (T_i, D) arrays; y: (N,) labels
    clf.predict(X_new), clf.predict_proba(X_new), clf.score(X_test, y_test)   # accuracy
    clf.save("clf.safetensors");  clf = bptt.SequenceClassifier.load("clf.safetensors")

``bptt.SequenceRegressor`` is the same with y (N,) or (N, V) numbers and ``score`` = R².
No dependency on scikit-learn: the estimators follow its conventions (constructor
arguments stored as given and validated in ``fit``; ``get_params``/``set_params``; fitted
attributes end in ``_``; ``fit`` returns self; ``__sklearn_tags__``), so its tools accept them
(``clone``, ``GridSearchCV``, ``cross_val_score`` were run with scikit-learn 1.9; give them X
as a list of sequences: a padded array's ``lengths=`` cannot pass through their splits).

Inputs.  X is either a list of N arrays (T_i, D) (a 1-D array (T_i,) is one feature per
step), or a padded array (N, T, D) — batch first, as scikit-learn users hold samples — with
``lengths=`` (N,) giving each sequence's real steps (None: every sequence has T steps).
Values on padded steps are ignored.  NaN or inf on a real step is an error.

The network and its loss (bptt.heads; the gradients are the hand-derived BPTT of
models.backprop_layers, checked three ways in tests/test_heads.py):

    h^l_t = cell(h^l_{t−1}, h^{l−1}_t),   y_t = W^hy h^L_t + b_y
    classifier:  J = Σ_i −log softmax(y_{T_i−1,i})[c_i]          (head "softmax_last")
    regressor:   J = Σ_i ½ ‖y_{T_i−1,i} − r_i‖²                   (head "mse_last")

With ``per_step=True`` (many-to-many) every real step has a target and J sums over them
("softmax_each", "mse_each"): y is then a list of (T_i,) labels / (T_i,) or (T_i, V) values
(or a padded (N, T[, V]) array, read with the lengths of X), and predictions come back as a
list of per-sequence arrays.

Training: minibatches of ``batch_size`` sequences in a new random order each epoch, each
padded to its own longest sequence; the gradient of the batch's TOTAL J, its global norm
clipped to ``clip_norm``, one step of ``optimizer``.  ``loss_curve_`` holds, per epoch (per
call of ``partial_fit``), the mean loss per prediction: cross-entropy in nats for the
classifier, the mean squared error per output value (2J / (predictions · V)) for the
regressor.

Saving: one safetensors file, the weights plus JSON metadata (the constructor arguments,
classes, sizes); nothing is pickled.  The file is also a bptt model file
(:func:`bptt.checkpoint.load_model` reads its weights).  The optimizer state is not saved:
a loaded estimator predicts, scores and can be fitted again.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from bptt import checkpoint, flat, heads, models, ops, optim
from bptt.cells import CELLS
from bptt.errors import (
    BpttError,
    CheckpointError,
    DivergedError,
    as_array,
    check_bool,
    check_int,
    check_positive,
    is_finite_as,
    is_finite_number,
    is_int,
)

PREDICT_CHUNK = 1024  # sequences per forward pass when predicting
# a regression target this far from unit size is named as a likely cause of a divergence
LARGE_TARGET = 1e3

# the estimator a method is called on: fit, set_params and load give back a
# SequenceClassifier or a SequenceRegressor, not the shared base class
_Estimator = TypeVar("_Estimator", bound="_SequenceEstimator")


def _float_dtype(dtype: Any) -> type:
    """The dtype setting as numpy's type, spelled any way numpy spells float32 or float64
    ('float32', np.float32, np.dtype('float32') …; not None, which np.dtype reads as
    float64); BpttError for anything else."""
    if dtype is not None:
        try:
            return models.check_float_dtype(dtype)
        except (BpttError, ValueError):
            pass
    raise BpttError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


class NotFittedError(BpttError, AttributeError):
    """The estimator is used before ``fit`` (a ValueError, and an AttributeError as sklearn's)."""


# ----------------------------------------------------------------------------
# inputs and targets
# ----------------------------------------------------------------------------


class Steps(NamedTuple):
    """Sequences of D features each, stored without their padding: the real steps of every
    sequence one after the other, ``rows`` (Σ T_i, D) of one dtype, sequence i in rows
    start[i] … start[i] + n[i] − 1.  T: the padded length (the longest sequence, or the T
    of a padded X).

    Padding every sequence to the longest held N × T_max × D numbers: 20,000 sequences of
    at most 100 steps and one of 2,000 (D = 3, float64) padded to 0.96 GB, their steps being
    25 MB.  Minibatches are padded one at a time, to their own longest (:meth:`batch`).
    """

    rows: np.ndarray
    n: np.ndarray
    start: np.ndarray
    T: int

    def batch(self, which: np.ndarray, T: int) -> np.ndarray:
        """The sequences ``which`` as time-major inputs (T, B, D), zeros after each one's end
        (T >= the longest of them): the padded array's ``x[which, :T]``, transposed."""
        out = np.zeros((T, len(which), self.rows.shape[1]), dtype=self.rows.dtype)
        self._pad_into(which, out.transpose(1, 0, 2))
        return out

    def padded(self) -> np.ndarray:
        """All of them as one padded array (N, T, D), zeros on padding."""
        x = np.zeros((len(self.n), self.T, self.rows.shape[1]), dtype=self.rows.dtype)
        self._pad_into(range(len(self.n)), x)
        return x

    def _pad_into(self, which: Iterable[int], out: np.ndarray) -> None:
        """Sequence which[b]'s steps into out[b, :T_i] (out: (B, ≥ T_i, D), zeros already)."""
        for b, i in enumerate(which):
            out[b, : self.n[i]] = self.rows[self.start[i] : self.start[i] + self.n[i]]


def as_padded(
    X: Any, lengths: Any = None, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """X as a padded array (N, T, D) of ``dtype`` (zeros on padding) and lengths (N,).

    X: a list/tuple of (T_i, D) or (T_i,) arrays (then ``lengths`` must be None), or an
    array (N, T, D) with ``lengths`` (N,) or None (all T).  Raises BpttError on a ragged
    array, mismatched features, empty input, NaN/inf on a real step, or bad lengths.
    """
    steps = as_steps(X, lengths, dtype)
    return steps.padded(), steps.n


def as_steps(X: Any, lengths: Any = None, dtype: Any = np.float64) -> Steps:
    """X (as for :func:`as_padded`, checked alike) as :class:`Steps` of ``dtype``."""
    if isinstance(X, np.ndarray):
        if X.dtype == object:
            raise BpttError(
                "X is a ragged array (dtype object): pass a list of (T_i, D) arrays, or a "
                "padded (N, T, D) array with lengths="
            )
        if X.ndim != 3:
            raise BpttError(
                f"X has shape {X.shape}: a padded X must be (N, T, D); for sequences of one "
                "feature use (N, T, 1), or pass a list of (T_i, D) arrays"
            )
        if X.dtype.kind not in "biuf":
            raise BpttError(f"X must hold numbers, got dtype {X.dtype}")
        N, T, D = X.shape
        if N < 1 or T < 1:
            raise BpttError(f"X has shape {X.shape}: need at least one sequence and one step")
        _check_features(D)
        n = heads.check_lengths(lengths, T, N)
        n = np.full(N, T, dtype=np.int64) if n is None else n
        x = _cast(X, dtype)
        real = np.arange(T)[None, :] < n[:, None]  # (N, T)
        rows = x[real]  # (a C-ordered mask: sequence by sequence, each step by step)
        if not np.isfinite(rows).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=2) & real)[0] // T)
            raise BpttError(_not_finite("X", X[bad][real[bad]], x.dtype, f"sequence {bad}, "
                                        "on a real step"))
        return _steps(rows, n, T)
    if not isinstance(X, (list, tuple)):
        raise BpttError(
            f"X must be a list of (T_i, D) arrays or a padded (N, T, D) array, got "
            f"{type(X).__name__}"
        )
    if lengths is not None:
        raise BpttError("lengths= goes with a padded (N, T, D) array; a list of sequences "
                        "gives each length itself")
    if len(X) == 0:
        raise BpttError("X is empty: need at least one sequence")
    arrays = []
    for i, seq in enumerate(X):
        try:
            a = np.asarray(seq)
        except ValueError:
            raise BpttError(f"X[{i}] is ragged: each sequence must be a (T_i, D) array") from None
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise BpttError(f"X[{i}] must be a numeric (T_i, D) array, got dtype {a.dtype}")
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] < 1:
            raise BpttError(f"X[{i}] has shape {a.shape}: expected (T_i, D) with T_i >= 1")
        if not np.isfinite(_cast(a, dtype)).all():
            raise BpttError(_not_finite("X", a, np.dtype(dtype), f"sequence {i}"))
        arrays.append(a)
    D = arrays[0].shape[1]
    for i, a in enumerate(arrays):
        if a.shape[1] != D:
            raise BpttError(f"X[{i}] has {a.shape[1]} features per step but X[0] has {D}")
    _check_features(D)
    n = np.array([len(a) for a in arrays], dtype=np.int64)
    steps = _steps(np.empty((int(n.sum()), D), dtype=dtype), n, int(n.max()))
    for i, a in enumerate(arrays):
        steps.rows[steps.start[i] : steps.start[i] + n[i]] = a
    return steps


def _steps(rows: np.ndarray, n: np.ndarray, T: int) -> Steps:
    """:class:`Steps` of ``rows``, sequences of lengths ``n`` one after the other."""
    start = np.zeros(len(n), dtype=np.int64)
    np.cumsum(n[:-1], out=start[1:])
    return Steps(rows, n, start, T)


def _check_features(D: int) -> None:
    """Refuse steps of no features (there is nothing to read; checked before fit sets the
    fitted model aside, as the network's input_size would be refused after)."""
    if D < 1:
        raise BpttError("X has 0 features per step: each step needs at least one")


def _cast(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` as a new array of ``dtype``; a number beyond its range becomes ±inf
    (numpy's answer, without its RuntimeWarning: the caller refuses it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values).astype(dtype)


def _not_finite(name: str, given: np.ndarray, dtype: np.dtype, where: str = "") -> str:
    """The message for ``given`` (the caller's values) that are not finite as ``dtype``:
    NaN or inf in them, or finite numbers too large for ``dtype``."""
    place = f" ({where})" if where else ""
    if np.isfinite(given).all():
        return (f"{name} holds numbers too large for {np.dtype(dtype).name}{place}: scale them, "
                "or use dtype='float64'")
    return f"{name} contains NaN or inf{place}"


LABEL_KINDS = "labels must be numbers, booleans or strings"


def _mixed_labels(name: str) -> BpttError:
    """The error for labels that mix strings with others (numpy would make them all strings,
    the number 1 a class '1' of its own)."""
    return BpttError(f"{name} mixes strings with other labels: give every label as a "
                     "string, or every label as a number")


def _check_label_kinds(given: Any, labels: np.ndarray, name: str = "y") -> None:
    """Class labels are numbers, booleans or strings, and one kind of them.

    given: the labels as the caller gave them, one after another (None: not checked for
    mixing), labels: them as an array, name: the argument they came in.  numpy turns
    [1, "a"] into the strings '1', 'a'.
    """
    if labels.dtype.kind not in "biufU":
        raise BpttError(f"{name} holds labels of dtype {labels.dtype}: {LABEL_KINDS}")
    if labels.dtype.kind == "U" and isinstance(given, (list, tuple)) \
            and not all(isinstance(label, str) for label in given):
        raise _mixed_labels(name)


def _read_object_labels(labels: np.ndarray, real: Any, name: str = "y") -> np.ndarray:
    """An object array of labels (what pandas gives for a column of text) as strings when
    every label is one, as numbers when none is; any other array as it is.

    real: the entries that are labels (per-step targets: not the padding, which comes back
    unspecified).  Strings mixed with other labels, or labels that are neither numbers nor
    strings (None, a date), are a BpttError naming their types.
    """
    if labels.dtype != object:
        return labels
    given = labels[real]
    items = given.ravel().tolist()
    strings = [isinstance(label, str) for label in items]
    if any(strings) and not all(strings):
        raise _mixed_labels(name)
    values = np.array(items, dtype=str if any(strings) else None)
    if values.dtype.kind not in "biufU":
        kinds = ", ".join(sorted({type(label).__name__ for label in items}))
        raise BpttError(f"{name} holds labels of type {kinds}: {LABEL_KINDS}")
    out = np.empty(labels.shape, dtype=values.dtype)
    out[real] = values.reshape(given.shape)
    return out


def _check_not_continuous(values: np.ndarray, name: str = "y") -> None:
    """Class labels that are floats must be whole numbers (1.0, 2.0): a fraction means a
    real-valued target, which a classifier would split into one class per distinct value
    (scikit-learn's "Unknown label type: continuous")."""
    if values.dtype.kind == "f" and values.size:
        fractions = values[values != np.floor(values)]
        if fractions.size:
            raise BpttError(
                f"{name} holds numbers that are not whole ({fractions[0].item()!r}), a "
                "continuous target: a classifier takes class labels (SequenceRegressor "
                "fits real values)"
            )


def _check_classes(classes: Any) -> np.ndarray:
    """partial_fit's ``classes`` as its distinct labels, sorted, checked as fit checks y's
    (np.unique alone took NaN as a class, made [0, "1"] strings, and raised its TypeError
    on None)."""
    labels = as_array("classes", classes)
    if labels.ndim != 1:
        raise BpttError(f"classes has shape {labels.shape}: one label per class, (C,)")
    labels = _read_object_labels(labels, slice(None), "classes")
    _check_label_kinds(classes, labels, "classes")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise BpttError("classes contains NaN or inf")
    _check_not_continuous(labels, "classes")
    return np.unique(labels)


def _per_step_targets(y: Any, lengths: np.ndarray, T: int, numeric: bool) -> np.ndarray:
    """Per-step targets: a list of (T_i[, V]) arrays or a padded (N, T[, V]) array -> padded
    (N, T[, V]) (zeros on padding; labels stay as given, any dtype)."""
    N = len(lengths)
    if isinstance(y, np.ndarray):
        if y.shape[:2] != (N, T) or y.ndim not in (2, 3):
            raise BpttError(
                f"y has shape {y.shape}: per-step targets padded like X must be (N, T) "
                f"= {(N, T)}" + (" or (N, T, V)" if numeric else "")
            )
        arrays = [y[i, : lengths[i]] for i in range(N)]
    elif isinstance(y, (list, tuple)):
        if len(y) != N:
            raise BpttError(f"y has {len(y)} sequences but X has {N}")
        arrays = [as_array(f"y[{i}]", a) for i, a in enumerate(y)]
        for i, a in enumerate(arrays):
            if a.ndim < 1 or a.shape[0] != lengths[i]:
                raise BpttError(
                    f"y[{i}] has {a.shape[0] if a.ndim else 0} steps but X[{i}] has {lengths[i]}"
                )
    else:
        raise BpttError("per-step y must be a list of per-sequence arrays or a padded array")
    tail = arrays[0].shape[1:]
    if len(tail) > (1 if numeric else 0) or any(a.shape[1:] != tail for a in arrays):
        raise BpttError("per-step y: every step must hold " +
                        ("the same number of values" if numeric else "one label"))
    out = np.zeros((N, T, *tail), dtype=np.result_type(*[a.dtype for a in arrays]))
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


# ----------------------------------------------------------------------------
# the shared estimator
# ----------------------------------------------------------------------------


class _Flat(NamedTuple):
    """An estimator's training buffers (see :meth:`_SequenceEstimator._flat_buffers`)."""

    workspace: models.Workspace  # params_ as views of its flat buffer; gradients; memory
    params: dict[str, np.ndarray]  # {"flat": the parameters' buffer}
    grads: dict[str, np.ndarray]  # {"flat": the gradients' buffer}
    state: dict[str, Any]  # the optimizer's state, one buffer per slot (optim.pack_state)
    norm_scratch: np.ndarray  # float64, one per gradient element: optim.global_norm's squares


class _SequenceEstimator:
    """What the classifier and the regressor share: parameters, training, saving."""

    _heads: ClassVar[tuple[str, str]] = ("", "")  # (per sequence, per step)
    _estimator_type: ClassVar[str] = ""

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        optimizer: str = "adam",
        lr: float = 1e-2,
        epochs: int = 20,
        batch_size: int = 32,
        clip_norm: float | None = 5.0,
        truncate: int | None = None,
        per_step: bool = False,
        forget_bias: float | None = None,
        dtype: Any = "float32",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.clip_norm = clip_norm
        self.truncate = truncate
        self.per_step = per_step
        self.forget_bias = forget_bias
        self.dtype = dtype
        self.random_state = random_state

    # -- scikit-learn's parameter protocol ------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments as a dict (deep is accepted for sklearn; no sub-estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: _Estimator, **params: Any) -> _Estimator:
        """Set constructor arguments (checked at the next fit); an unknown name raises.

        Returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise BpttError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: "
                    f"{', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in
                    inspect.signature(type(self).__init__).parameters.items() if name != "self"}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not (isinstance(v, type(defaults[k])) and v == defaults[k])
                   and not (v is None and defaults[k] is None)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn ≥ 1.6 asks its estimators for tags (only scikit-learn calls this, so
        the import never runs without it): a classifier or regressor, fitted on 3-D X.
        Not non_deterministic, which scikit-learn defines as "not deterministic given a fixed
        random_state": with one, a fit is bit-identical (without one, each fit draws other
        initial weights, as any estimator with a random_state does)."""
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags

        classifier = self._estimator_type == "classifier"
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=True, multi_output=not classifier),
            classifier_tags=ClassifierTags(multi_class=True) if classifier else None,
            regressor_tags=None if classifier else RegressorTags(),
            input_tags=InputTags(two_d_array=False, three_d_array=True),
            non_deterministic=False,
        )

    def _validate_params(self) -> None:
        """Raise BpttError naming the first bad constructor argument."""
        if self.cell not in CELLS:
            raise BpttError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("hidden_size", "num_layers", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        if self.optimizer not in optim.OPTIMIZERS:
            raise BpttError(
                f"optimizer must be one of {', '.join(optim.OPTIMIZERS)}, got {self.optimizer!r}"
            )
        for name in ("lr", "clip_norm"):
            if name == "lr" or self.clip_norm is not None:
                check_positive(name, getattr(self, name))
        models.check_truncate(self.truncate)
        check_bool("per_step", self.per_step)
        if self.forget_bias is not None:
            if self.cell != "lstm":
                raise BpttError(f"forget_bias applies to the lstm cell only, not {self.cell!r}")
            if not is_finite_number(self.forget_bias):
                raise BpttError(f"forget_bias must be a finite number, got {self.forget_bias!r}")
        dtype = _float_dtype(self.dtype)
        if self.forget_bias is not None and not is_finite_as(self.forget_bias, dtype):
            # (here, not in init_params: fit has not yet put the fitted model aside)
            raise BpttError(f"forget_bias must be a finite number ({np.dtype(dtype).name}), "
                            f"got {self.forget_bias!r}")
        rs = self.random_state
        if not (rs is None or isinstance(rs, np.random.Generator)
                or (is_int(rs) and rs >= 0)):
            raise BpttError(
                f"random_state must be None, an integer >= 0 or a numpy Generator, got {rs!r}"
            )

    def _dtype(self) -> type:
        """The dtype setting as numpy's type (it may be spelled 'float32' or np.float32)."""
        return _float_dtype(self.dtype)

    def _data_dtype(self, fitting: bool) -> Any:
        """The dtype data is cast to: the dtype setting when fitting, else the weights'."""
        return self._dtype() if fitting else self.params_["Whh"].dtype

    # -- what the subclasses define -------------------------------------------

    def _encode_targets(self, y: Any, lengths: np.ndarray, T: int, fitting: bool) -> np.ndarray:
        """y as the head's targets, batch first: (N,) / (N, V) or (N, T) / (N, T, V)."""
        raise NotImplementedError

    def _num_outputs(self) -> int:
        raise NotImplementedError

    def _mean_loss(self, J: float, count: int) -> float:
        raise NotImplementedError

    # -- fitting ----------------------------------------------------------------

    @property
    def _head(self) -> str:
        return self._heads[1] if self.per_step else self._heads[0]

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X, y) first"
            )

    def _prepare(
        self, X: Any, y: Any, lengths: Any, fitting: bool
    ) -> tuple[Steps, np.ndarray, np.ndarray]:
        """(x: Steps of D features, lengths (N,), targets) checked against each other."""
        dtype = self._data_dtype(fitting)
        x = as_steps(X, lengths, dtype)
        n = x.n
        D = x.rows.shape[1]
        if hasattr(self, "n_features_in_") and not fitting and D != self.n_features_in_:
            raise BpttError(
                f"X has {D} features per step but the model was fitted with "
                f"{self.n_features_in_}"
            )
        if not self.per_step:
            # (a 0-d array has __len__, but len() of it raises TypeError)
            size = len(y) if hasattr(y, "__len__") and getattr(y, "ndim", 1) > 0 else None
            if size != len(n):
                raise BpttError(
                    f"y has {size if size is not None else 'no'} entries but X has {len(n)} "
                    "sequences: one target per sequence"
                )
        targets = self._encode_targets(y, n, x.T, fitting)
        return x, n, targets

    def _initialise(self, D: int) -> None:
        self._validate_params()
        self._rng = np.random.default_rng(self.random_state)
        self.n_features_in_ = int(D)
        self.params_ = models.init_params(
            self.cell, int(D), int(self.hidden_size), self._num_outputs(), True, self._rng,
            self._dtype(), int(self.num_layers), self.forget_bias,
        )
        self._optimizer = optim.make_optimizer(self.optimizer, float(self.lr))
        self._opt_state = self._optimizer.init_state(self.params_)
        self.loss_curve_: list[float] = []
        self.n_iter_ = 0
        self.n_steps_ = 0

    def fit(
        self: _Estimator,
        X: Any,
        y: Any,
        lengths: Any = None,
        callback: Callable[[int, float], bool | None] | None = None,
    ) -> _Estimator:
        """Fit from scratch: ``epochs`` passes over (X, y).  Returns self.

        X: list of (T_i, D) arrays, or padded (N, T, D) with ``lengths`` (N,).  y: see the
        class.  callback(epoch, mean_loss) is called after every epoch; returning True stops.
        """
        self._validate_params()
        if callback is not None and not callable(callback):  # (it is first called after an epoch)
            raise BpttError(f"callback must be a function of (epoch, mean_loss) or None, got "
                            f"{callback!r}")
        # a fit starts afresh (new classes too); one refused by its X or y keeps the old model
        fitted: dict[str, Any] = {a: self.__dict__.pop(a) for a in ("params_", "classes_")
                                  if a in self.__dict__}
        try:
            x, n, targets = self._prepare(X, y, lengths, fitting=True)
        except BpttError:
            self.__dict__.update(fitted)
            raise
        self._initialise(x.rows.shape[1])
        try:
            for epoch in range(1, int(self.epochs) + 1):
                self._epoch(x, n, targets)
                if callback is not None and callback(epoch, self.loss_curve_[-1]):
                    break
        finally:
            self._release_memory()
        return self

    def _release_memory(self) -> None:
        """Let go of the sweeps' memory kept between the steps of a fit (for a long T, many
        times the weights): the fitted model does not carry it.  (partial_fit keeps it: in a
        stream each call is a step or a few.)"""
        packed = getattr(self, "_flat", None)
        if packed is not None:
            packed.workspace.release()

    def _partial_fit(self: _Estimator, X: Any, y: Any, lengths: Any) -> _Estimator:
        first = not hasattr(self, "params_")
        # at every call, not only the first: batch_size, truncate, clip_norm and per_step are
        # read by every step, and set_params may have changed them since
        self._validate_params()
        if not first:
            self._follow_settings()
        x, n, targets = self._prepare(X, y, lengths, fitting=first)
        if first:
            self._initialise(x.rows.shape[1])
        self._epoch(x, n, targets)
        return self

    def _follow_settings(self) -> None:
        """What set_params may have changed since the fit began, for partial_fit, which goes
        on with the fitted network and its optimizer: the learning rate is taken (the
        optimizer's state does not depend on it, as torch's param_groups' "lr"); another
        optimizer, cell, size or dtype is refused (the weights and state kept are not of
        it): fit starts afresh with those."""
        shapes = models.check_params(self.params_)
        fitted = {"optimizer": self._optimizer.name, "cell": shapes.cell, "hidden_size": shapes.H,
                  "num_layers": shapes.L, "dtype": self.params_["Whh"].dtype.name}
        for name, value in fitted.items():
            given = np.dtype(self._dtype()).name if name == "dtype" else getattr(self, name)
            if given != value:
                raise BpttError(
                    f"{name}={given!r} but the fitted network's is {value!r}, and partial_fit "
                    f"goes on with it: call fit to start afresh with {name}={given!r}, or set "
                    f"{name} back"
                )
        self._optimizer.lr = float(self.lr)

    def _epoch(self, x: Steps, n: np.ndarray, targets: np.ndarray) -> None:
        """One pass over the data in a random order, one optimizer step per minibatch."""
        order = self._rng.permutation(len(n))
        total, count = 0.0, 0
        for start in range(0, len(n), int(self.batch_size)):
            rows = order[start : start + int(self.batch_size)]
            J, predictions = self._step(x, n, targets, rows)
            total += J
            count += predictions
        self.loss_curve_.append(self._mean_loss(total, count))
        self.n_iter_ += 1

    def _step(
        self, x: Steps, n: np.ndarray, targets: np.ndarray, rows: np.ndarray
    ) -> tuple[float, int]:
        """One optimizer step on the sequences ``rows``; returns (J, number of predictions)."""
        inputs, lengths, y = _batch(x, n, targets, rows, self.per_step)
        # the fast path: params_, the gradients and the optimizer's state in one flat buffer
        # each (bptt.flat), the memory of the sweeps kept from one step to the next
        packed = self._flat_buffers()
        # a diverging fit's inf and NaN are caught just below, as one DivergedError
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = heads.backprop(self.params_, inputs, y, self._head, lengths,
                                    truncate=self.truncate, workspace=packed.workspace)
        # (per key, in sorted order: the bits of the norm do not depend on the layout)
        norm = optim.global_norm(result.grads, packed.norm_scratch)
        if not (math.isfinite(result.loss) and math.isfinite(norm)):
            raise DivergedError(self.n_steps_ + 1, self._divergence_cause(y))
        # the update on the flat buffers: a few vector operations instead of a loop over the
        # keys, the same arithmetic element by element
        if self.clip_norm is not None:
            optim.clip_by_global_norm(packed.grads, float(self.clip_norm), norm=norm)
        self._optimizer.update(packed.params, packed.grads, packed.state)
        if not np.isfinite(packed.params[flat.FLAT_KEY]).all():  # an update that overflowed
            raise DivergedError(self.n_steps_ + 1, self._divergence_cause(y))
        self.n_steps_ += 1
        predictions = int(n[rows].sum()) if self.per_step else len(rows)
        return result.loss, predictions

    def _divergence_cause(self, y: np.ndarray) -> str:
        """What may have made a step on the targets ``y`` diverge, besides its size."""
        return ""

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the training buffers: they only hold what params_ and the
        optimizer's state hold, and are made again on the next step."""
        state = self.__dict__.copy()
        state.pop("_flat", None)
        return state

    def _flat_buffers(self) -> _Flat:
        """params_, its gradients and the optimizer's state, each laid out in one flat buffer
        (params_ and the state's slots then hold views of them), in a
        :class:`~bptt.models.Workspace`, which also keeps the sweeps' memory between steps.
        Made again whenever params_ is no longer the dict of views it was packed into (a new
        fit, a load, a restored state, a copy: copied views are views no more)."""
        packed = getattr(self, "_flat", None)
        if packed is None or not packed.workspace.owns(self.params_):
            workspace = models.Workspace(self.params_)
            packed = self._flat = _Flat(
                workspace, {flat.FLAT_KEY: workspace.params_flat},
                {flat.FLAT_KEY: workspace.grads_flat},
                optim.pack_state(self._opt_state, workspace.layout),
                np.empty(workspace.grads_flat.size, np.float64),
            )
        return packed

    # -- predicting -------------------------------------------------------------

    def _outputs(self, X: Any, lengths: Any) -> np.ndarray:
        """The head's outputs of a model of whole sequences, (N, V)."""
        chunks, _ = self._output_chunks(X, lengths)
        return np.concatenate([out for _, out in chunks])

    def _step_outputs(self, X: Any, lengths: Any) -> list[np.ndarray]:
        """The head's outputs of a per_step model, a list of (T_i, V)."""
        chunks, n = self._output_chunks(X, lengths)
        return [out[: n[i], j] for rows, out in chunks for j, i in enumerate(rows)]

    def _output_chunks(self, X: Any, lengths: Any
                       ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """The head's outputs, PREDICT_CHUNK sequences at a time: (rows, outputs) pairs, the
        outputs (B, V) per sequence or (T, B, V) per step; and lengths (N,)."""
        self._check_fitted()
        # (score passes the Steps its _prepare made, of the weights' dtype, checked)
        x = X if isinstance(X, Steps) else as_steps(X, lengths, self.params_["Whh"].dtype)
        n = x.n
        if x.rows.shape[1] != self.n_features_in_:
            raise BpttError(
                f"X has {x.rows.shape[1]} features per step but the model was fitted with "
                f"{self.n_features_in_}"
            )
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(n), PREDICT_CHUNK):
            rows = np.arange(start, min(start + PREDICT_CHUNK, len(n)))
            inputs = x.batch(rows, int(n[rows].max()))
            chunks.append((rows, heads.forward(self.params_, inputs, self._head, n[rows]).outputs))
        return chunks, n

    # -- saving -------------------------------------------------------------------

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        pass

    # -- going on with a fit where it stopped (bptt train --task --resume) -----

    def _train_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What a fit needs to go on exactly where it is, beyond :meth:`save`: the weights
        and the optimizer's state as tensors ("param.*", "opt.*"), the random generator and
        the counters as JSON-able metadata."""
        self._check_fitted()
        tensors = optim.checkpoint_tensors(self.params_, self._opt_state)
        meta = {
            "rng": self._rng.bit_generator.state,
            "n_features_in": self.n_features_in_,
            "n_iter": self.n_iter_,
            "n_steps": self.n_steps_,
            "loss_curve": [float(v) for v in self.loss_curve_],
            **self._extra_meta(),
        }
        return tensors, meta

    def _restore_train_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Put back what :meth:`_train_state` took, into an estimator made with the same
        constructor arguments: the next ``partial_fit`` then does what the saved one's would
        have, to the last bit.  A state that does not fit raises CheckpointError."""
        self._validate_params()
        optimizer = optim.make_optimizer(self.optimizer, float(self.lr))
        try:
            params, opt_state, shapes = optim.from_checkpoint_tensors(tensors, optimizer,
                                                                       self.cell)
        except BpttError as exc:
            if isinstance(exc, CheckpointError):  # (the optimizer's state: it says what is wrong)
                raise
            raise CheckpointError(f"the saved weights do not fit this estimator: {exc}") from None
        have = (shapes.H, shapes.L, shapes.D)
        want = (int(self.hidden_size), int(self.num_layers), int(meta["n_features_in"]))
        if have != want:
            raise CheckpointError(
                "the saved weights do not fit this estimator: (hidden size, layers, features) "
                f"are {have}, expected {want}"
            )
        if params["Whh"].dtype != self._dtype():
            raise CheckpointError(f"the saved weights are {params['Whh'].dtype}, not {self.dtype}")
        self.params_, self._optimizer, self._opt_state = params, optimizer, opt_state
        self.n_features_in_ = want[2]
        self._restore_extra(meta)
        self._rng = checkpoint.generator(meta["rng"])
        self.n_iter_ = int(meta["n_iter"])
        self.n_steps_ = int(meta["n_steps"])
        self.loss_curve_ = [float(v) for v in meta["loss_curve"]]

    def save(self, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
        """Write the fitted model to ``path``; returns the file written.

        path: a directory (one that exists, or any path without a suffix, then created with
        its parents) gets DIR/model.safetensors; any other path is the file itself, in a
        directory that must exist.  An existing regular file
        is replaced; anything else there (a directory, a FIFO, a device) is refused.
        The model or train state of a ``bptt train`` run's directory (one holding
        train_state.safetensors) is refused: the run's state would no longer match it, so
        ``clf.save(run_dir)`` raises a BpttError and changes nothing; so is its model file
        while a run trains there (it would replace it at its next checkpoint).  One safetensors
        file, written atomically: the weights, and JSON metadata with the constructor
        arguments (the cell, sizes and dtype of the weights saved, whatever set_params said
        since the fit), the sizes and (classifier) the classes.  info: any JSON-able dict
        stored beside them.
        """
        from bptt.train import STATE_FILE, is_run_checkpoint, not_while_training

        self._check_fitted()
        if info is not None and not isinstance(info, dict):
            raise BpttError(f"info must be a dict (of JSON-able values), got {type(info).__name__}")
        target = Path(path)
        in_directory = target.is_dir() or not target.suffix
        if in_directory:
            target = target / checkpoint.MODEL_FILE
        # (what they refuse, refused before a directory is made)
        meta = checkpoint.as_json(self._meta(info))
        instead = "save the estimator in another directory or under another file name"
        with (checkpoint.made_dir(target.parent) if in_directory else contextlib.nullcontext(),
              not_while_training(target, instead)):
            if is_run_checkpoint(target):
                raise BpttError(f"{target.parent} holds a training run ({STATE_FILE}); {instead}")
            checkpoint.write_safetensors_atomic(target, self.params_, meta)
            return target

    def _write(self, target: Path, info: dict[str, Any] | None) -> Path:
        """Write the model file :meth:`save` describes to ``target``, whatever directory it is
        in (bptt train --task writes its own run's model with it, the task in ``info``)."""
        checkpoint.write_safetensors_atomic(target, self.params_, self._meta(info))
        return target

    def _meta(self, info: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON metadata of the model file :meth:`save` describes."""
        meta = checkpoint.model_meta(self.params_, None, self._saved_settings(), self.n_steps_)
        meta["estimator"] = {
            "class": type(self).__name__,
            "head": self._head,
            "n_features_in": self.n_features_in_,
            "n_iter": self.n_iter_,
            "loss_curve": [float(v) for v in self.loss_curve_],
            **self._extra_meta(),
        }
        if info is not None:
            meta["info"] = info
        return meta

    def _saved_settings(self) -> dict[str, Any]:
        """The constructor arguments a saved file states, as :meth:`load` will check them:
        get_params(), but the cell, sizes and dtype of the weights themselves (set_params
        changes those for the next fit, not the fitted network).  BpttError for a setting
        load would refuse."""
        config = self.get_params()
        shapes = models.check_params(self.params_)
        config.update(cell=shapes.cell, hidden_size=shapes.H, num_layers=shapes.L,
                      dtype=self.params_["Whh"].dtype.name)  # (np.float32: not JSON)
        if shapes.cell != "lstm":
            config["forget_bias"] = None  # (an LSTM's initial b_f; set for another cell)
        if not isinstance(config["random_state"], (int, np.integer, type(None))):
            config["random_state"] = None  # a Generator is not JSON; its seed is gone anyway
        type(self)(**config)._validate_params()
        return _jsonable(config)

    @classmethod
    def load(cls: type[_Estimator], path: str | os.PathLike) -> _Estimator:
        """An estimator read from a file written by :meth:`save` (weights and settings)."""
        model = checkpoint.load_model(path)
        file = Path(path)
        saved = model.meta.get("estimator")
        if not isinstance(saved, dict) or "class" not in saved:
            raise CheckpointError(f"{file} holds a bptt model but not a saved estimator")
        if saved["class"] != cls.__name__:
            raise CheckpointError(
                f"{file} holds a {saved['class']}; load it with bptt.{saved['class']}.load"
            )
        try:
            config = {k: v for k, v in model.config.items() if k in cls._param_names()}
            estimator = cls(**config)
            estimator._validate_params()
            estimator.params_ = model.params
            shapes = models.check_params(model.params)
            told = (estimator.cell, estimator.hidden_size, estimator.num_layers)
            if told != (shapes.cell, shapes.H, shapes.L):
                raise CheckpointError(
                    f"{file}: its settings say cell {told[0]!r}, hidden_size {told[1]!r}, "
                    f"num_layers {told[2]!r} but the weights are those of a {shapes.cell} with "
                    f"H={shapes.H}, L={shapes.L}"
                )
            estimator.n_features_in_ = int(saved["n_features_in"])
            if estimator.n_features_in_ != model.params["Wxh"].shape[1]:
                raise CheckpointError(
                    f"{file}: n_features_in is {saved['n_features_in']!r} but the weights "
                    f"take {model.params['Wxh'].shape[1]} features"
                )
            estimator.n_iter_ = int(saved["n_iter"])
            estimator.n_steps_ = model.step
            estimator.loss_curve_ = [float(v) for v in saved["loss_curve"]]
            estimator._restore_extra(saved)
            if saved["head"] != estimator._head:
                raise CheckpointError(f"{file}: head {saved['head']!r} does not fit per_step")
        except (KeyError, TypeError, ValueError) as exc:  # ValueError: int("x"), a BpttError
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{file} holds a damaged estimator ({exc})") from exc
        if model.params["Whh"].dtype != estimator._dtype():
            raise CheckpointError(f"{file}: weights of dtype {model.params['Whh'].dtype} but "
                                  f"dtype={estimator.dtype!r}")
        estimator._rng = np.random.default_rng(estimator.random_state)
        estimator._optimizer = optim.make_optimizer(estimator.optimizer, float(estimator.lr))
        estimator._opt_state = estimator._optimizer.init_state(estimator.params_)
        return estimator


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python numbers, for JSON."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


def _batch(
    x: Steps, n: np.ndarray, targets: np.ndarray, rows: np.ndarray, per_step: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-major inputs (T_b, B, D), lengths (B,) and targets for the sequences ``rows``;
    T_b is the longest of them (padding cut to the batch)."""
    T = int(n[rows].max())
    inputs = x.batch(rows, T)
    if per_step:
        y = targets[rows, :T]
        y = np.ascontiguousarray(np.swapaxes(y, 0, 1))
    else:
        y = targets[rows]
    return inputs, n[rows], y


# ----------------------------------------------------------------------------
# the two estimators
# ----------------------------------------------------------------------------


class SequenceClassifier(_SequenceEstimator):
    """A recurrent classifier of whole sequences (or, with per_step=True, of every step).

    Parameters (all stored as given, checked by ``fit``):
        cell: "lstm", "gru" or "rnn".  hidden_size: H.  num_layers: L.
        optimizer: "adam", "sgd", "momentum" or "adagrad".  lr: learning rate.
        epochs: passes over the data in ``fit``.  batch_size: sequences per step.
        clip_norm: clip the gradient's global norm (None: never).  truncate: None (full
        BPTT) or K (keep the terms with t − k < K).  per_step: a label at every step.
        forget_bias: the LSTM's initial b_f (None: PyTorch's random init).
        dtype: "float32" or "float64".  random_state: None, an int or a numpy Generator.

    Fitted attributes: classes_ (C,), params_ (the weights, see bptt.init_params),
    n_features_in_ (D), loss_curve_ (mean cross-entropy per epoch), n_iter_ (epochs),
    n_steps_ (optimizer steps).
    """

    _heads = ("softmax_last", "softmax_each")
    _estimator_type = "classifier"

    def _encode_targets(
        self, y: Any, lengths: np.ndarray, T: int, fitting: bool
    ) -> np.ndarray:
        labels = (_per_step_targets(y, lengths, T, numeric=False) if self.per_step
                  else as_array("y", y))
        if not self.per_step and labels.ndim != 1:
            raise BpttError(f"y has shape {labels.shape}: one label per sequence, (N,)")
        given = y
        if self.per_step:  # the labels of every step (a padded array: numpy's, one dtype)
            given = ([label for seq in y for label in seq] if isinstance(y, (list, tuple))
                     else None)
        real = (np.arange(T)[None, :] < lengths[:, None]) if self.per_step else slice(None)
        labels = _read_object_labels(labels, real)
        _check_label_kinds(given, labels)
        values = labels[real]
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise BpttError("y contains NaN or inf")
        if fitting and not hasattr(self, "classes_"):
            _check_not_continuous(values)
            classes = np.unique(values)
            if len(classes) < 2:
                only = classes[:1].tolist()[0]  # (Python's value: 0.0, not np.float64(0.0))
                raise BpttError(f"y holds one class only ({only!r}): need at least two")
            self.classes_ = classes
        return self._label_indices(labels, real)

    def _label_indices(self, labels: np.ndarray, real: Any) -> np.ndarray:
        """Labels -> indices into classes_; a label not in classes_ raises BpttError."""
        values = labels[real]
        try:
            index = np.searchsorted(self.classes_, values)
        except TypeError:
            raise BpttError("y holds labels of another type than the classes seen in fit") \
                from None
        index = np.clip(index, 0, len(self.classes_) - 1)
        if (self.classes_.dtype.kind == "U") != (values.dtype.kind == "U"):
            # strings against numbers (labels are one or the other): no label is a class
            # (numpy < 2 compares them as a whole, one bool with a FutureWarning)
            unknown = np.ones(values.shape, dtype=bool)
        else:
            unknown = self.classes_[index] != values
        if np.any(unknown):
            seen = sorted(set(np.asarray(values)[unknown].tolist()))[:5]
            raise BpttError(
                f"y holds label(s) {seen} not seen in fit; the classes are "
                f"{self.classes_.tolist()}"
            )
        out = np.zeros(labels.shape, dtype=np.int64)
        out[real] = index
        return out

    def _num_outputs(self) -> int:
        return len(self.classes_)

    def _mean_loss(self, J: float, count: int) -> float:
        return J / max(count, 1)

    def partial_fit(
        self, X: Any, y: Any, lengths: Any = None, classes: Any = None
    ) -> SequenceClassifier:
        """One more epoch over (X, y) (the first call initialises; give ``classes`` then, all
        labels that will ever occur, else those of this y).  A learning rate changed by
        set_params since the last call is used from this call on
        (another optimizer, cell, size or dtype: refused).  Returns self."""
        first = not hasattr(self, "params_")
        if classes is not None:
            classes = _check_classes(classes)
            if len(classes) < 2:
                raise BpttError("classes must hold at least two labels")
            if not first and not np.array_equal(classes, self.classes_):
                # (scikit-learn's rule: the output layer has one row per class of the first call)
                raise BpttError(f"classes={classes.tolist()!r} is not the classes_ of the first "
                                f"call, {self.classes_.tolist()!r}: give the same, or none")
            self.classes_ = classes
        try:
            return self._partial_fit(X, y, lengths)
        except BpttError:
            if first and not hasattr(self, "params_"):
                self.__dict__.pop("classes_", None)  # a refused first call leaves it unfitted
            raise

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray | list[np.ndarray]:
        """Class probabilities: (N, C), columns in the order of classes_ (per_step: a list of
        (T_i, C))."""
        if self.per_step:
            return [ops.softmax(o) for o in self._step_outputs(X, lengths)]
        return ops.softmax(self._outputs(X, lengths))

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray | list[np.ndarray]:
        """The most probable class of each sequence, (N,) (per_step: a list of (T_i,))."""
        if self.per_step:
            outputs = self._step_outputs(X, lengths)
            return [self.classes_[o.argmax(axis=-1)] for o in outputs]
        logits = self._outputs(X, lengths)
        return self.classes_[logits.argmax(axis=-1)]

    def score(self, X: Any, y: Any, lengths: Any = None) -> float:
        """Accuracy: the fraction of sequences (per_step: of real steps) predicted right."""
        self._check_fitted()
        x, n, labels = self._prepare(X, y, lengths, fitting=False)
        if self.per_step:
            outputs = self._step_outputs(x, n)
            hits = [np.argmax(o, axis=-1) == labels[i, : n[i]] for i, o in enumerate(outputs)]
            return float(np.concatenate(hits).mean())
        return float(np.mean(self._outputs(x, n).argmax(axis=-1) == labels))

    def _extra_meta(self) -> dict[str, Any]:
        classes = self.classes_
        if classes.dtype.kind not in "biufU":
            raise BpttError(f"cannot save classes of dtype {classes.dtype}: {LABEL_KINDS}")
        return {"classes": classes.tolist(), "classes_dtype": classes.dtype.str}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        self.classes_ = np.array(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
        if len(self.classes_) != self.params_["Why"].shape[0]:
            raise CheckpointError("the saved classes do not match the output size")


class SequenceRegressor(_SequenceEstimator):
    """A recurrent regressor of whole sequences (or, with per_step=True, of every step).

    Parameters: as :class:`SequenceClassifier`.  y: (N,) or (N, V) numbers (per_step: a list
    of (T_i,) or (T_i, V) arrays, or padded (N, T) / (N, T, V) read with X's lengths).
    ``predict`` returns the shape y had: (N,) or (N, V) (per_step: a list of per-sequence
    arrays).  ``score``: the coefficient of determination R² = 1 − SS_res / SS_tot, averaged
    over the V outputs (scikit-learn's r2_score; a constant target scores 1 if predicted
    exactly, else 0).

    Fitted attributes: params_, n_features_in_, n_outputs_ (V), loss_curve_ (mean squared
    error per epoch), n_iter_, n_steps_.

    Scale y to about unit size (standardize it), as for any network trained by steps of a
    fixed size: an output far from the initial weights' scale is reached slowly, if at
    all, and squared errors of very large targets overflow (a DivergedError that says so).
    """

    _heads = ("mse_last", "mse_each")
    _estimator_type = "regressor"
    # fitted (set by the first fit, or a load): declared for type checkers, not set here
    n_outputs_: int
    _y_one_column: bool

    def _encode_targets(
        self, y: Any, lengths: np.ndarray, T: int, fitting: bool
    ) -> np.ndarray:
        if self.per_step:
            values = _per_step_targets(y, lengths, T, numeric=True)
        else:
            values = as_array("y", y)
            if values.ndim not in (1, 2):
                raise BpttError(f"y has shape {values.shape}: expected (N,) or (N, V)")
        if values.dtype.kind not in "biuf":
            raise BpttError(f"y must hold numbers, got dtype {values.dtype}")
        one_column = values.ndim == (2 if self.per_step else 1)
        values = values[..., None] if one_column else values
        if values.shape[-1] < 1:  # (before fit sets the fitted model aside, as above)
            raise BpttError(f"y has 0 values per target (shape {values.shape}): each target "
                            "needs at least one")
        real = (np.arange(T)[None, :] < lengths[:, None]) if self.per_step else slice(None)
        # checked as the head will see them: a float64 beyond float32's range is inf there
        cast = _cast(values, self._data_dtype(fitting))
        if not np.isfinite(cast[real]).all():
            raise BpttError(_not_finite("y", values[real], cast.dtype))
        if not fitting and values.shape[-1] != self.n_outputs_:
            raise BpttError(f"y has {values.shape[-1]} outputs but the model has {self.n_outputs_}")
        if fitting:
            self.n_outputs_ = int(values.shape[-1])
            self._y_one_column = one_column
        return cast

    def _num_outputs(self) -> int:
        return self.n_outputs_

    def _divergence_cause(self, y: np.ndarray) -> str:
        # far from unit size, the squared errors overflow whatever the step size
        largest = float(np.abs(y).max()) if y.size else 0.0
        if largest < LARGE_TARGET:
            return ""
        return (f"the targets reach |y| = {largest:.3g}: scale them to about unit size "
                "(e.g. subtract their mean and divide by their standard deviation)")

    def _mean_loss(self, J: float, count: int) -> float:
        # J = Σ ½ ‖y − r‖²: the mean squared error per value is 2J / (count · V)
        return 2 * J / max(count * self.n_outputs_, 1)

    def partial_fit(self, X: Any, y: Any, lengths: Any = None) -> SequenceRegressor:
        """One more epoch over (X, y) (the first call initialises).  A learning rate changed by
        set_params since the last call is used from this call on
        (another optimizer, cell, size or dtype: refused).  Returns self."""
        return self._partial_fit(X, y, lengths)

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray | list[np.ndarray]:
        """Predictions: (N,) or (N, V) as y was (per_step: a list of (T_i,) or (T_i, V))."""
        if self.per_step:
            outputs = self._step_outputs(X, lengths)
            return [o[:, 0] for o in outputs] if self._y_one_column else outputs
        predicted = self._outputs(X, lengths)
        return predicted[:, 0] if self._y_one_column else predicted

    def score(self, X: Any, y: Any, lengths: Any = None) -> float:
        """R² of the predictions, averaged over the outputs (per_step: over every real step)."""
        self._check_fitted()
        x, n, values = self._prepare(X, y, lengths, fitting=False)
        if self.per_step:
            predicted = np.concatenate(self._step_outputs(x, n))
            values = np.concatenate([values[i, : n[i]] for i in range(len(n))])
        else:
            predicted = self._outputs(x, n)
        return r2_score(values, predicted)

    def _extra_meta(self) -> dict[str, Any]:
        return {"n_outputs": self.n_outputs_, "y_one_column": bool(self._y_one_column)}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        self.n_outputs_ = int(meta["n_outputs"])
        self._y_one_column = bool(meta["y_one_column"])


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R² = 1 − Σ (y − ŷ)² / Σ (y − ȳ)² per output column, averaged (sklearn's uniform
    average; a constant column scores 1.0 when predicted exactly, else 0.0).

    y_true, y_pred: (M,) or (M, V).
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res == 0, 1.0, 0.0))
    return float(scores.mean())
