"""Each analytic partial in bptt.ops against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from bptt import ops
from bptt.gradcheck import numerical_gradient, relative_error


def fd(f, x):
    return numerical_gradient(f, x)


def test_softmax_rows_sum_to_one_and_survive_huge_logits(rng):
    y = rng.normal(size=(4, 3, 7)) * 1000
    p = ops.softmax(y)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(ops.log_softmax(y)), p, rtol=1e-12, atol=1e-300)


def test_cross_entropy_is_the_total_and_its_partial_is_p_minus_onehot(rng):
    y = rng.normal(size=(5, 3, 6))
    labels = rng.integers(0, 6, size=(5, 3))
    J, p = ops.cross_entropy_forward(y, labels)
    by_hand = -sum(
        np.log(np.exp(y[t, b, labels[t, b]]) / np.exp(y[t, b]).sum())
        for t in range(5)
        for b in range(3)
    )
    assert J == pytest.approx(by_hand, rel=1e-13)
    dJ_dy = ops.cross_entropy_backward(p, labels)
    expected = p.copy()
    for t in range(5):
        for b in range(3):
            expected[t, b, labels[t, b]] -= 1
    np.testing.assert_array_equal(dJ_dy, expected)
    numeric = fd(lambda: ops.cross_entropy_forward(y, labels)[0], y)
    assert relative_error(dJ_dy, numeric) < 1e-8


def test_cross_entropy_stable_for_huge_logits():
    y = np.array([[1000.0, -1000.0, 0.0]])
    J, p = ops.cross_entropy_forward(y, np.array([1]))
    assert J == pytest.approx(2000.0)
    assert np.isfinite(ops.cross_entropy_backward(p, np.array([1]))).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_further_apart_than_the_float_range_give_p_0_silently(dtype):
    # y − max y overflows to −inf: e^−inf = 0 is the right p, and no RuntimeWarning may leak
    big = np.finfo(dtype).max / 2
    y = np.array([[big, -big, 0.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        J, p = ops.cross_entropy_forward(y, np.array([0]))
        np.testing.assert_array_equal(ops.softmax(y), [[1, 0, 0]])
        J2, dJ_dy = ops.cross_entropy_and_partial(y.copy(), np.array([0]))
    assert J == J2 == 0.0
    np.testing.assert_array_equal(p, [[1, 0, 0]])
    np.testing.assert_array_equal(dJ_dy, [[0, 0, 0]])


@pytest.mark.parametrize(
    "forward, backward",
    [(ops.tanh_forward, ops.tanh_backward), (ops.sigmoid_forward, ops.sigmoid_backward)],
    ids=["tanh", "sigmoid"],
)
def test_activation_backward_from_its_output(rng, forward, backward):
    a = rng.normal(size=(3, 5)) * 3
    upstream = rng.normal(size=(3, 5))
    analytic = backward(upstream, forward(a))
    numeric = fd(lambda: float((upstream * forward(a)).sum()), a)
    assert relative_error(analytic, numeric) < 1e-8


def test_sigmoid_is_stable_at_extremes():
    s = ops.sigmoid_forward(np.array([-800.0, 0.0, 800.0]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])


def test_embedding_is_a_column_gather_and_its_backward_a_scatter_add(rng):
    H, D = 4, 6
    W = rng.normal(size=(H, D))
    ids = rng.integers(0, D, size=(5, 3))
    out = ops.embedding_forward(W, ids)
    onehot = np.eye(D)[ids]
    np.testing.assert_allclose(out, onehot @ W.T, rtol=1e-15)
    upstream = rng.normal(size=(5, 3, H))
    analytic = ops.embedding_backward(upstream, ids, D)
    numeric = fd(lambda: float((upstream * ops.embedding_forward(W, ids)).sum()), W)
    assert analytic.shape == (H, D)
    assert relative_error(analytic, numeric) < 1e-8
    # repeated ids accumulate: every column is the sum over the rows that chose it
    np.testing.assert_allclose(analytic, np.einsum("tbh,tbd->hd", upstream, onehot), rtol=1e-13)


def test_linear_backward(rng):
    x = rng.normal(size=(4, 2, 3))
    W = rng.normal(size=(5, 3))
    b = rng.normal(size=5)
    upstream = rng.normal(size=(4, 2, 5))
    dJ_dx, dJ_dW, dJ_db = ops.linear_backward(upstream, x, W)

    def f():
        return float((upstream * ops.linear_forward(x, W, b)).sum())

    assert relative_error(dJ_dx, fd(f, x)) < 1e-8
    assert relative_error(dJ_dW, fd(f, W)) < 1e-8
    assert relative_error(dJ_db, fd(f, b)) < 1e-8


def test_cross_entropy_and_partial_is_forward_then_backward_in_place(rng):
    y = rng.normal(size=(12, 7)) * 30
    labels = rng.integers(0, 7, size=12)
    J, p = ops.cross_entropy_forward(y, labels)
    expected = ops.cross_entropy_backward(p, labels)
    logits = y.copy()
    J2, dJ_dy = ops.cross_entropy_and_partial(logits, labels, out=logits)
    assert dJ_dy is logits
    assert J2 == pytest.approx(J, rel=1e-13)
    np.testing.assert_allclose(dJ_dy, expected, rtol=1e-12, atol=1e-15)


def test_cross_entropy_and_partial_with_a_mask_is_the_masked_forward_then_backward(rng):
    y = rng.normal(size=(12, 7)) * 30
    labels = rng.integers(0, 7, size=12)
    mask = (rng.random(12) < 0.5).astype(float)
    J, p = ops.cross_entropy_masked_forward(y, labels, mask)
    expected = ops.cross_entropy_masked_backward(p, labels, mask)
    J2, dJ_dy = ops.cross_entropy_and_partial(y.copy(), labels, mask=mask)
    assert J2 == pytest.approx(J, rel=1e-13)
    np.testing.assert_allclose(dJ_dy, expected, rtol=1e-12, atol=1e-15)
    assert not dJ_dy[mask == 0].any()


def test_sigmoid_is_the_logistic_function_without_masks(rng):
    a = np.concatenate([rng.normal(size=50) * 10, [-1e4, -88.8, 0.0, 88.8, 1e4]])
    # ½ (1 + tanh(a/2)) is exact to round-off relative to 1: in the far negative tail, where
    # σ(a) < 1e-16, it is 0 or a few ulp of 1 off (absolute), as any σ added to 1 would be
    with np.errstate(over="ignore"):  # the textbook formula overflows e^{−a} (to a right 0)
        textbook = 1 / (1 + np.exp(-a))
    np.testing.assert_allclose(ops.sigmoid_forward(a), textbook, rtol=1e-14, atol=1e-16)
    s32 = ops.sigmoid_forward(a.astype(np.float32))
    assert s32.dtype == np.float32 and np.isfinite(s32).all()
    out = np.empty_like(a)
    assert ops.sigmoid_forward(a, out=out) is out


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_any_outside_finds_an_integer_below_0_or_at_n_and_above(dtype):
    inside = np.array([[0, 3], [6, 2]], dtype=dtype)
    assert not ops.any_outside(inside, 7) and ops.any_outside(inside, 6)
    assert not ops.any_outside(inside[:, :0], 1)  # empty
    assert not ops.any_outside(inside[:, ::-1].T, 7)  # strided
    if np.dtype(dtype).kind == "i":
        below = inside.copy()
        below[1, 0] = -1
        assert ops.any_outside(below, 7) and ops.any_outside(below.T, 100)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_any_outside_finds_a_negative_integer_when_n_exceeds_its_type(dtype):
    """int8 ids of a vocabulary of 300: −100 read as uint8 is 156 < 300, and passed."""
    top = int(np.iinfo(dtype).max)
    for n in (top, top + 1, 2 * top, 10**6):
        assert not ops.any_outside(np.array([0, top - 1], dtype), n)
        for negative in (-1, -top // 2, -top - 1):
            assert ops.any_outside(np.array([0, negative], dtype), n), (n, negative)


def _rows_in_order(upstream, ids, D):
    """Σ of the rows of each id, added one row after another in order (float32 like them)."""
    H = upstream.shape[-1]
    expected = np.zeros((D, H), upstream.dtype)
    for row, d in enumerate(ids.reshape(-1)):
        expected[d] += upstream.reshape(-1, H)[row]
    return expected


@pytest.mark.parametrize("H", [3, ops.WIDE_ROWS + 5])
def test_embedding_backward_wide_and_narrow_rows_add_in_the_same_order(rng, H):
    D = ops.ONE_HOT_MAX_COLUMNS + 1  # past the one-hot GEMM: the two scatter-adds
    ids = rng.integers(0, D, size=(9, 4))
    upstream = rng.normal(size=(9, 4, H)).astype(np.float32)
    out = np.full((H, D), 7.0, np.float32)
    got = ops.embedding_backward(upstream, ids, D, out=out)
    assert got is out
    np.testing.assert_array_equal(got.T, _rows_in_order(upstream, ids, D))
    np.testing.assert_array_equal(ops.embedding_backward(upstream, ids, D), got)


@pytest.mark.parametrize(("D", "H", "strided"), [(6, 3, False), (100, 1024, False),
                                                 (100, 2048, True)])
def test_embedding_backward_of_a_small_vocabulary_is_the_one_hot_product(rng, D, H, strided):
    # small D·H, or small D and strided rows (the columns an LSTM sweep leaves)
    assert D <= ops.ONE_HOT_MAX_COLUMNS and (D * H <= ops.ONE_HOT_MAX_SIZE or strided)
    ids = rng.integers(0, D, size=(50, 8))
    ids[0, :3] = ids[1, 0]  # repeated ids accumulate
    upstream = rng.normal(size=(50, 8, H)).astype(np.float32)
    if strided:
        upstream = np.asfortranarray(upstream.reshape(400, H)).reshape(50, 8, H)
    out = np.full((H, D), 7.0, np.float32)
    got = ops.embedding_backward(upstream, ids, D, out=out)
    assert got is out
    exact = np.einsum("tbh,tbd->hd", upstream.astype(np.float64), np.eye(D)[ids])
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
    # the same sizes give the same bits on every call
    np.testing.assert_array_equal(ops.embedding_backward(upstream, ids, D), got)


def test_embedding_backward_writes_its_one_hot_rows_into_the_memory_given(rng):
    D, H = 6, 3
    ids = rng.integers(0, D, size=(5, 2))
    upstream = rng.normal(size=(5, 2, H)).astype(np.float32)
    one_hot = np.full((10, D), 7.0, np.float32)
    got = ops.embedding_backward(upstream, ids, D, one_hot=one_hot)
    np.testing.assert_array_equal(one_hot, np.eye(D, dtype=np.float32)[ids.reshape(-1)])
    np.testing.assert_array_equal(got, ops.embedding_backward(upstream, ids, D))
    # an id outside [0, D) is not clipped into it: the same IndexError as without memory
    ids[2, 1] = D
    with pytest.raises(IndexError):
        ops.embedding_backward(upstream, ids, D)
    with pytest.raises(IndexError):
        ops.embedding_backward(upstream, ids, D, one_hot=one_hot)


def test_sigmoid_slope_is_the_derivative_of_sigma_from_its_output(rng):
    a = rng.normal(size=(4, 5)) * 3
    out = np.empty_like(a)
    got = ops.sigmoid_slope(ops.sigmoid_forward(a), out=out)
    assert got is out
    # ∂σ/∂a against central differences: Σ (∂σ/∂a) ⊙ 1 is the gradient of Σ σ(a)
    numeric = fd(lambda: float(ops.sigmoid_forward(a).sum()), a)
    assert relative_error(got, numeric) < 1e-8
    np.testing.assert_array_equal(got, ops.sigmoid_backward(np.ones_like(a), ops.sigmoid_forward(a)))


def test_cross_entropy_and_partial_refuses_an_out_it_cannot_write_in_place(rng):
    """An ``out`` whose rows cannot be read as one flat array (columns of a wider array, or
    Fortran order) would make the flat view a copy: the 1 taken from each label's entry would
    be lost (∂J/∂y = p, silently).  It is refused instead."""
    y = rng.normal(size=(4, 3))
    labels = np.array([0, 2, 1, 1])
    for out in (np.empty((4, 5))[:, :3], np.empty((3, 4)).T):
        with pytest.raises(ValueError, match=r"out must be a C-contiguous \(N, V\) array"):
            ops.cross_entropy_and_partial(y, labels, out=out)


def test_cross_entropy_and_partial_of_logits_in_any_layout(rng):
    """Without ``out``, logits in Fortran order or a transposed view are logits like any
    other (they were refused as an ``out`` "must be a C-contiguous (N, V) array", which the
    caller never gave); y is left as it was."""
    y = rng.normal(size=(6, 4))
    labels = rng.integers(0, 4, size=6)
    J, p = ops.cross_entropy_forward(y, labels)
    expected = ops.cross_entropy_backward(p, labels)
    for logits in (np.asfortranarray(y), np.ascontiguousarray(y.T).T):
        before = logits.copy()
        J2, dJ_dy = ops.cross_entropy_and_partial(logits, labels)
        assert J2 == pytest.approx(J, rel=1e-13)
        np.testing.assert_allclose(dJ_dy, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize("lengths", [None, np.array([3, 3])])
def test_last_step_forward_returns_an_array_of_its_own(rng, lengths):
    """Both branches gather into new memory: what a "last" head returns as its outputs must
    not be a view of the logits (which a workspace overwrites at its next call)."""
    x = rng.normal(size=(3, 2, 4))
    before = x.copy()
    last = ops.last_step_forward(x, lengths)
    np.testing.assert_array_equal(last, x[-1])
    last += 1
    np.testing.assert_array_equal(x, before)
