"""cells/common.py: the input projection in rows and in columns, and the input weights' gradient."""

from __future__ import annotations

import numpy as np
import pytest

from bptt.cells import common


@pytest.fixture
def W_b(rng):
    G, D = 12, 9
    return rng.normal(size=(G, D)).astype(np.float32), rng.normal(size=G).astype(np.float32)


@pytest.mark.parametrize("T, B", [(2, 1), (3, 2), (7, 3)])  # fewer ids than columns, and more
def test_input_projection_of_ids_is_the_one_hot_product_with_the_bias(W_b, rng, T, B):
    W, b = W_b
    ids = rng.integers(0, W.shape[1], size=(T, B))
    x = np.eye(W.shape[1], dtype=np.float32)[ids]
    expected = x @ W.T.astype(np.float64) + b
    out = np.full((T, B, W.shape[0]), 7.0, np.float32)
    got = common.input_projection(W, ids, b, out)
    assert got is out
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # each entry is one float32 sum W[g, id] + b[g], whichever way it was gathered
    np.testing.assert_array_equal(got, W.T[ids] + b)
    np.testing.assert_array_equal(common.input_projection(W, ids), W.T[ids])


@pytest.mark.parametrize("bad", [-1, 9])  # D = 9: one below, one past the vocabulary
@pytest.mark.parametrize("T", [2, 20])
def test_input_projection_raises_on_an_id_outside_the_vocabulary(W_b, T, bad):
    W, b = W_b
    ids = np.zeros((T, 1), dtype=np.int64)
    ids[-1] = bad
    with pytest.raises(IndexError, match=r"token id outside \[0, 9\)"):
        common.input_projection(W, ids, b, np.empty((T, 1, W.shape[0]), np.float32))


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("dense", [False, True])
def test_input_columns_are_the_rows_transposed(W_b, rng, B, dense):
    W, b = W_b
    T, (G, D) = 4, W.shape
    inputs = rng.normal(size=(T, B, D)).astype(np.float32) if dense else rng.integers(0, D, (T, B))
    rows = common.input_projection(W, inputs, b)
    out = np.full((T, G, B), 7.0, np.float32)
    got = common.input_columns(W, inputs, b, out)
    assert got is out
    np.testing.assert_allclose(got, rows.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, 9])
@pytest.mark.parametrize("B", [1, 3])
def test_input_columns_raise_on_an_id_outside_the_vocabulary(W_b, B, bad):
    W, b = W_b
    ids = np.zeros((3, B), dtype=np.int64)
    ids[1, -1] = bad
    with pytest.raises(IndexError, match=r"token id outside \[0, 9\)"):
        common.input_columns(W, ids, b, np.empty((3, W.shape[0], B), np.float32))


def test_weight_gradient_of_ids_writes_into_out(W_b, rng):
    W, _ = W_b
    (G, D), T, B = W.shape, 5, 2
    ids = rng.integers(0, D, (T, B))
    dJ_dproj = rng.normal(size=(T, B, G))
    expected = np.einsum("tbg,tbd->gd", dJ_dproj, np.eye(D)[ids])
    out = np.full((G, D), 7.0)
    assert common.weight_gradient(dJ_dproj, ids, D, out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    fresh = common.weight_gradient(dJ_dproj, ids, D)
    assert fresh.flags.c_contiguous
    np.testing.assert_array_equal(fresh, out)


def test_weight_gradient_of_ids_keeps_its_one_hot_rows_in_work(W_b, rng):
    # a fresh (T·B, D) one-hot array each step cost 0.3 ms of page faults at T·B = 1600
    W, _ = W_b
    (G, D), T, B = W.shape, 5, 2
    work = common.Buffers()
    for _ in range(2):
        ids = rng.integers(0, D, (T, B))
        dJ_dproj = rng.normal(size=(T, B, G))
        got = common.weight_gradient(dJ_dproj, ids, D, None, work)
        np.testing.assert_array_equal(got, common.weight_gradient(dJ_dproj, ids, D))
        kept = common.empty(work, "one_hot", (T * B, D), dJ_dproj.dtype)
        np.testing.assert_array_equal(kept, np.eye(D)[ids.reshape(-1)])
    # rows too wide for the one-hot product: the scatters need no such memory, none is kept
    wide = common.Buffers()
    common.weight_gradient(rng.normal(size=(T, B, 2048)), ids, 100, None, wide)
    assert "one_hot" not in wide._arrays


def test_buffers_keep_an_array_while_its_shape_and_dtype_stay_the_same():
    work = common.Buffers()
    first = work.get("x", (2, 3), np.dtype(np.float32))
    assert work.get("x", (2, 3), np.dtype(np.float32)) is first
    # another dtype (or shape) is another array: float64 work must not land in float32 memory
    wider = work.get("x", (2, 3), np.dtype(np.float64))
    assert wider.dtype == np.float64 and wider is not first
    assert work.get("x", (3, 2), np.dtype(np.float64)).shape == (3, 2)


@pytest.mark.parametrize(("A", "truncate", "T"), [(2, None, 5), (1, 2, 5), (4, 2, 5), (5, 9, 4)])
def test_a_sweep_refuses_rows_of_age_its_window_does_not_have(rng, A, truncate, T):
    # the rows of dJ_dh_local set the window: A = 4 with truncate=2 used to run as K = 4
    from bptt.cells import rnn
    from bptt.errors import BpttError

    p = rnn.init_layer(rng, 3, 4, True, np.float64)
    cache = rnn.sequence_forward(p, rng.integers(0, 3, (T, 2)), (np.zeros((2, 4)),))
    expected = 1 if truncate is None else min(truncate, T)
    with pytest.raises(BpttError, match=f"dJ_dh_local has {A} rows of age, but "
                       f"truncate={truncate} over T = {T} steps needs {expected}"):
        rnn.sequence_backward(p, cache, np.zeros((A, T, 2, 4)), truncate)
    common.check_ages(expected, truncate, T)  # and the right count passes


def test_as_columns_gives_the_array_of_columns_itself_a_view_of_part_of_it_or_a_copy():
    """The rows view of a whole array of columns comes back as that array (the same object
    at every call, whose per-step views a sweep keeps); a view of part of one stays that
    view; rows that are no view of columns are copied into the work buffer."""
    columns = np.empty((2, 3, 4, 5))  # an array of its own, as the work buffers are
    columns[...] = np.arange(columns.size).reshape(columns.shape)
    rows = columns.transpose(0, 1, 3, 2)
    assert common.as_columns(rows, None, "c") is columns
    part = common.as_columns(rows[1:], None, "c")
    assert part is not columns and np.shares_memory(part, columns)
    np.testing.assert_array_equal(part, columns[1:])
    work = common.Buffers()
    copied = common.as_columns(np.ascontiguousarray(rows), work, "c")
    assert not np.shares_memory(copied, columns)
    np.testing.assert_array_equal(copied, columns)
    assert common.as_columns(np.ascontiguousarray(rows), work, "c") is copied  # kept in work
