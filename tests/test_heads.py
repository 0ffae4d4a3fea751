"""Every head × cell against its three witnesses, masks (lengths) included; padded == one by one.

head ∈ {softmax_each, softmax_last, mse_each, mse_last} × cell ∈ {rnn, lstm, gru} × two
variants: one layer on token ids with full-length sequences, and two layers on dense inputs
with sequences of different lengths (padded at the end).  float64, random NON-ZERO biases and
initial states, random targets (padded targets hold garbage that must be ignored).

* the reference double sum with the same head and lengths (J_t walked back to every k; for a
  "last" head only J_{n_b−1}): < 1e-12 relative, for truncate ∈ {None, 2};
* finite differences, the fourth-order stencil of test_cells_grid: < 1e-7 relative;
* PyTorch: nn.RNN/LSTM/GRU (float64, our weights) run on a PACKED sequence
  (pack_padded_sequence: torch never runs the padded steps) + Linear + cross_entropy /
  0.5·mse_loss (reduction="sum") on the real steps: gradients < 1e-10, outputs and final
  states < 1e-12;
* a padded batch equals running each sequence alone (B = 1, no padding), to 1e-12: loss,
  gradients, outputs, the final state at each sequence's own last step and ∂J/∂h0.
"""

from __future__ import annotations

import itertools
import re
import zlib
from typing import Any, NamedTuple

import numpy as np
import pytest

import bptt
from bptt import heads, interop, models, ops
from bptt.cells import get_cell
from bptt.gradcheck import compare_arrays, numerical_gradient

CELLS = ("rnn", "lstm", "gru")
REF_TOL = 1e-12
FD_TOL = 1e-7
TORCH_TOL = 1e-10
FORWARD_TOL = 1e-12
ALONE_TOL = 1e-12
# the fourth-order stencil (4 D(ε) − D(2ε)) / 3 of test_cells_grid.py, with ε = 1e-3 rather than
# 1e-4: a "last" head has ONE loss, T steps after h0, so ∂J/∂h0 is tiny (5e-5 for the one-layer
# LSTM) while J ≈ 5, and the round-off ≈ ulp(J)/ε must shrink to stay 1e-7 of that tensor's
# scale.  Measured worst over the grid: 1.7e-7 at ε = 1e-4, 6.9e-8 at 3e-4, 2.0e-8 at 1e-3
# (the stencil's truncation error, ε⁴ f⁽⁵⁾/30, stays negligible: the weights are not saturated).
FD_EPS = 1e-3
FD_SAMPLE = 16


class Problem(NamedTuple):
    cell: str
    head: str
    params: dict[str, np.ndarray]
    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None
    h0: Any


def seed_of(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def make_problem(cell: str, head: str, L: int, ragged: bool, ids: bool, seed: int) -> Problem:
    """A random float64 problem; ragged: lengths in [1, T] with one full and one shorter."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(4, 7))
    B = int(rng.integers(3, 5))
    D, H, V = (int(v) for v in rng.integers(2, 5, size=3))
    params = bptt.init_params(cell, D, H, V, bias=True, rng=rng, dtype=np.float64, num_layers=L)
    for key in params:
        if key.split("_l")[0] in ("bh", "bxh", "bhh", "by"):
            params[key] = rng.normal(size=params[key].shape)
    inputs = rng.integers(0, D, size=(T, B)) if ids else rng.normal(size=(T, B, D))
    lengths = None
    if ragged:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0], lengths[1] = T, int(rng.integers(1, T))
        if not ids:  # padding with garbage: it must not matter
            for b in range(B):
                inputs[lengths[b]:, b] = rng.normal(size=(T - lengths[b], D)) * 3
    last = heads.is_last(head)
    shape = (B,) if last else (T, B)
    if heads.is_softmax(head):
        targets = rng.integers(0, V, size=shape)
        targets.flat[0] = (targets.flat[-1] + 1) % V  # at least two distinct labels
        if ragged and not last:
            targets[np.arange(T)[:, None] >= lengths[None, :]] = -7  # ignored padding labels
    else:
        targets = rng.normal(size=(*shape, V))
        if ragged and not last:
            targets[np.arange(T)[:, None] >= lengths[None, :]] = np.nan  # ignored
    h0 = rng.normal(size=(L, B, H)) * 0.5
    if cell == "lstm":
        h0 = (h0, rng.normal(size=(L, B, H)))
    return Problem(cell, head, params, inputs, targets, lengths, h0)


def state_dict(cell: str, state: Any) -> dict[str, np.ndarray]:
    names = get_cell(cell).STATE_NAMES
    parts = state if len(names) > 1 else (state,)
    return {f"{name}0": np.asarray(part) for name, part in zip(names, parts, strict=True)}


def assert_agree(ours: dict, theirs: dict, tol: float, witness: str) -> None:
    assert set(ours) == set(theirs), f"{witness}: keys differ {sorted(set(ours) ^ set(theirs))}"
    for key in ours:
        c = compare_arrays(key, ours[key], theirs[key])
        assert c.max_rel < tol, (
            f"{key} vs {witness}: relative error {c.max_rel:.3g} (tol {tol:g}), absolute error "
            f"{c.max_abs:.3g} at {c.worst}: ours {c.a_worst!r}, {witness} {c.b_worst!r}"
        )


def efficient(p: Problem, truncate: int | None = None) -> heads.Result:
    return heads.backprop(p.params, p.inputs, p.targets, p.head, p.lengths, p.h0, truncate)


def with_state(cell: str, grads: dict, dstate: Any) -> dict[str, np.ndarray]:
    return dict(grads, **state_dict(cell, dstate))


def finite_differences(p: Problem) -> dict[str, np.ndarray]:
    """∂J/∂θ and ∂J/∂(initial state) by the fourth-order stencil, FD_SAMPLE entries a tensor."""
    params = {k: v.copy() for k, v in p.params.items()}
    parts = [np.array(s) for s in (p.h0 if isinstance(p.h0, tuple) else (p.h0,))]
    state = tuple(parts) if isinstance(p.h0, tuple) else parts[0]
    tensors = dict(params, **{f"{n}0": a for n, a in zip(get_cell(p.cell).STATE_NAMES, parts,
                                                              strict=True)})

    def J() -> float:
        return heads.loss(params, p.inputs, p.targets, p.head, p.lengths, state)

    out = {}
    for key, x in tensors.items():
        rng = np.random.default_rng(seed_of(key))
        picks = None if x.size <= FD_SAMPLE else rng.choice(x.size, FD_SAMPLE, replace=False)
        near = numerical_gradient(J, x, FD_EPS, picks)
        far = numerical_gradient(J, x, 2 * FD_EPS, picks)
        out[key] = (4 * near - far) / 3
    return out


# ----------------------------------------------------------------------------
# the torch twin: packed sequences, so torch never even runs the padded steps
# ----------------------------------------------------------------------------


class TorchRun(NamedTuple):
    loss: float
    outputs: np.ndarray  # (B, V) last, or (T, B, V) each (padded steps: zero)
    state: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]


def torch_run(torch, p: Problem) -> TorchRun:
    F = torch.nn.functional
    module = interop.to_torch_module({k: np.asarray(v, np.float64) for k, v in p.params.items()})
    rnn, linear = module.rnn, module.head
    shapes = models.check_params(p.params)
    x = np.eye(shapes.D)[p.inputs] if p.inputs.ndim == 2 else p.inputs
    T, B = x.shape[:2]
    state0 = {k: torch.tensor(v, requires_grad=True) for k, v in state_dict(p.cell, p.h0).items()}
    hx = tuple(state0.values()) if p.cell == "lstm" else state0["h0"]
    xt = torch.from_numpy(np.ascontiguousarray(x))
    lengths = np.full(B, T) if p.lengths is None else p.lengths
    if p.lengths is None:
        out, final = rnn(xt, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.from_numpy(lengths), enforce_sorted=False)
        out_packed, final = rnn(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, total_length=T)
    logits = linear(out)  # (T, B, V)
    if heads.is_last(p.head):
        y = logits[torch.from_numpy(lengths - 1), torch.arange(B)]
        target = torch.from_numpy(p.targets)
        outputs = y
    else:
        real = torch.from_numpy(np.arange(T)[:, None] < lengths[None, :])
        y = logits[real]
        target = torch.from_numpy(p.targets)[real]
        outputs = logits * real[..., None]
    if heads.is_softmax(p.head):
        loss = F.cross_entropy(y, target, reduction="sum")
    else:
        loss = 0.5 * F.mse_loss(y, target, reduction="sum")
    loss.backward()
    grads = {}
    for layer in range(shapes.L):
        for name in get_cell(p.cell).PARAM_NAMES:
            key = models.layer_key(name, layer)
            if key in p.params:
                grads[key] = getattr(rnn, f"{models.TORCH_NAMES[name]}_l{layer}").grad.numpy()
    grads["Why"], grads["by"] = linear.weight.grad.numpy(), linear.bias.grad.numpy()
    grads.update({k: t.grad.numpy() for k, t in state0.items()})
    final = final if isinstance(final, tuple) else (final,)
    names = get_cell(p.cell).STATE_NAMES
    state = {f"{n}0": f.detach().numpy() for n, f in zip(names, final, strict=True)}
    return TorchRun(loss.item(), outputs.detach().numpy(), state, grads)


# ----------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------

VARIANTS = {"L1-ids-full": (1, False, True), "L2-dense-ragged": (2, True, False)}
GRID = [
    pytest.param(cell, head, variant, id=f"{head}-{cell}-{variant}")
    for head, cell, variant in itertools.product(heads.HEADS, CELLS, VARIANTS)
]


def problem_of(cell: str, head: str, variant: str) -> Problem:
    L, ragged, ids = VARIANTS[variant]
    return make_problem(cell, head, L, ragged, ids, seed_of(cell, head, variant))


@pytest.mark.parametrize("head", heads.HEADS)
def test_a_window_longer_than_the_sequence_is_full_bptt(head):
    # K >= T cuts nothing; K is capped at T, so K = 10^12 asks for T rows of age, not 10^12
    p = problem_of("gru", head, "L2-dense-ragged")
    full, windowed = efficient(p), efficient(p, 10**12)
    assert windowed.dJ_dh[0].shape[0] == p.inputs.shape[0]
    assert_agree(windowed.grads, full.grads, 1e-13, "full BPTT")


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("cell, head, variant", GRID)
def test_efficient_equals_the_reference_double_sum(cell, head, variant, truncate):
    p = problem_of(cell, head, variant)
    result = efficient(p, truncate)
    loss, grads, terms = bptt.reference.loss_and_grads(
        p.params, p.inputs, p.targets, p.h0, truncate, keep_contributions=False,
        head=head, lengths=p.lengths,
    )
    assert abs(result.loss - loss) <= REF_TOL * abs(loss)
    assert_agree(with_state(cell, result.grads, result.dJ_dstate0),
                 with_state(cell, grads, terms.dJ_dstate0), REF_TOL,
                 f"reference (truncate={truncate})")
    # a "last" head has one loss per sequence: J_t is zero unless t = n_b − 1 for some b
    if heads.is_last(head):
        n = np.full(p.inputs.shape[1], p.inputs.shape[0]) if p.lengths is None else p.lengths
        assert set(np.flatnonzero(terms.losses)) <= set(n - 1)
    # the regrouping: row `age` of layer l's ∂J/∂h_k is ∂J_{k+age}/∂h_k (A = 1: Σ_t)
    T = p.inputs.shape[0]
    for layer in range(models.num_layers_of(p.params)):
        by_age = result.dJ_dh[layer]
        expected = np.zeros_like(by_age)
        for k in range(T):
            if truncate is None:
                expected[0, k] = terms.dJt_dh[layer, k:, k].sum(axis=0)
            else:
                for age in range(min(truncate, T - k)):
                    expected[age, k] = terms.dJt_dh[layer, k + age, k]
        assert_agree({f"dJ_dh layer {layer}": by_age}, {f"dJ_dh layer {layer}": expected},
                     REF_TOL, "reference ∂J_t/∂h_k")


@pytest.mark.parametrize("cell, head, variant", GRID)
def test_finite_differences_agree(cell, head, variant):
    p = problem_of(cell, head, variant)
    result = efficient(p)
    assert_agree(with_state(cell, result.grads, result.dJ_dstate0), finite_differences(p),
                 FD_TOL, "finite differences")


@pytest.mark.parametrize("cell, head, variant", GRID)
def test_pytorch_autograd_on_packed_sequences_agrees(torch, cell, head, variant):
    p = problem_of(cell, head, variant)
    result = efficient(p)
    theirs = torch_run(torch, p)
    outputs = result.outputs
    if not heads.is_last(head) and p.lengths is not None:
        real = np.arange(outputs.shape[0])[:, None] < p.lengths[None, :]
        outputs = outputs * real[..., None]
    ours_forward = {"loss": np.array(result.loss), "outputs": outputs,
                    **state_dict(cell, result.state)}
    theirs_forward = {"loss": np.array(theirs.loss), "outputs": theirs.outputs, **theirs.state}
    assert_agree(ours_forward, theirs_forward, FORWARD_TOL, "torch forward")
    assert_agree(with_state(cell, result.grads, result.dJ_dstate0), theirs.grads, TORCH_TOL,
                 "torch autograd")


# ----------------------------------------------------------------------------
# padded batch == each sequence alone
# ----------------------------------------------------------------------------


def one_row(p: Problem, b: int) -> Problem:
    """Sequence b alone: its real steps only, batch of one, no lengths."""
    n = p.lengths[b]
    last = heads.is_last(p.head)
    targets = p.targets[b:b + 1] if last else p.targets[:n, b:b + 1]
    h0 = tuple(s[:, b:b + 1] for s in p.h0) if isinstance(p.h0, tuple) else p.h0[:, b:b + 1]
    return p._replace(inputs=p.inputs[:n, b:b + 1], targets=targets, lengths=None, h0=h0)


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("head", heads.HEADS)
@pytest.mark.parametrize("cell", CELLS)
def test_a_padded_batch_equals_each_sequence_alone(cell, head, truncate):
    p = make_problem(cell, head, 2, True, False, seed_of("alone", cell, head))
    batch = efficient(p, truncate)
    B = p.inputs.shape[1]
    alone = [efficient(one_row(p, b), truncate) for b in range(B)]
    assert abs(batch.loss - sum(r.loss for r in alone)) <= ALONE_TOL * abs(batch.loss)
    summed = {k: sum(r.grads[k] for r in alone) for k in p.params}
    assert_agree(batch.grads, summed, ALONE_TOL, "sum of the sequences alone")
    for b, r in enumerate(alone):
        n = p.lengths[b]
        mine = batch.outputs[b] if heads.is_last(head) else batch.outputs[:n, b]
        theirs = r.outputs[0] if heads.is_last(head) else r.outputs[:, 0]
        row = {f"outputs[{b}]": mine}
        row.update({f"{k}[{b}]": v[:, b] for k, v in state_dict(cell, batch.state).items()})
        row.update({f"d{k}[{b}]": v[:, b]
                    for k, v in state_dict(cell, batch.dJ_dstate0).items()})
        expected = {f"outputs[{b}]": theirs}
        expected.update({f"{k}[{b}]": v[:, 0] for k, v in state_dict(cell, r.state).items()})
        expected.update({f"d{k}[{b}]": v[:, 0]
                         for k, v in state_dict(cell, r.dJ_dstate0).items()})
        assert_agree(row, expected, ALONE_TOL, f"sequence {b} alone (length {n})")


# ----------------------------------------------------------------------------
# the partials of ops.py, and the agreement with the language model's path
# ----------------------------------------------------------------------------


def test_the_new_partials_of_ops_against_finite_differences(rng):
    y = rng.normal(size=(4, 3, 5))
    labels = rng.integers(0, 5, size=(4, 3))
    mask = (rng.random((4, 3)) < 0.6).astype(float)
    target = rng.normal(size=(4, 3, 5))

    J, p = ops.cross_entropy_masked_forward(y, labels, mask)
    by_hand = -sum(mask[t, b] * np.log(ops.softmax(y[t, b])[labels[t, b]])
                   for t in range(4) for b in range(3))
    assert J == pytest.approx(by_hand, rel=1e-13)
    numeric = numerical_gradient(lambda: ops.cross_entropy_masked_forward(y, labels, mask)[0], y)
    assert compare_arrays("ce", ops.cross_entropy_masked_backward(p, labels, mask),
                          numeric).max_rel < 1e-8
    assert not ops.cross_entropy_masked_backward(p, labels, mask)[mask == 0].any()

    J, residual = ops.squared_error_forward(y, target, mask)
    assert J == pytest.approx(0.5 * np.sum(mask[..., None] * (y - target) ** 2), rel=1e-13)
    numeric = numerical_gradient(lambda: ops.squared_error_forward(y, target, mask)[0], y)
    assert compare_arrays("se", ops.squared_error_backward(residual, mask),
                          numeric).max_rel < 1e-8

    lengths = np.array([4, 1, 3])
    upstream = rng.normal(size=(3, 5))
    gathered = ops.last_step_forward(y, lengths)
    assert np.array_equal(gathered, y[[3, 0, 2], [0, 1, 2]])
    numeric = numerical_gradient(
        lambda: float((upstream * ops.last_step_forward(y, lengths)).sum()), y)
    scattered = ops.last_step_backward(upstream, lengths, 4)
    assert compare_arrays("last", scattered, numeric).max_rel < 1e-8
    assert np.count_nonzero(scattered.any(axis=-1)) == 3
    assert np.array_equal(ops.last_step_forward(y, None), y[-1])


def test_softmax_each_without_lengths_is_the_language_model():
    """The same J and gradients as bptt.loss_and_grads (which fuses softmax and its partial
    into one pass, so equal to round-off rather than bit for bit)."""
    p = make_problem("lstm", "softmax_each", 2, False, True, seed_of("lm"))
    ours = efficient(p)
    loss, grads, state = bptt.loss_and_grads(p.params, p.inputs, p.targets, p.h0)
    assert ours.loss == pytest.approx(loss, rel=1e-14)
    assert_agree(ours.grads, grads, 1e-13, "the language model")
    assert all(np.array_equal(a, b) for a, b in zip(ours.state, state, strict=True))


def test_task_loss_and_grads_is_exported_and_returns_loss_grads_state():
    p = make_problem("gru", "mse_last", 1, True, False, seed_of("api"))
    loss, grads, h_last = bptt.task_loss_and_grads(
        p.params, p.inputs, p.targets, head="mse_last", lengths=p.lengths, h0=p.h0)
    assert set(grads) == set(p.params) and np.isfinite(loss)
    assert h_last.shape == p.h0.shape


def test_pad_sequences_is_time_major_with_lengths(rng):
    seqs = [rng.normal(size=(n, 3)) for n in (2, 5, 1)]
    x, lengths = heads.pad_sequences(seqs)
    assert x.shape == (5, 3, 3) and lengths.tolist() == [2, 5, 1]
    assert np.array_equal(x[:2, 0], seqs[0]) and not x[2:, 0].any()


@pytest.mark.parametrize("bad, message", [
    (dict(head="softmax_middle"), "unknown head 'softmax_middle': choose one of softmax_each, "
                                  "softmax_last, mse_each, mse_last"),
    (dict(lengths=[1, 2]), "lengths has shape"),
    (dict(lengths=[0, 2, 9]), "lengths must be between 1 and T = 4 (the padded length), got 0"),
    # a sequence of no step: its "last step" would be step −1, the padded end (silently)
    (dict(lengths=[0, 2, 2]), "lengths must be between 1 and T = 4 (the padded length), got 0"),
    (dict(lengths=[1, 2, 9]), "lengths must be between 1 and T = 4 (the padded length), got 9"),
    (dict(lengths=[1, 2, 5]), "lengths must be between 1 and T = 4 (the padded length), got 5"),
    (dict(lengths=[1.5, 2, 2]), "integers"),
    # a float too large for int64, named as given (cast first, it was −2^63 with a warning)
    (dict(lengths=[1, 2, 1e30]), "lengths must be between 1 and T = 4 (the padded length), "
                                 "got 1e+30"),
    (dict(targets=np.zeros((3,))), "integer labels"),
    (dict(targets=np.array([0, 1, 7])), "outside [0, 2)"),
    (dict(targets=np.array([0, 1, 2])), "targets hold a label outside [0, 2) (output_size V = 2)"),
    # a negative label would pick a class from the end (softmax_each: the previous row's)
    (dict(targets=np.array([0, -1, 1])), "targets hold a label outside [0, 2) (output_size V = 2)"),
    (dict(head="softmax_each", targets=np.array([[0, 1, 1]] * 3 + [[1, -1, 0]])),
     "targets hold a label outside [0, 2) (output_size V = 2)"),
    (dict(head="mse_last", targets=np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]])),
     "targets contain NaN or inf on a real step"),
    (dict(targets=np.zeros((4, 3), dtype=int)), "expected (3,)"),
    (dict(targets=np.array([0, 1])),
     "targets of head 'softmax_last' have shape (2,), expected (3,)"),
    (dict(lengths=[[1, 2], [3]]), "lengths must be a rectangular array"),
    (dict(targets=[[0, 1], [1]]), "targets must be a rectangular array"),
])
def test_bad_arguments_are_one_clear_error(bad, message):
    rng = np.random.default_rng(0)
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng)
    args = dict(inputs=rng.normal(size=(4, 3, 2)), targets=np.array([0, 1, 1]),
                head="softmax_last", lengths=None)
    args.update(bad)
    with pytest.raises(bptt.BpttError, match=re.escape(message)):
        bptt.task_loss_and_grads(params, **args)


@pytest.mark.parametrize("head", heads.HEADS)
def test_whole_float_lengths_are_the_lengths_they_hold(head):
    """lengths as floats (3.0: a column of a float table) are the integers they hold."""
    p = make_problem("rnn", head, 1, True, False, seed_of("float lengths"))
    ints = efficient(p)
    floats = efficient(p._replace(lengths=p.lengths.astype(np.float64)))
    assert floats.loss == ints.loss
    assert all(np.array_equal(floats.grads[k], g) for k, g in ints.grads.items())
    assert np.array_equal(floats.state, ints.state)


def test_forward_and_loss_refuse_an_unknown_head():
    """Not only backprop: the forward alone (predictions) names the heads too."""
    rng = np.random.default_rng(0)
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng)
    x = rng.normal(size=(4, 3, 2))
    message = re.escape("unknown head 'softmax_first': choose one of softmax_each, "
                        "softmax_last, mse_each, mse_last")
    with pytest.raises(bptt.BpttError, match=message):
        heads.forward(params, x, "softmax_first")
    with pytest.raises(bptt.BpttError, match=message):
        heads.loss(params, x, np.zeros(3, int), "softmax_first")


@pytest.mark.parametrize("head", ["softmax_each", "softmax_last"])
def test_labels_of_any_integer_type_give_the_same_result(head):
    """Labels come back from the check in numpy's index type (uint64 + int64 is float64 in
    numpy: the language model's loss used to raise IndexError on uint64 labels), and uint64
    labels give the loss and gradients of the same int64 labels."""
    p = make_problem("gru", head, 1, True, True, seed_of("uint64"))
    T, B = p.inputs.shape[:2]
    V = p.params["Why"].shape[0]
    checked = heads.check_head_targets(head, p.targets.astype(np.uint64), T, B, V, p.lengths,
                                       np.float64)
    assert checked.dtype == np.intp
    args = dict(head=head, lengths=p.lengths, h0=p.h0)
    loss, grads, _ = bptt.task_loss_and_grads(p.params, p.inputs, p.targets, **args)
    other, other_grads, _ = bptt.task_loss_and_grads(
        p.params, p.inputs, p.targets.astype(np.uint64), **args)
    assert other == loss
    assert all(np.array_equal(other_grads[k], g) for k, g in grads.items())


@pytest.mark.parametrize("head", ["mse_each", "mse_last"])
def test_one_regression_output_may_drop_its_axis(head):
    """V = 1: targets (T, B) or (B,) are the targets (T, B, 1) or (B, 1)."""
    rng = np.random.default_rng(3)
    params = bptt.init_params("gru", 2, 3, 1, rng=rng, dtype=np.float64)
    x = rng.normal(size=(4, 3, 2))
    r = rng.normal(size=(4, 3) if head == "mse_each" else (3,))
    loss, grads, _ = bptt.task_loss_and_grads(params, x, r, head=head)
    with_axis, with_axis_grads, _ = bptt.task_loss_and_grads(params, x, r[..., None], head=head)
    assert loss == with_axis
    assert all(np.array_equal(grads[k], with_axis_grads[k]) for k in params)


@pytest.mark.parametrize("head", ["mse_each", "mse_last"])
def test_integer_regression_targets_are_the_numbers_they_hold(head):
    """Integer targets (counts, say) are numbers like any other: the loss and gradients of the
    same values as floats."""
    rng = np.random.default_rng(5)
    params = bptt.init_params("lstm", 2, 3, 2, rng=rng, dtype=np.float64)
    x = rng.normal(size=(4, 3, 2))
    r = rng.integers(-3, 4, size=(4, 3, 2) if head == "mse_each" else (3, 2))
    loss, grads, _ = bptt.task_loss_and_grads(params, x, r, head=head, lengths=[4, 2, 3])
    as_float, float_grads, _ = bptt.task_loss_and_grads(params, x, r.astype(float), head=head,
                                                        lengths=[4, 2, 3])
    assert loss == as_float
    assert all(np.array_equal(grads[k], float_grads[k]) for k in params)


@pytest.mark.parametrize("head", ["mse_each", "mse_last"])
def test_regression_targets_are_taken_in_the_models_dtype(head):
    """float64 targets of a float32 model: the loss and float32 gradients of the targets cast
    to float32 (a float64 residual would make float64 gradients for float32 weights)."""
    rng = np.random.default_rng(4)
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng, dtype=np.float32)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    r = rng.normal(size=(4, 3, 2) if head == "mse_each" else (3, 2))
    loss, grads, _ = bptt.task_loss_and_grads(params, x, r, head=head)
    cast, cast_grads, _ = bptt.task_loss_and_grads(params, x, r.astype(np.float32), head=head)
    assert loss == cast
    for key, g in grads.items():
        assert g.dtype == np.float32 and np.array_equal(g, cast_grads[key]), key


def test_regression_targets_too_large_for_the_models_dtype(recwarn):
    """float64 targets of a float32 model: a number beyond float32's range on a padded step is
    ignored like any padding (it was a RuntimeWarning, "overflow encountered in cast"), and on
    a real step named as too large (it was "NaN or inf", after that warning)."""
    rng = np.random.default_rng(6)
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng, dtype=np.float32)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    r = rng.normal(size=(4, 3, 2))
    lengths = [4, 3, 4]
    loss, _, _ = bptt.task_loss_and_grads(params, x, r, head="mse_each", lengths=lengths)
    r[3, 1] = 1e300  # a padded step
    assert bptt.task_loss_and_grads(params, x, r, head="mse_each", lengths=lengths)[0] == loss
    r[0, 0, 1] = -1e300  # a real step
    with pytest.raises(bptt.BpttError, match=re.escape(
            "targets hold numbers too large for float32, the weights' dtype, on a real step: "
            "scale them, or use float64 weights")):
        bptt.task_loss_and_grads(params, x, r, head="mse_each", lengths=lengths)
    with pytest.raises(bptt.BpttError, match="targets contain NaN or inf on a real step"):
        bptt.task_loss_and_grads(params, x, np.full((3, 2), np.inf), head="mse_last")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_pad_sequences_refuses_sequences_of_different_feature_sizes():
    with pytest.raises(bptt.BpttError, match="every sequence must have the same number of "
                                             "features D"):
        heads.pad_sequences([np.zeros((2, 3)), np.ones((4, 1))])


@pytest.mark.parametrize(
    "sequences, dtype, message",
    [
        (None, np.float64, r"^sequences must be a list of \(T_b, D\) arrays, got NoneType"),
        ("abc", np.float64, r"^sequences must be a list of \(T_b, D\) arrays, got str"),
        ([[[1.0, 2.0], [3.0]]], np.float64, r"^sequence 0 must be a rectangular array"),
        ([np.array([["a", "b"]])], np.float64, r"^sequence 0 must hold real numbers, got <U1"),
        ([np.ones((2, 2), complex)], np.float64, r"^sequence 0 must hold real numbers, got "
                                                 "complex128"),
        ([np.ones((2, 2))], "floot", r"^dtype must be float32 or float64, got 'floot'"),
        ([np.full((2, 2), 1.5)], np.int64, r"^dtype must be float32 or float64"),
        # nothing to pad was a ValueError of max() over no lengths
        ([], np.float64, r"^no sequences to pad$"),
        # 1-D was an IndexError (no D); a sequence of no step a length 0, refused only later
        ([np.ones((2, 2)), np.ones(3)], np.float64,
         r"^every sequence must be a 2-D array \(T_b, D\) with T_b >= 1$"),
        ([np.ones((2, 2, 1))], np.float64,
         r"^every sequence must be a 2-D array \(T_b, D\) with T_b >= 1$"),
        ([np.ones((2, 2)), np.ones((0, 2))], np.float64,
         r"^every sequence must be a 2-D array \(T_b, D\) with T_b >= 1$"),
    ],
)
def test_pad_sequences_names_what_cannot_be_padded(sequences, dtype, message):
    """A ragged sequence or strings were numpy's ValueError, None a TypeError (no len()),
    complex values lost their imaginary part with a ComplexWarning, and dtype=int truncated
    1.5 to 1 silently."""
    with pytest.raises(bptt.BpttError, match=message):
        heads.pad_sequences(sequences, dtype=dtype)


def test_pad_sequences_takes_boolean_features_as_0_and_1():
    """Binary features (a bool array) are real numbers: True is 1, False 0."""
    x, lengths = heads.pad_sequences([np.array([[True, False]]),
                                      np.array([[False, False], [True, True]])])
    assert x.dtype == np.float64 and lengths.tolist() == [1, 2]
    np.testing.assert_array_equal(x, [[[1, 0], [0, 0]], [[0, 0], [1, 1]]])


def test_pad_sequences_takes_any_iterable_of_sequences():
    """A generator was TypeError: object of type 'generator' has no len()."""
    x, lengths = heads.pad_sequences(np.ones((n, 2)) for n in (2, 3))
    assert x.shape == (3, 2, 2) and lengths.tolist() == [2, 3]
