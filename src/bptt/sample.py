"""Generation: run a character model one token at a time and draw the next character.

p_t = softmax(y_t / temperature); the next character is drawn from p_t with an
explicit numpy Generator (or taken as argmax p_t when greedy), fed back as the
next input, and the state carried along.  Temperature → 0 approaches greedy
decoding; temperature 1 samples the model's own distribution.

Text is Unicode characters throughout (the vocabulary is code points, not bytes).
A prime may hold characters outside the vocabulary only when the model has an
unknown-character token (``unk``), which then stands for them.  ``stop``: generation
ends as soon as the generated text ends with it (``length`` is then the maximum).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bptt import models, ops
from bptt.cells import common, get_cell
from bptt.errors import BpttError, DataError, as_finite, check_bool, check_int, check_positive


def check_temperature(temperature: float) -> float:
    """A finite temperature > 0 (a Python or numpy number, not a bool)."""
    return check_positive("temperature", temperature)


def _check_vocab(vocab: Any) -> list[str]:
    """A character vocabulary: distinct one-character strings (a character listed twice
    would read the prime with the wrong id), as a list."""
    from bptt.data import Vocab

    try:
        return Vocab(vocab).to_list()
    except DataError as exc:
        raise BpttError(f"vocab cannot be used: {exc}") from exc


def next_token_distribution(logits: np.ndarray, temperature: float) -> np.ndarray:
    """p = softmax(y / temperature) in float64.  logits: (V,) -> (V,), sums to 1.

    Computed as softmax((y − max y) / temperature), the same distribution: the shifted
    logits are <= 0, so a temperature near 0 sends all but the largest to −inf (p → the
    greedy choice) instead of overflowing them all to inf (p → NaN).
    """
    temperature = check_temperature(temperature)
    return _distribution(_check_logits(logits), temperature)


def _check_logits(logits: Any) -> np.ndarray:
    """logits as a float64 vector (V,), V >= 1, of real numbers: −inf masks a token out, but
    NaN or +inf (or nothing but −inf) leaves no distribution (p would be NaN)."""
    if np.ndim(logits) != 1 or not np.size(logits):
        raise BpttError(f"logits must be one vector (V,) with V >= 1, got shape "
                        f"{np.shape(logits)}")
    if np.iscomplexobj(logits):  # (np.asarray would drop the imaginary part, with a warning)
        raise BpttError(f"logits must be real numbers, got dtype {np.asarray(logits).dtype}")
    try:
        y = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError):
        raise BpttError(f"logits must be real numbers, got {logits!r}") from None
    nan, posinf, neginf = (int(test(y).sum()) for test in (np.isnan, np.isposinf, np.isneginf))
    if nan or posinf or neginf == len(y):
        raise BpttError("logits must be finite numbers or −inf (a token masked out), at least "
                        f"one finite: NaN and +inf give no distribution; got {nan} NaN, "
                        f"{posinf} +inf and {neginf} −inf of {len(y)}")
    return y


def _distribution(logits: np.ndarray, temperature: float) -> np.ndarray:
    """:func:`next_token_distribution` of logits and a temperature already checked (the
    sampling loop's, once per character)."""
    y = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):
        return ops.softmax((y - y.max()) / temperature)


def draw(p: Any, rng: np.random.Generator | None = None) -> int:
    """One index drawn from the distribution p (inverse CDF with one uniform number).

    p: (V,) weights, finite and >= 0 with a sum above 0 (a distribution, or one not yet
    normalised): index i comes with probability p[i] / Σ p, an index of weight 0 never.
    rng: the numpy Generator to draw with (None: a fresh one).
    """
    return _draw(_check_weights(p), models.check_rng(rng))


def _check_weights(p: Any) -> np.ndarray:
    """p as a float64 vector (V,), V >= 1, of finite weights >= 0 with a sum above 0.

    Weights whose sum overflows to inf, or is so small that it is subnormal (a few bits
    of precision left to split it by), come back scaled so that the largest is 1: the same
    distribution, in numbers the inverse CDF can use.
    """
    if np.ndim(p) != 1 or not np.size(p):
        raise BpttError(f"p must be one vector (V,) with V >= 1, got shape {np.shape(p)}")
    if np.iscomplexobj(p) or np.asarray(p).dtype.kind not in "iuf":
        raise BpttError(f"p must hold real numbers, got dtype {np.asarray(p).dtype}")
    weights = np.asarray(p, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf is the sum of 2e308
        total = weights.sum()
    if not (np.isfinite(weights).all() and weights.min() >= 0 and weights.max() > 0):
        raise BpttError(
            "p must be finite weights >= 0 with a sum above 0 (a distribution), got min "
            f"{weights.min()}, max {weights.max()}, sum {total}"
        )
    if not np.finfo(np.float64).tiny <= total < np.inf:
        weights = weights / weights.max()
    return weights


def _draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """:func:`draw` of weights and a Generator already checked (the sampling loop's).

    Index i is drawn when u·Σp falls in [cdf[i − 1], cdf[i]), which is empty for a weight
    of 0.  Should u·Σp round up to Σp itself, the index is the last of weight above 0 (the
    first whose cdf is the whole sum), never a trailing index of weight 0.
    """
    cdf = np.cumsum(p)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    if index == len(p):
        index = int(np.searchsorted(cdf, cdf[-1], side="left"))
    return index


def generate(
    params: dict[str, np.ndarray],
    vocab: Sequence[str],
    length: int,
    temperature: float = 1.0,
    prime: str | None = "",
    rng: np.random.Generator | None = None,
    greedy: bool = False,
    stop: str | None = None,
    unk: str | None = None,
) -> Iterator[str]:
    """An iterator over ``length`` sampled characters (the prime is not repeated).

    params: a character model (input_size = output_size = len(vocab)).  prime: text to
    read first (every character must be in the vocabulary, or ``unk`` is read in its
    place); without one the model starts from a newline if the vocabulary has one, else
    from its first character, with a zero state.  greedy: take argmax instead of drawing.
    stop: end early, right after the generated characters end with this text (it is
    yielded).  unk: the model's unknown-character token (a vocabulary character).
    Arguments are checked here, before the first character is asked for.  The weights must
    not change while the iterator is read (what the cells make of them is made once).
    """
    shapes = models.check_params(params)
    vocab = _check_vocab(vocab)
    if prime is None:
        prime = ""
    if not isinstance(prime, str):
        raise BpttError(f"prime must be a string (or None), got {type(prime).__name__}")
    if len(vocab) != shapes.D or len(vocab) != shapes.V:
        raise BpttError(
            f"vocab has {len(vocab)} characters, the model {shapes.D} inputs and "
            f"{shapes.V} outputs (a sampled character is fed back: both must be the vocab)"
        )
    length = check_int("length", length, 0)
    temperature = check_temperature(temperature)
    rng = models.check_rng(rng)
    greedy = check_bool("greedy", greedy)
    index = {c: i for i, c in enumerate(vocab)}
    if unk is not None and (not isinstance(unk, str) or unk not in index):
        raise DataError(f"the unknown-character token {unk!r} is not in the model's vocabulary")
    unknown = sorted({c for c in prime if c not in index})
    if unknown and unk is None:
        shown = ", ".join(repr(c) for c in unknown[:5])
        raise DataError(
            f"the prime text has {len(unknown)} character(s) not in the model's vocabulary: "
            f"{shown}; use only characters the model was trained on"
        )
    if stop is not None:
        if not isinstance(stop, str) or not stop:
            raise BpttError(f"the stop text must be a non-empty string, got {stop!r}")
        missing = sorted({c for c in stop if c not in index})
        if missing:
            shown = ", ".join(repr(c) for c in missing[:5])
            raise DataError(
                f"the stop text has character(s) the model cannot generate: {shown}; "
                "use only characters of the model's vocabulary"
            )
    start = prime or ("\n" if "\n" in index else vocab[0])
    default = index[unk] if unk is not None else 0
    ids = np.fromiter((index.get(c, default) for c in start), np.int64, len(start))[:, None]
    return _continue(params, shapes, vocab, ids, length, temperature, rng, greedy, stop)


PRIME_CHUNK = 4096
"""Characters of the prime read per forward pass, the state carried from one to the next:
the activations and logits of one chunk are held at once, never those of the whole prime
(a prime file of megabytes would need gigabytes)."""


def _continue(params, shapes, vocab, ids, length, temperature, rng, greedy,
              stop: str | None = None) -> Iterator[str]:
    """Read ids (T, 1), then draw and feed back one character at a time (until ``stop``)."""
    # memory kept from one character to the next, and the weights do not change while the
    # characters are drawn: what the cells make of them (their sweeps' copies) is made once
    work = common.Buffers(fixed_params=True)
    state = None
    for begin in range(0, len(ids), PRIME_CHUNK):
        fwd = models.forward_checked(params, shapes, ids[begin : begin + PRIME_CHUNK], state,
                                     work)
        state = fwd.state
    logits = fwd.logits[-1, 0]
    # one character at a time, the state is carried per layer (models.forward_layers): the
    # public form, made and checked again for every character, took a tenth to a fifth
    # of the time
    cell = get_cell(shapes.cell)
    states = _carried(cell, fwd.caches)
    tail = ""  # the last len(stop) generated characters
    for _ in range(length):
        p = _distribution(logits, temperature)  # (temperature checked by generate)
        token = int(np.argmax(p)) if greedy else _draw(p, rng)
        yield vocab[token]
        if stop:
            tail = (tail + vocab[token])[-len(stop):]
            if tail == stop:
                return
        _check_finite_state(cell.STATE_NAMES, states)
        caches, y, _ = models.forward_layers(params, shapes, np.array([[token]]), states, work)
        logits, states = y[0, 0], _carried(cell, caches)  # (logits: work's, read before the next)


def _carried(cell: Any, caches: list[Any]) -> list[tuple[np.ndarray, ...]]:
    """Each layer's final state (B, H) arrays, copied out of the memory the next step reuses."""
    return [tuple(part.copy() for part in cell.final_state(cache)) for cache in caches]


def _check_finite_state(names: tuple[str, ...], states: list[tuple[np.ndarray, ...]]) -> None:
    """The check :func:`models.state_to_layers` makes of a state fed back (the same error, for
    the same part first): a state that overflowed to NaN or inf goes no further."""
    for i, name in enumerate(names):
        for layer_state in states:
            if not np.isfinite(layer_state[i]).all():  # (as_finite's own test, without its
                as_finite(f"{name}0", layer_state[i], layer_state[i].dtype)  # cost): raises


def sample_text(
    params: dict[str, np.ndarray],
    vocab: Sequence[str],
    length: int,
    temperature: float = 1.0,
    prime: str | None = "",
    rng: np.random.Generator | None = None,
    greedy: bool = False,
    stop: str | None = None,
    unk: str | None = None,
) -> str:
    """The characters of :func:`generate`, joined."""
    return "".join(generate(params, vocab, length, temperature, prime, rng, greedy, stop, unk))
