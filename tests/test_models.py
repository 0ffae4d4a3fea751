"""The network API: finite differences for every parameter and h0, state forms, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt.gradcheck import compare, compare_arrays, numerical_grads

FD_TOL = 1e-7


def problem(rng, T, B, D, H, V, bias=True, ids=True):
    params = bptt.init_params("rnn", D, H, V, bias=bias, rng=rng, dtype=np.float64)
    for key in ("bh", "by"):
        if key in params:
            params[key] = rng.normal(size=params[key].shape)
    inputs = rng.integers(0, D, size=(T, B)) if ids else rng.normal(size=(T, B, D))
    return params, inputs, rng.integers(0, V, size=(T, B)), rng.normal(size=(B, H)) * 0.5


@pytest.mark.parametrize(
    "T, B, D, H, V, bias, ids",
    [
        (1, 1, 3, 4, 3, True, True),
        (1, 3, 2, 3, 4, False, False),
        (5, 2, 4, 5, 6, True, False),
        (7, 3, 5, 3, 5, False, True),
    ],
)
def test_finite_differences_agree_for_every_parameter_and_h0(rng, T, B, D, H, V, bias, ids):
    params, inputs, targets, h0 = problem(rng, T, B, D, H, V, bias, ids)
    result = bptt.backprop(params, inputs, targets, h0=h0)
    numeric, dh0 = numerical_grads(params, inputs, targets, h0)
    for key, c in compare(result.grads, numeric).items():
        assert c.max_rel < FD_TOL, f"{key}: rel {c.max_rel:.3g} at {c.worst}"
    c = compare_arrays("h0", result.dJ_dstate0, dh0)
    assert c.max_rel < FD_TOL, f"h0: rel {c.max_rel:.3g}"


def test_finite_differences_agree_over_a_hundred_steps(rng):
    params, inputs, targets, h0 = problem(rng, 100, 2, 4, 5, 4)
    result = bptt.backprop(params, inputs, targets, h0=h0)
    numeric, dh0 = numerical_grads(params, inputs, targets, h0, sample=12, rng=rng)
    for key, c in compare(result.grads, numeric).items():
        assert c.max_rel < FD_TOL, f"{key}: rel {c.max_rel:.3g} at {c.worst}"
    assert compare_arrays("h0", result.dJ_dstate0, dh0).max_rel < FD_TOL


def test_init_params_keys_shapes_and_pytorch_init_range():
    p = bptt.init_params("rnn", 3, 16, 5, bias=True, rng=np.random.default_rng(0))
    assert {k: v.shape for k, v in p.items()} == {
        "Wxh": (16, 3), "Whh": (16, 16), "bh": (16,), "Why": (5, 16), "by": (5,)
    }
    assert all(np.abs(v).max() <= 1 / 4 for v in p.values())
    seed_net = bptt.init_params("rnn", 3, 4, 5, bias=False, rng=np.random.default_rng(0))
    assert sorted(seed_net) == ["Whh", "Why", "Wxh"]
    again = bptt.init_params("rnn", 3, 16, 5, bias=True, rng=np.random.default_rng(0))
    assert all(np.array_equal(p[k], again[k]) for k in p)
    assert bptt.init_params("rnn", 2, 2, 2, dtype=np.float32)["Whh"].dtype == np.float32


def test_h_last_is_the_forward_state_and_keeps_the_form_of_h0(rng):
    params, inputs, targets, h0 = problem(rng, 4, 2, 3, 5, 3)
    _, _, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
    assert h_last.shape == (2, 5)
    _, _, h_layers = bptt.loss_and_grads(params, inputs, targets, h0=h0[None])
    assert h_layers.shape == (1, 2, 5)
    np.testing.assert_array_equal(h_layers[0], h_last)
    # carrying the state across two chunks equals one run over both
    full = bptt.forward(params, np.concatenate([inputs, inputs]), h0)
    first = bptt.forward(params, inputs, h0)
    second = bptt.forward(params, inputs, first.state)
    np.testing.assert_allclose(second.logits, full.logits[4:], rtol=1e-13)
    assert bptt.loss_and_grads(params, inputs, targets)[2].shape == (1, 2, 5)


def test_cell_is_read_off_the_shapes_and_can_be_checked(rng):
    params, inputs, targets, _ = problem(rng, 2, 1, 3, 4, 3)
    assert bptt.infer_cell(params) == "rnn"
    with pytest.raises(ValueError, match="cell='lstm' but params are those of a 'rnn'"):
        bptt.loss_and_grads(params, inputs, targets, cell="lstm")


def test_float32_runs_in_float32(rng):
    params = bptt.init_params("rnn", 3, 4, 3, rng=rng, dtype=np.float32)
    loss, grads, h = bptt.loss_and_grads(params, rng.integers(0, 3, (5, 2)),
                                         rng.integers(0, 3, (5, 2)))
    assert all(g.dtype == np.float32 for g in grads.values()) and h.dtype == np.float32
    assert np.isfinite(loss)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_window_of_T_steps_or_more_is_full_bptt_with_T_rows_of_age(rng, cell):
    # t − k < T <= K for every term: nothing is cut; K = 10^12 must not ask for 10^12 rows
    params = bptt.init_params(cell, 3, 4, 3, rng=rng, dtype=np.float64)
    inputs, targets = rng.integers(0, 3, (5, 2)), rng.integers(0, 3, (5, 2))
    full = bptt.backprop(params, inputs, targets)
    for K in (5, 6, 10**12):
        windowed = bptt.backprop(params, inputs, targets, truncate=K)
        assert windowed.dJ_dh[0].shape == (5, 5, 2, 4)
        np.testing.assert_allclose(windowed.dJ_dh[0].sum(axis=0), full.dJ_dh[0][0], rtol=1e-13)
        for key in params:
            np.testing.assert_allclose(windowed.grads[key], full.grads[key], rtol=1e-13)


def bad_cases():
    rng = np.random.default_rng(0)
    params, inputs, targets, h0 = problem(rng, 4, 2, 3, 5, 6)
    nan_params = dict(params, Whh=params["Whh"].copy())
    nan_params["Whh"][0, 0] = np.nan
    wrong_shape = dict(params, Whh=np.zeros((5, 4)))
    return [
        ("inputs", dict(inputs=np.full((4, 2), 3)), r"token id 3 outside \[0, 3\)"),
        ("inputs", dict(inputs=np.zeros((4, 2, 7))), r"inputs has shape \(4, 2, 7\), expected \(T, B, 3\)"),
        ("inputs", dict(inputs=np.zeros(4, int)), r"inputs has shape \(4,\)"),
        ("inputs", dict(inputs=np.zeros((4, 2, 3)) * np.nan), "inputs contains NaN"),
        ("inputs", dict(inputs=np.ones((4, 2, 3)) * 1j), "dense inputs must hold real numbers"),
        ("inputs", dict(inputs=np.full((4, 2, 3), "a")), "dense inputs must hold real numbers"),
        ("targets", dict(targets=np.zeros((3, 2), int)), r"targets has shape \(3, 2\), expected \(T, B\) = \(4, 2\)"),
        ("targets", dict(targets=np.full((4, 2), 6)), r"targets holds a label outside \[0, 6\)"),
        ("targets", dict(targets=np.zeros((4, 2))), "targets must be integer labels"),
        ("truncate", dict(truncate=-1), "truncate must be None or an integer >= 1, got -1"),
        ("truncate", dict(truncate=0), "truncate must be None or an integer >= 1, got 0"),
        ("truncate", dict(truncate=1.5), "truncate must be None or an integer >= 1"),
        ("h0", dict(h0=np.zeros((3, 5))), r"h0 has shape \(3, 5\), expected \(L, B, H\) = \(1, 2, 5\)"),
        ("h0", dict(h0=np.full((2, 5), np.inf)), "h0 contains NaN or inf"),
        ("h0", dict(h0=np.ones((2, 5)) * 1j), "h0 must hold real numbers, got dtype complex128"),
        ("params", dict(params=nan_params), r"params\['Whh'\] contains NaN or inf"),
        ("params", dict(params=wrong_shape), r"params\['Whh'\] has shape \(5, 4\)"),
        ("params", dict(params={k: v for k, v in params.items() if k != "Why"}), "Why"),
        ("params", dict(params=dict(params, extra=np.zeros(2))), "unexpected key 'extra'"),
    ]


@pytest.mark.parametrize("argument, change, message", bad_cases(),
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(bad_cases())])
def test_bad_arguments_raise_a_value_error_naming_them(argument, change, message):
    rng = np.random.default_rng(0)
    params, inputs, targets, h0 = problem(rng, 4, 2, 3, 5, 6)
    kwargs = dict(params=params, inputs=inputs, targets=targets, h0=h0)
    kwargs.update(change)
    for fn in (bptt.loss_and_grads, bptt.reference.loss_and_grads):
        with pytest.raises(ValueError, match=message):
            fn(**kwargs)


@pytest.mark.filterwarnings("error")  # (numpy's overflow warning of the cast, before)
def test_numbers_too_large_for_float32_weights_are_refused_not_run_as_inf():
    # h0 was checked before its cast to the weights' float32: 1e39 became inf and the loss
    # and gradients came back NaN; inputs were refused as "NaN or inf", which they were not
    params = bptt.init_params("lstm", 3, 4, 3, rng=np.random.default_rng(0), dtype=np.float32)
    ids = np.zeros((2, 1), np.int64)
    zeros, huge = np.zeros((1, 1, 4)), np.full((1, 1, 4), -1e39)
    cases = [
        (dict(inputs=np.full((2, 1, 3), 1e39)), "inputs"),
        (dict(inputs=ids, h0=(huge, zeros)), "h0"),
        (dict(inputs=ids, h0=(zeros, huge)), "c0"),
    ]
    for kwargs, name in cases:
        with pytest.raises(bptt.BpttError, match=f"^{name} holds numbers too large for float32, "
                           "the weights' dtype: scale them, or use float64 weights$"):
            bptt.loss_and_grads(params, targets=ids, **kwargs)
    with pytest.raises(bptt.BpttError, match=r"^h0 contains NaN or inf$"):
        bptt.loss_and_grads(params, ids, ids, h0=(np.full((1, 1, 4), np.nan), zeros))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_an_lstm_pair_given_as_the_state_of_another_cell_is_named(cell):
    # was only "h0 has shape (2, 1, 2, 4)": numpy had stacked the pair into one array
    params = bptt.init_params(cell, 3, 4, 3, rng=np.random.default_rng(0))
    ids = np.zeros((5, 2), np.int64)
    pair = (np.zeros((1, 2, 4)), np.zeros((1, 2, 4)))
    with pytest.raises(bptt.BpttError, match=rf"h0 has shape \(2, 1, 2, 4\), expected \(L, B, H\) "
                       rf"= \(1, 2, 4\): the state of a {cell} cell is h0 alone, not a tuple "
                       r"like the lstm's \(h0, c0\)$"):
        bptt.loss_and_grads(params, ids, ids, h0=pair)


def test_a_state_of_the_wrong_shape_is_said_to_be_a_pair_only_when_it_is_one():
    """The pair sentence is for an lstm's (h0, c0) given to a cell whose state is h0 alone: not
    for an lstm's own pair, nor for one array of the wrong shape."""
    ids = np.zeros((5, 2), np.int64)
    lstm = bptt.init_params("lstm", 3, 4, 3, rng=np.random.default_rng(0))
    with pytest.raises(bptt.BpttError, match=r"^h0 has shape \(1, 2, 5\), expected \(L, B, H\) "
                       r"= \(1, 2, 4\)$"):
        bptt.loss_and_grads(lstm, ids, ids, h0=(np.zeros((1, 2, 5)), np.zeros((1, 2, 4))))
    rnn = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    with pytest.raises(bptt.BpttError, match=r"^h0 has shape \(2, 1, 2, 4\), expected \(L, B, H\) "
                       r"= \(1, 2, 4\)$"):
        bptt.loss_and_grads(rnn, ids, ids, h0=np.zeros((2, 1, 2, 4)))


def test_check_params_names_what_is_wrong_with_the_weights():
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    missing = {k: v for k, v in params.items() if k != "Why"}
    with pytest.raises(bptt.BpttError, match=r"params is missing 'Why'"):
        bptt.models.check_params(missing)
    for dtype in (np.int32, np.float16):
        other = {k: v.astype(dtype) for k, v in params.items()}
        with pytest.raises(bptt.BpttError, match=rf"params\['Whh'\] has dtype {np.dtype(dtype)}: "
                           "the weights must be float32 or float64"):
            bptt.models.check_params(other)
    for whh, what in ((params["Whh"][0], r"an array of shape \(4,\)"), ([[0.0]], "a list")):
        with pytest.raises(bptt.BpttError, match=rf"params\['Whh'\] must be a 2-D numpy array "
                           rf"\(G·H, H\), got {what}"):
            bptt.models.check_params(dict(params, Whh=whh))


def test_a_users_mistake_in_a_call_is_a_bptt_error_that_says_it():
    # a raw numpy ValueError or TypeError, or a message that contradicted itself, before
    params = bptt.init_params("lstm", 3, 4, 3, rng=np.random.default_rng(0))
    y = np.zeros((2, 2), np.int64)
    cases = [
        (lambda: bptt.loss_and_grads(params, [[1, 2], [0]], y), "inputs must be a rectangular"),
        (lambda: bptt.loss_and_grads(params, y, [[1, 2], [0]]), "targets must be a rectangular"),
        (lambda: bptt.infer_cell(None), "params must be a dict of arrays, got NoneType"),
        (lambda: bptt.loss_and_grads({**params, "by": list(params["by"])}, y, y),
         r"params\['by'\] must be a numpy array, got a list"),
        (lambda: bptt.loss_and_grads(params, y, y, h0=np.zeros((2, 4))),
         r"h0 of an lstm must be a pair \(h0, c0\)"),
        (lambda: bptt.loss_and_grads(params, y, y, cell="foo"),
         "unknown cell 'foo': choose one of rnn, lstm, gru"),  # as every message lists them
        (lambda: bptt.init_params("rnn", 3, 4, 3, bias="no"),  # ("no" is a true value)
         "bias must be True or False, got 'no'"),
        (lambda: bptt.loss_and_grads(params, y, y, h0=([[0.0] * 4, [0.0]], np.zeros((2, 4)))),
         "h0 must be a rectangular array"),
        (lambda: bptt.loss_and_grads({**params, "Why": params["Why"].tolist()}, y, y),
         r"params\['Why'\] must be a 2-D numpy array \(V, H\), got a list"),
        (lambda: bptt.loss_and_grads({**params, "Wxh": np.zeros((16, 0), np.float32)},
                                     np.zeros((2, 2, 0)), y),
         "the input size D and the output size V must be at least 1"),
    ]
    for call, message in cases:
        with pytest.raises(bptt.BpttError, match=message):
            call()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_layer_has_both_recurrent_biases_or_neither(cell):
    # one of the pair alone used to be ignored by the forward (bhh) or a KeyError (bxh)
    params = bptt.init_params(cell, 3, 4, 3, num_layers=2, rng=np.random.default_rng(0))
    for kept, dropped in (("bxh", "bhh"), ("bhh_l1", "bxh_l1")):
        partial = {k: v for k, v in params.items() if k != dropped}
        with pytest.raises(bptt.BpttError, match=rf"params has '{kept}' but not '{dropped}': "
                           "a layer has both biases or neither"):
            bptt.models.check_params(partial)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("D", [5, 300])  # 300: the scatter-add path of the W^xh gradient
def test_token_ids_and_labels_of_any_integer_type_give_the_same_result(rng, cell, D):
    """uint64 ids or labels used to be an IndexError (uint64 + int64 is float64 in numpy)."""
    params = bptt.init_params(cell, D, 4, 3, rng=rng, dtype=np.float64)
    ids, labels = rng.integers(0, D, (6, 2)), rng.integers(0, 3, (6, 2))
    loss, grads, _ = bptt.loss_and_grads(params, ids, labels)
    for dtype in (np.uint64, np.uint16, np.int32):
        other_loss, other_grads, _ = bptt.loss_and_grads(params, ids.astype(dtype),
                                                         labels.astype(dtype))
        assert other_loss == loss, dtype
        for key, g in grads.items():
            np.testing.assert_array_equal(other_grads[key], g, err_msg=f"{dtype} {key}")


def test_negative_narrow_ids_and_labels_of_a_large_vocabulary_are_refused(rng):
    """int8 −100 with D = V = 300 passed the range check (read unsigned, 156 < 300): an id
    gathered W^xh's column −100, a label took its loss from the row before (no error)."""
    params = bptt.init_params("rnn", 300, 4, 300, rng=rng, dtype=np.float64)
    good, bad = np.full((3, 2), 5, np.int8), np.full((3, 2), 5, np.int8)
    bad[2, 1] = -100
    for loss_and_grads in (bptt.loss_and_grads, bptt.reference.loss_and_grads):
        with pytest.raises(bptt.BpttError, match=r"^inputs holds token id -100 outside"):
            loss_and_grads(params, bad, good)
        with pytest.raises(bptt.BpttError, match=r"^targets holds a label outside \[0, 300\)"):
            loss_and_grads(params, good, bad)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_matrix_or_masked_parameter_is_refused_and_a_memmap_is_used(rng, tmp_path, cell):
    """np.matrix and masked parameters were tracebacks from deep inside numpy (shapes not
    aligned), or — a matrix of H = 1 in the reference — a crash of the process (malloc);
    a masked array's mask would be ignored.  A memmap (np.load(mmap_mode=...)) is an array."""
    params = bptt.init_params(cell, 4, 4, 4, rng=rng, dtype=np.float64)
    ids = rng.integers(0, 4, (3, 4))
    for key, kind in (("Whh", "matrix"), ("Why", "matrix"), ("Wxh", "MaskedArray")):
        value = np.matrix(params[key]) if kind == "matrix" else np.ma.masked_array(params[key])
        with pytest.raises(bptt.BpttError, match=rf"^params\['{key}'\] must be a plain numpy "
                           rf"array, got a {kind} \(np.asarray gives its data as one\)$"):
            bptt.loss_and_grads(dict(params, **{key: value}), ids, ids)
    loss, grads, _ = bptt.loss_and_grads(params, ids, ids)
    mapped = np.memmap(tmp_path / "Whh", params["Whh"].dtype, "w+", shape=params["Whh"].shape)
    mapped[...] = params["Whh"]
    other_loss, other_grads, _ = bptt.loss_and_grads(dict(params, Whh=mapped), ids, ids)
    assert other_loss == loss
    for key, g in grads.items():
        np.testing.assert_array_equal(other_grads[key], g, err_msg=key)


@pytest.mark.parametrize("cell", [["rnn"], {"rnn": 1}])
def test_a_cell_that_is_no_string_is_named_not_a_type_error(rng, cell):
    """cell=['rnn'] was TypeError: unhashable type: 'list' from 'cell not in CELLS'."""
    params = bptt.init_params("rnn", 3, 4, 3, rng=rng)
    ids = rng.integers(0, 3, (4, 2))
    for call in (
        lambda: bptt.loss_and_grads(params, ids, ids, cell=cell),
        lambda: bptt.reference.loss_and_grads(params, ids, ids, cell=cell),
        lambda: bptt.task_loss_and_grads(params, ids, ids[-1], cell=cell),
    ):
        with pytest.raises(bptt.BpttError, match=r"unknown cell .*choose one of rnn, lstm, gru"):
            call()


@pytest.mark.parametrize("workspace", ["ws", object()])
def test_a_workspace_that_is_no_workspace_is_named(rng, workspace):
    """workspace='ws' was AttributeError: 'str' object has no attribute 'owns'."""
    params = bptt.init_params("rnn", 3, 4, 3, rng=rng)
    ids = rng.integers(0, 3, (4, 2))
    for backprop, targets in ((bptt.backprop, ids), (bptt.heads.backprop, ids[-1])):
        with pytest.raises(bptt.BpttError, match=r"workspace must be a bptt\.models\.Workspace"):
            backprop(params, ids, targets, workspace=workspace)


# ---- mutation audit (4): checks and forms no test pinned ----


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "output_size", "num_layers"])
def test_init_params_refuses_a_size_below_one(name):
    sizes = dict(input_size=3, hidden_size=4, output_size=3, num_layers=1) | {name: 0}
    with pytest.raises(bptt.BpttError, match=rf"^{name} must be an integer >= 1, got 0$"):
        bptt.init_params("rnn", rng=np.random.default_rng(0), **sizes)


def test_init_params_without_a_generator_draws_afresh_each_call():
    first, second = bptt.init_params("rnn", 3, 4, 3), bptt.init_params("rnn", 3, 4, 3)
    assert not np.array_equal(first["Whh"], second["Whh"])


def test_check_params_names_sizes_dtypes_and_keys_it_cannot_use():
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    with pytest.raises(bptt.BpttError, match=r"^params\['Whh'\] has shape \(0, 0\): expected "
                       r"\(H, H\), \(3H, H\) or \(4H, H\)$"):
        bptt.models.check_params(dict(params, Whh=np.zeros((0, 0))))
    no_output = dict(params, Why=np.zeros((0, 4)), by=np.zeros(0))
    with pytest.raises(bptt.BpttError, match=r"^params\['Wxh'\] has 3 columns and params\['Why'\] "
                       "0 rows: the input size D and the output size V must be at least 1$"):
        bptt.models.check_params(no_output)
    with pytest.raises(bptt.BpttError, match=r"^params\['Wxh'\] has dtype float32, expected "
                       "float64 like Whh$"):
        bptt.models.check_params(dict(params, Wxh=params["Wxh"].astype(np.float32)))
    two = bptt.init_params("gru", 3, 4, 3, num_layers=2, rng=np.random.default_rng(0))
    for key in ("Wxh_l1", "Wxh"):
        with pytest.raises(bptt.BpttError, match=rf"^params is missing '{key}'$"):
            bptt.models.check_params({k: v for k, v in two.items() if k != key})


def test_bad_ids_and_an_empty_batch_are_named():
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    ids = np.zeros((4, 2), np.int64)
    with pytest.raises(bptt.BpttError, match=r"^inputs holds token id -1 outside \[0, 3\) "
                       r"\(input_size D = 3\)$"):
        bptt.loss_and_grads(params, np.array([[0, 2]] * 3 + [[-1, 1]]), ids)
    for shape in ((4, 0), (0, 2)):
        with pytest.raises(bptt.BpttError, match=rf"^inputs has shape \({shape[0]}, {shape[1]}\): "
                           r"need T >= 1 and B >= 1$"):
            bptt.loss_and_grads(params, np.zeros(shape, np.int64), np.zeros(shape, np.int64))


def test_an_lstm_state_given_as_a_pair_per_layer_is_refused_not_misread(rng):
    """[(h, c) of layer 0, (h, c) of layer 1] has the shapes of (h0, c0) for two layers, and
    was read as h0 = [h, c of layer 0], c0 = [h, c of layer 1]: a wrong loss, no error."""
    params = bptt.init_params("lstm", 3, 4, 3, num_layers=2, rng=rng, dtype=np.float64)
    ids = rng.integers(0, 3, (4, 2))
    h, c = rng.normal(size=(2, 2, 4)), rng.normal(size=(2, 2, 4))
    for per_layer in ([(h[0], c[0]), (h[1], c[1])], ((h[0], c[0]), (h[1], c[1]))):
        for loss_and_grads in (bptt.loss_and_grads, bptt.reference.loss_and_grads):
            with pytest.raises(bptt.BpttError, match=r"^h0 of an lstm is the pair \(h0, c0\), "
                               r"each an array \(L, B, H\), not a pair per layer"):
                loss_and_grads(params, ids, ids, h0=per_layer)
    loss = bptt.loss_and_grads(params, ids, ids, h0=(h, c))[0]
    assert bptt.loss_and_grads(params, ids, ids, h0=[list(h), list(c)])[0] == loss


def test_a_state_without_its_layer_axis_is_only_for_one_layer():
    params = bptt.init_params("rnn", 3, 5, 3, num_layers=2, rng=np.random.default_rng(0))
    ids = np.zeros((4, 2), np.int64)
    with pytest.raises(bptt.BpttError, match=r"^h0 has shape \(2, 5\), expected \(L, B, H\) "
                       r"= \(2, 2, 5\)$"):
        bptt.loss_and_grads(params, ids, ids, h0=np.zeros((2, 5)))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_state_is_the_public_form_in_the_weights_dtype(cell, dtype):
    params = bptt.init_params(cell, 3, 5, 3, num_layers=2, rng=np.random.default_rng(0),
                              dtype=dtype)
    state = bptt.models.zero_state(params, 4)
    parts = state if cell == "lstm" else (state,)
    assert isinstance(state, tuple if cell == "lstm" else np.ndarray)
    assert len(parts) == (2 if cell == "lstm" else 1)
    for part in parts:
        assert part.shape == (2, 4, 5) and part.dtype == dtype and not part.any()


def test_grads_come_in_the_order_of_params_and_the_loss_is_forward_loss(rng):
    params = bptt.init_params("gru", 3, 4, 3, num_layers=2, rng=rng)
    ids, labels = rng.integers(0, 3, (5, 2)), rng.integers(0, 3, (5, 2))
    result = bptt.backprop(params, ids, labels)
    assert list(result.grads) == list(params)
    logits = bptt.forward(params, ids).logits
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    expected = -np.take_along_axis(log_p, labels[..., None], axis=-1).sum()
    assert bptt.models.forward_loss(params, ids, labels) == result.loss
    np.testing.assert_allclose(result.loss, expected, rtol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_layers_is_forward_checked_on_the_per_layer_state(cell):
    """models.forward_layers (the state per layer, as generation carries it) gives the caches
    and logits of forward_checked, and each cache's final_state is the final state's layer."""
    rng = np.random.default_rng(4)
    params = bptt.init_params(cell, 5, 6, 7, rng=rng, dtype=np.float64, num_layers=2)
    shapes = bptt.models.check_params(params)
    ids = rng.integers(0, 5, (9, 3))
    h0 = bptt.models.zero_state(params, 3)
    h0 = tuple(rng.normal(size=p.shape) for p in h0) if cell == "lstm" else rng.normal(size=h0.shape)
    fwd = bptt.models.forward_checked(params, shapes, ids, h0)
    states, _ = bptt.models.state_to_layers(h0, shapes, 3, np.float64)
    caches, logits, top = bptt.models.forward_layers(params, shapes, ids, states)
    np.testing.assert_array_equal(logits, fwd.logits)
    np.testing.assert_array_equal(top, fwd.top)
    final = fwd.state if cell == "lstm" else (fwd.state,)
    for layer, cache in enumerate(caches):
        parts = bptt.models.get_cell(cell).final_state(cache)
        for part, whole in zip(parts, final, strict=True):
            np.testing.assert_array_equal(part, whole[layer])
