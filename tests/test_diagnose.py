"""Diagnosis of a learner's backward: every broken example gets its own named bug.

The examples live in tests/broken_backwards/ (one bug per file, each a complete tutorial-style
RNN backward); correct.py is the same code without the bug.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bptt
from bptt import diagnose, reference
from bptt.errors import BpttError

EXAMPLES = Path(__file__).parent / "broken_backwards"

# example file -> (hypothesis name, words the learner must be told)
DIAGNOSES = {
    "no_recurrence": ("truncated", "keeps only 1 step of the recurrence: the term ∂h_t/∂h_{t−1} = diag(1 − h_t²) W^hh is missing or not accumulated"),
    "truncated_two_steps": ("truncated", "keeps only 2 steps of the recurrence"),
    "mean_loss": ("mean", "You differentiate the MEAN loss over time and batch: every gradient is 1/(T·B)"),
    "mean_over_time": ("mean", "the MEAN over time: every gradient is 1/T"),
    "sign_flipped": ("sign", "The sign is flipped"),
    "transposed_whh": ("transposed", "Your dW^hh is the transpose of the right gradient"),
    "transposed_wxh": ("transposed", "Your dW^xh is the transpose of the right gradient"),
    "missing_tanh_derivative": ("no-tanh-derivative", "The derivative of tanh is missing"),
    "carry_skips_tanh_derivative": ("carry-skips-tanh-derivative", "The error you carry back to h_{t−1} skips tanh'"),
    "carry_untransposed": ("carry-untransposed", "You carry the error back with W^hh where W^hhᵀ belongs"),
    "h_t_for_h_prev": ("h-instead-of-h-prev", "Your dW^hh uses h_t where h_{t−1} belongs"),
    "tanh_derivative_off_by_one": ("tanh-derivative-off-by-one", "Off by one step: you take tanh' at the previous state"),
    "tanh_derivative_at_pre_activation": ("tanh-derivative-at-pre-activation", "You take tanh' at the pre-activation, 1 − z_t²"),
    "tanh_applied_twice": ("tanh-applied-twice", "Your tanh' applies tanh once too often: 1 − tanh²(h_t)"),
    "activation_for_derivative": ("activation-for-derivative", "You multiply by the activation h_t itself where its derivative belongs"),
    "first_step_zero_state": ("first-step-zero-state", "the previous state is the initial state h0, not zero"),
    "head_off_by_one": ("head-h-prev", "your dW^hy uses h_{t−1} where h_t belongs"),
    "loop_skips_first_step": ("first-step-skipped", "Your loop over time skips the first step"),
    "only_last_loss": ("last-loss-only", "Only the last loss J_T is sent back through time"),
    "h0_gradient_missing": ("h0-missing", "Your ∂J/∂h0 is zero"),
}

PROBLEMS = {
    "default": {},
    "other sizes": {"hidden": 3, "seq_len": 6, "batch": 3, "seed": 7},
}


def load(name: str):
    return diagnose.load_backward(f"{EXAMPLES / name}.py:rnn_backward")


def test_every_example_file_is_covered():
    files = {p.stem for p in EXAMPLES.glob("*.py")}
    assert files == set(DIAGNOSES) | set(LSTM_DIAGNOSES) | set(GRU_DIAGNOSES) | {
        "correct", "clipped_carry", "lstm_correct", "gru_correct"}


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_the_correct_backward_passes(sizes):
    report = diagnose.check_backward(load("correct"), diagnose.make_problem(**sizes))
    assert report.passed, report.messages()
    assert [p.name for p in report.params] == ["Wxh", "Whh", "bh", "Why", "by", "h0"]
    assert report.loss is not None and report.loss.passed and report.h_last_ok
    assert report.messages() == []


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
@pytest.mark.parametrize("example", sorted(DIAGNOSES))
def test_each_broken_backward_gets_its_own_diagnosis(example, sizes):
    name, words = DIAGNOSES[example]
    report = diagnose.check_backward(load(example), diagnose.make_problem(**sizes))
    assert not report.passed
    assert report.diagnosis is not None, f"{example}: no hypothesis fits; {report.messages()}"
    assert report.diagnosis.name == name
    assert words in report.diagnosis.message
    assert report.localisation is None  # a fitting hypothesis needs no probing


def test_the_mean_loss_is_also_named_in_the_loss_row():
    report = diagnose.check_backward(load("mean_loss"))
    assert not report.loss.passed
    assert "is 1/(T·B) = 1/10 of the reference J = 22.1005092" in report.loss.message
    assert "it is the MEAN loss over time and batch, while the reference" in report.loss.message


def test_truncated_example_passes_against_the_truncated_reference():
    problem = diagnose.make_problem(truncate=2)
    assert diagnose.check_backward(load("truncated_two_steps"), problem).passed
    report = diagnose.check_backward(load("correct"), problem)
    assert report.diagnosis.name == "truncate-ignored"
    assert "ignores its truncate argument" in report.diagnosis.message


def test_an_unnamed_bug_is_localised_by_probing_prefixes():
    report = diagnose.check_backward(load("clipped_carry"))
    assert report.diagnosis is None
    loc = report.localisation
    assert loc.first_wrong == 1  # J_2 (1-based): the first loss whose error is carried back
    assert [s.ok for s in loc.steps] == [True, False, False, False, False]
    assert "J_1 right, J_2 WRONG" in loc.message
    assert "mistake is in how the error is carried back from h_t to h_{t−1}" in loc.message
    assert any("head gradients (W^hy, b_y) are right" in m for m in report.messages())


def test_localisation_finds_the_reach_of_a_cut_recurrence():
    problem = diagnose.make_problem()
    fn = load("truncated_two_steps")
    loc = diagnose.localise(fn, problem, diagnose.expansion(problem))
    assert loc.first_wrong == 2 and loc.steps[2].reach == 2
    assert "For J_3 your gradient holds only the terms k = 2 … 3" in loc.message


def test_a_bug_inside_one_step_is_localised_at_the_first_loss():
    problem = diagnose.make_problem()
    loc = diagnose.localise(load("missing_tanh_derivative"), problem, diagnose.expansion(problem))
    assert loc.first_wrong == 0 and "wrong already at T = 1" in loc.message


@pytest.mark.parametrize("truncate", [None, 2])
def test_the_walk_is_the_reference_double_sum(truncate):
    problem = diagnose.make_problem(hidden=3, seq_len=5, batch=2, seed=3, truncate=truncate)
    mine = diagnose.walk(problem)
    _, grads, terms = reference.loss_and_grads(problem.params, problem.inputs, problem.targets,
                                               h0=problem.h0, truncate=truncate)
    for key in diagnose.RECURRENT:
        np.testing.assert_allclose(mine.rec[key], terms.contributions[key], rtol=0, atol=1e-14)
    total = mine.grads()
    for key in problem.params:
        np.testing.assert_allclose(total[key], grads[key], rtol=0, atol=1e-13, err_msg=key)
    np.testing.assert_allclose(total["h0"], terms.dJ_dstate0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(mine.losses.sum(), terms.losses.sum(), rtol=1e-14)


def test_the_hypotheses_are_told_apart_on_the_problem():
    problem = diagnose.make_problem()
    candidates = diagnose.hypotheses(problem, diagnose.expansion(problem))
    keys = [*diagnose.PARAM_KEYS, "h0"]
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            same = all(a.grads[k] is None or b.grads[k] is None
                       or diagnose._rel(a.grads[k], b.grads[k]) <= diagnose.MATCH_TOL for k in keys)
            assert not same, (a.name, b.name)


def test_messages_count_steps_from_1_and_never_mix_in_a_0_based_subscript():
    """The messages count as the derivation does (h_0 = h0, the first step is z_1); one said
    "hs[t + 1] = h_t", which with h_0 = h0 = hs[0] makes hs[1] = h0."""
    problem = diagnose.make_problem()
    messages = [h.message for h in diagnose.hypotheses(problem, diagnose.expansion(problem))]
    assert any("∂J/∂z_1 h0ᵀ" in m for m in messages)
    for m in messages:
        assert not re.search(r"hs\[[^\]]*\] = h_|_\{−1\}|z_0|h_0(?! = h0)", m), m
    assert "h_{−1}" not in diagnose.walk.__doc__


# --- loading and calling: every way a spec or a return value can be wrong -----------------


def test_load_errors_are_one_sentence(tmp_path):
    with pytest.raises(BpttError, match=re.escape("expects MODULE:FUNCTION or FILE.py:FUNCTION")):
        diagnose.load_backward("no_colon_here")
    with pytest.raises(BpttError, match="does not exist"):
        diagnose.load_backward(f"{tmp_path / 'missing.py'}:fn")
    with pytest.raises(BpttError, match="has no function 'nope' \\(it defines: rnn_backward\\)"):
        diagnose.load_backward(f"{EXAMPLES / 'correct.py'}:nope")
    (tmp_path / "values.py").write_text("rnn_backward = 3\n")
    with pytest.raises(BpttError, match="is a int, not a function"):
        diagnose.load_backward(f"{tmp_path / 'values.py'}:rnn_backward")
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(BpttError, match=r"importing .* failed: SyntaxError.*line 1"):
        diagnose.load_backward(f"{tmp_path / 'broken.py'}:f")
    with pytest.raises(BpttError, match=re.escape("cannot import module 'no_such_pkg_xyz.mod'")):
        diagnose.load_backward("no_such_pkg_xyz.mod:f")
    # a path without its .py is a path, not a module name
    with pytest.raises(BpttError, match=r"^\S*mycode/backward does not exist: pass the path of "
                                        "your Python file$"):
        diagnose.load_backward(f"{tmp_path / 'mycode' / 'backward'}:fn")


def test_a_module_spec_is_imported(tmp_path, monkeypatch):
    pkg = tmp_path / "learnerpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mine.py").write_text((EXAMPLES / "correct.py").read_text())
    monkeypatch.chdir(tmp_path)
    fn = diagnose.load_backward("learnerpkg.mine:rnn_backward")
    assert diagnose.check_backward(fn).passed


def _returns(value):
    def fn(params, inputs, targets, h0=None, truncate=None):
        return value
    return fn


class _NeedsDetach:
    """What numpy meets in a torch tensor that requires grad."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                           "tensor.detach().numpy() instead.")


@pytest.mark.parametrize(("value", "match"), [
    ([1, 2, 3], "returned a list of 3 items"),
    (None, "returned a NoneType"),
    ({"dWxh": 0}, "expected the keys of params"),
    ((1.0, {"Wxh": "text"}), "grads\\['Wxh'\\] that is not a numeric array"),
    (("x", {"Wxh": np.zeros((4, 5))}), "loss that is not one number"),
    ({"bh": None}, "returned grads\\['bh'\\] = None"),
    ({"Wxh": np.zeros((4, 5)) + 1j}, "grads\\['Wxh'\\] of dtype complex128; a gradient of J"),
    # a form mistake is said as one (min-char-rnn's column biases), not diagnosed as maths
    ({"bh": np.zeros((4, 1))}, "grads\\['bh'\\] of shape \\(4, 1\\); the gradient of "
                               "params\\['bh'\\] has its shape, \\(4,\\)"),
    ((1.0, {"bh": np.zeros(4)}, np.zeros((3, 2, 4))), "an h_last of shape \\(3, 2, 4\\)"),
    # a torch tensor that requires grad: numpy raises RuntimeError reading it
    ((_NeedsDetach(), {"bh": np.zeros(4)}), "loss numpy cannot read \\(Can't call numpy\\(\\) "
                                            ".*loss.item\\(\\)"),
    ((1.0, {"bh": _NeedsDetach()}), "grads\\['bh'\\] numpy cannot read"),
    ((1.0, {"bh": np.zeros(4)}, _NeedsDetach()), "an h_last numpy cannot read"),
])
def test_wrong_return_values_are_errors(value, match):
    with pytest.raises(BpttError, match=match):
        diagnose.check_backward(_returns(value))


def test_a_function_that_raises_or_has_another_signature_is_an_error():
    def crashes(params, inputs, targets, h0=None, truncate=None):
        return params["nope"]

    with pytest.raises(BpttError, match=r"raised KeyError: 'nope' \(test_diagnose.py, line"):
        diagnose.check_backward(crashes)
    with pytest.raises(BpttError, match="cannot be called as fn\\(params, inputs, targets, h0=None"):
        diagnose.check_backward(lambda params: {})


def test_an_error_raised_inside_numpy_points_at_the_learners_line(tmp_path):
    """np.stack([]) raises in numpy's shape_base.py: the message named that file and line,
    not the learner's line that called it."""
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n\n\ndef rnn_backward(params, inputs, targets, h0=None, "
        "truncate=None):\n    return np.stack([])\n")
    fn = diagnose.load_backward(f"{tmp_path / 'mine.py'}:rnn_backward")
    with pytest.raises(BpttError, match=r"raised ValueError: need at least one array to "
                                        r"stack \(mine.py, line 5\)$"):
        diagnose.check_backward(fn)


def test_a_missing_gradient_is_a_failed_row_not_an_error():
    def partial(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        del grads["bh"]
        return grads

    report = diagnose.check_backward(partial)
    bh = next(p for p in report.params if p.name == "bh")
    assert not report.passed and bh.note == "missing"
    assert all(p.passed for p in report.params if p.name != "bh")


@pytest.mark.parametrize(("kind", "line"), [("numpy", 9), ("bptt", 11), ("generated", 12)])
def test_an_error_is_placed_at_the_learners_innermost_own_line(tmp_path, kind, line):
    """The learner's line nearest the error: in their helper, not the call of it; past
    numpy's, bptt's and generated code's (<...>) frames, which are not theirs."""
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "import bptt\n"
        "\n"
        "generated = eval(compile('lambda: [][0]', '<generated>', 'eval'))\n"
        "\n"
        "\n"
        "def helper(kind):\n"
        "    if kind == 'numpy':\n"
        "        return np.stack([])\n"
        "    if kind == 'bptt':\n"
        "        return bptt.forward({}, np.zeros((2, 1), int))\n"
        "    return generated()\n"
        "\n"
        "\n"
        "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n"
        f"    return helper({kind!r})\n")
    fn = diagnose.load_backward(f"{tmp_path / 'mine.py'}:rnn_backward")
    with pytest.raises(BpttError, match=rf"\(mine\.py, line {line}\)$"):
        diagnose.check_backward(fn)


def test_only_files_inside_a_library_directory_are_the_librarys():
    import os

    package = Path(diagnose.__file__).parent
    assert diagnose._is_library(diagnose.__file__) and diagnose._is_library("<stdin>")
    assert not diagnose._is_library(f"{package}_exercises{os.sep}mine.py")


def test_missing_gradients_are_not_blamed_on_the_maths():
    """A learner who returns only dW^hh (right) was told, from probing prefixes, that the
    mistake was "inside a single step — the head, ∂J_t/∂y_t, tanh', …" and that the head
    gradients were wrong: nothing was wrong but the keys left out."""
    def only_whh(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return {"Whh": grads["Whh"]}

    report = diagnose.check_backward(only_whh)
    assert not report.passed and report.localisation is None
    assert report.messages() == [
        f"{name}: Your grads have no {key!r}: return ∂J/∂{name} under that key."
        for key, name in (("Wxh", "W^xh"), ("bh", "b_h"), ("Why", "W^hy"), ("by", "b_y"))]

    def misnamed(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        grads["W_xh"], grads["bogus"] = grads.pop("Wxh"), 0
        return grads

    # the keys it has instead are named (they were dropped without a word)
    assert diagnose.check_backward(misnamed).messages() == [
        "W^xh: Your grads have no 'Wxh' (they have 'W_xh', 'bogus', which name no "
        "parameter): return ∂J/∂W^xh under that key."]

    def wrong_whh_and_no_bh(params, inputs, targets, h0=None, truncate=None):
        grads = load("clipped_carry")(params, inputs, targets, h0=h0)[1]
        del grads["bh"]
        return grads

    report = diagnose.check_backward(wrong_whh_and_no_bh)
    assert all("b_h" not in ", ".join(map(diagnose.MATH.get, s.wrong))
               for s in report.localisation.steps)
    assert report.localisation.first_wrong == 1
    assert "while b_h is right" not in report.localisation.message


@pytest.mark.parametrize("layout", ["rows", "columns", "torch", "column for B = 1",
                                    "columns for B = H"])
def test_a_right_h_last_passes_in_rows_or_columns(layout):
    """The derivation's column layout returns h_T as (H, B): it was reshaped, not transposed,
    to (B, H), and a right forward was told "check the forward" (with B = H, where the shape
    cannot tell the layouts apart, still after that fix)."""
    batch = {"column for B = 1": 1, "columns for B = H": 4}.get(layout, 2)
    shape = {"rows": lambda h: h, "columns": lambda h: h.T, "torch": lambda h: h[None],
             "column for B = 1": lambda h: h.T, "columns for B = H": lambda h: h.T}[layout]

    def fn(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = load("correct")(params, inputs, targets, h0=h0)
        return loss, grads, shape(h_last)

    report = diagnose.check_backward(fn, diagnose.make_problem(batch=batch))
    assert report.h_last_ok and report.passed, report.messages()


@pytest.mark.parametrize("batch", [2, 4])
def test_a_right_dJ_dh0_in_columns_is_called_transposed_not_wrong(batch):
    """(H, B) columns were told "Your ∂J/∂h0 differs from the reference: … = W^hhᵀ ∂J/∂z_1"
    (with B = H = 4, where they have h0's shape, still after that fix)."""
    report = diagnose.check_backward(_changed("h0", lambda g, p, i, y, h0: g["h0"].T),
                                     diagnose.make_problem(batch=batch))
    assert not report.passed
    assert report.messages() == ["h0: Your ∂J/∂h0 has the right values, transposed: return it "
                                 f"in the shape of h0, ({batch}, 4)."]


def test_the_learners_arrays_are_copies():
    def vandal(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        for value in params.values():
            value[...] = 0
        h0[...] = 0
        return grads

    problem = diagnose.make_problem()
    before = {k: v.copy() for k, v in problem.params.items()}
    assert diagnose.check_backward(vandal, problem).passed
    assert all(np.array_equal(problem.params[k], before[k]) for k in before)


def test_the_problem_separates_and_refuses_short_sequences():
    with pytest.raises(BpttError, match="at least 4"):
        diagnose.make_problem(seq_len=3)
    p = diagnose.make_problem()
    assert p.h0.shape == (2, 4) and np.all(p.params["bh"] != 0) and np.all(p.h0 != 0)
    assert p.params["Wxh"].dtype == np.float64


def _in_float32(params, inputs, targets, h0=None, truncate=None):
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    return bptt.loss_and_grads(p32, inputs, targets, h0=h0.astype(np.float32))


def test_a_correct_float32_backward_passes_at_float32s_tolerance():
    report = diagnose.check_backward(_in_float32)  # loss, grads, h_last all float32
    assert report.passed and report.tolerance == diagnose.FLOAT32_PASS_TOL
    assert report.loss.passed and report.h_last_ok
    assert report.messages()[0].startswith("Your backward computes in float32: it agrees with")
    assert diagnose.check_backward(lambda *a, **k: _in_float32(*a, **k)[1]).passed  # grads only

    def no_recurrence_in_float32(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = load("no_recurrence")(params, inputs, targets, h0=h0)
        return {k: v.astype(np.float32) for k, v in grads.items()}

    assert not diagnose.check_backward(no_recurrence_in_float32).passed


def _scaled_float32(factor, loss_dtype=None, grads_dtype=np.float32):
    """The float32 backward with every gradient times ``factor``, returned as grads_dtype;
    the loss, when loss_dtype is given, as that dtype."""
    def fn(params, inputs, targets, h0=None, truncate=None):
        loss, grads, _ = _in_float32(params, inputs, targets, h0)
        grads = {k: (v * np.float32(factor)).astype(grads_dtype) for k, v in grads.items()}
        return grads if loss_dtype is None else (loss_dtype(loss), grads)
    return fn


def test_float32s_tolerance_passes_its_round_off_and_no_more():
    # relative errors are max|a − b| / max(|a| + |b|): a factor 1 + e is an error of e / 2
    assert diagnose.check_backward(_scaled_float32(1 + 4e-6)).passed  # 2e-6, beyond 1e-7
    assert not diagnose.check_backward(_scaled_float32(1 + 1e-4)).passed  # 5e-5
    assert diagnose.check_backward(_scaled_float32(1 + 4e-6)).tolerance == 1e-5


def test_a_backward_computes_in_float32_when_all_it_returns_is_float32_or_float64():
    # a float32 loss beside float64 gradients: float32 arithmetic, float32's tolerance
    report = diagnose.check_backward(_scaled_float32(1, np.float32, np.float64))
    assert report.tolerance == diagnose.FLOAT32_PASS_TOL and report.passed, report.messages()
    # float16 beside float32 is no float32 backward: the float64 tolerance, and it fails
    def with_float16(params, inputs, targets, h0=None, truncate=None):
        grads = _scaled_float32(1)(params, inputs, targets, h0)
        return dict(grads, by=grads["by"].astype(np.float16))

    report = diagnose.check_backward(with_float16)
    assert report.tolerance == diagnose.PASS_TOL and not report.passed


def test_a_report_that_fails_says_nothing_a_pass_would():
    # right float32 gradients with a wrong loss, H = B = 1: it fails on the loss, so neither
    # "it passes at float32's tolerance" nor what "a pass cannot vouch for" is said
    report = diagnose.check_backward(_scaled_float32(1, lambda J: np.float32(2 * J)),
                                     diagnose.make_problem(hidden=1, batch=1))
    assert not report.passed and all(p.passed for p in report.params)
    assert not any("With H = 1" in m or "With B = 1" in m or "computes in float32" in m
                   for m in report.messages()), report.messages()
    assert diagnose.check_backward(load("correct"), diagnose.make_problem(hidden=2)
                                   ).messages() == []


def test_a_pass_says_which_bugs_cannot_show_with_H_or_B_equal_to_1():
    """transposed_whh and carry_untransposed PASSED with --hidden 1, a mean over the batch
    with --batch 1, and nothing said so."""
    problem = diagnose.make_problem(hidden=1, batch=1)
    for example in ("transposed_whh", "carry_untransposed"):
        report = diagnose.check_backward(load(example), problem)
        assert report.passed and "With H = 1, W^hh is 1 × 1" in report.messages()[0]
        assert "With B = 1, a mean over the batch" in report.messages()[1]
    assert diagnose.check_backward(load("correct")).messages() == []
    # the gated cells' W^hh is 4H × H or 3H × H: H = 1 hides no transpose there
    for cell in ("lstm", "gru"):
        correct = load_lstm("lstm_correct") if cell == "lstm" else load_gru("gru_correct")
        report = diagnose.check_backward(correct, diagnose.make_problem(hidden=1, cell=cell))
        assert report.passed and report.messages() == []


def test_float32_round_off_is_named_not_misdiagnosed():
    def cast_back(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = _in_float32(params, inputs, targets, h0)
        return {k: v.astype(np.float64) for k, v in grads.items()}

    report = diagnose.check_backward(cast_back)
    assert len(report.messages()) == 1 and "that is round-off, not a bug" in report.messages()[0]

    def with_loss_cast_back(params, inputs, targets, h0=None, truncate=None):
        p32 = {k: v.astype(np.float32) for k, v in params.items()}
        loss, grads, h = bptt.loss_and_grads(p32, inputs, targets, h0=h0.astype(np.float32))
        return float(loss), {k: v.astype(np.float64) for k, v in grads.items()}

    report = diagnose.check_backward(with_loss_cast_back)
    assert "that is round-off, not another loss" in report.messages()[0]
    assert not any("fix the forward first" in m for m in report.messages())


def test_gradients_are_called_round_off_only_below_NEAR_TOL():
    for off, said in ((3e-6, "Your gradients agree with the reference to 1e-06 but not to 1e-09: "
                              "that is round-off, not a bug in the formulas"),
                      (3e-5, "W^hh: Your gradient is 1.00003 × the reference")):
        report = diagnose.check_backward(_changed("Whh", lambda g, *_, off=off: g["Whh"] * (1 + off)))
        assert report.messages()[0].startswith(said), report.messages()


def test_a_function_without_a_truncate_parameter_is_called_without_one():
    """truncate is passed only when a truncated gradient is asked for (the documented
    signature's default): a full-BPTT backward need not take it."""
    def no_truncate(params, inputs, targets, h0=None):
        return bptt.loss_and_grads(params, inputs, targets, h0=h0)

    assert diagnose.check_backward(no_truncate).passed
    with pytest.raises(BpttError, match=r"cannot be called as fn\(params, inputs, targets, "
                                        r"h0=None, truncate=None\): .*truncate"):
        diagnose.check_backward(no_truncate, diagnose.make_problem(truncate=2))


def test_a_float32_result_far_off_is_not_called_round_off():
    def no_recurrence_in_float32(params, inputs, targets, h0=None, truncate=None):
        grads = load("no_recurrence")(params, inputs, targets, h0=h0)
        return {k: v.astype(np.float32) for k, v in grads[1].items()}

    report = diagnose.check_backward(no_recurrence_in_float32)
    assert not report.passed and "far more than float32's round-off" in report.messages()[0]


def test_state_kept_between_calls_fails_even_when_the_first_call_is_right():
    kept = {}

    def keeps_state(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        if "before" in kept:  # a carried error never reset: a module-level dhnext
            grads["Whh"] = grads["Whh"] + kept["before"]
        kept["before"] = grads["Whh"]
        return grads

    report = diagnose.check_backward(keeps_state)
    assert all(p.passed for p in report.params) and not report.passed
    assert "Called a second time on the same arrays, your function returns other" in \
        report.messages()[0]
    assert report.failures() == ["a second call returns other results"]


def test_a_mean_over_the_batch_when_T_equals_B_names_both_factors():
    def mean_over_batch(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return {k: v / inputs.shape[1] for k, v in grads.items()}

    report = diagnose.check_backward(mean_over_batch, diagnose.make_problem(seq_len=5, batch=5))
    assert report.diagnosis.name == "mean" and "1/T = 1/B = 1/5" in report.diagnosis.message


def _changed(key, change):
    """The reference backward with grads[key] replaced by ``change(grads, problem args)``."""
    def fn(params, inputs, targets, h0=None, truncate=None):
        result = bptt.backprop(params, inputs, targets, h0=h0)  # (loss_and_grads: h_last)
        grads = dict(result.grads, h0=result.dJ_dstate0)
        grads[key] = change(grads, params, inputs, targets, h0)
        return grads
    return fn


def test_a_bug_in_one_gradient_is_not_explained_by_a_bug_that_would_change_others():
    # db_h without its t = 1 term is what "the loop skips the first step" gives for b_h,
    # but that bug would change W^hy too, which this learner has right
    problem = diagnose.make_problem()
    skipped = next(h for h in diagnose.hypotheses(problem, diagnose.expansion(problem))
                   if h.name == "first-step-skipped")
    report = diagnose.check_backward(_changed("bh", lambda *_: skipped.grads["bh"]), problem)
    assert not any("skips the first step" in m for m in report.messages())
    assert any(m.startswith("Only db_h is wrong") for m in report.messages())


def test_a_wrong_input_in_dWxh_is_not_blamed_on_the_carry():
    def previous_input(grads, params, inputs, targets, h0):  # Σ_t ∂J/∂z_t x_{t−1}ᵀ
        dJ_dz = bptt.backprop(params, inputs, targets, h0=h0).dJ_dh[0][0] * (
            1 - bptt.forward(params, inputs, h0).caches[0].hs[1:] ** 2)
        x = np.eye(params["Wxh"].shape[1])[inputs]
        return np.einsum("tbh,tbd->hd", dJ_dz, np.concatenate([x[:1], x[:-1]]))

    problem = diagnose.make_problem()
    text = " ".join(diagnose.check_backward(_changed("Wxh", previous_input), problem)
                    .messages())
    assert "only W^xh differs while b_h is right" in text
    assert "how the error is carried back" not in text


def test_only_dJ_dh0_wrong_is_said_without_probing_prefixes():
    report = diagnose.check_backward(_changed("h0", lambda g, p, i, y, h0: g["h0"] + 1))
    assert report.localisation is None and not report.passed
    assert any("∂J/∂h0 differs from the reference" in m for m in report.messages())


def test_nan_is_reported_for_its_parameter():
    def with_nan(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        grads["Whh"][0, 0] = np.nan
        return grads

    report = diagnose.check_backward(with_nan)
    assert "W^hh: Your ∂J/∂W^hh contains NaN or inf." in report.messages()
    # the same NaN from both calls is the same result: not "keeps something between calls"
    assert report.repeatable and not any("a second time" in m for m in report.messages())


def test_gradients_near_float64s_largest_fail_without_warnings_or_a_made_up_factor():
    """1e308 everywhere overflowed the relative errors and the constant-factor fit (numpy
    RuntimeWarnings), and the overflowed fit was reported: "Your gradient is nan × the
    reference", "-1.21474e+308 × the reference"."""
    def huge(params, inputs, targets, h0=None, truncate=None):
        return {k: np.full_like(v, 1e308) for k, v in params.items()}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = diagnose.check_backward(huge)
    assert not report.passed and all(not c.passed for c in report.params)
    assert all(c.comparison.max_rel == pytest.approx(1.0) for c in report.params)
    assert not any("× the reference" in m for m in report.messages())


def test_a_gradient_that_is_the_reference_times_1e308_is_named_as_that_factor():
    """The factor is fitted on the learner's gradient scaled down first: its dot product
    with the reference would overflow."""
    def scaled(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return dict(grads, bh=grads["bh"] * 1e308)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = diagnose.check_backward(scaled)
    assert "b_h: Your gradient is 1e+308 × the reference: a constant factor slipped in " \
           "here." in report.messages()


def test_a_gradient_under_the_comparisons_floor_is_not_called_a_constant_factor():
    """A gradient of 1e-310s (subnormal, under gradcheck.TINY, where any two tensors compare
    equal) was "Your gradient is -8.17444e-311 × the reference: a constant factor"."""
    def tiny(params, inputs, targets, h0=None, truncate=None):
        return {k: np.full_like(v, 1e-310) for k, v in params.items()}

    report = diagnose.check_backward(tiny)
    assert all(not c.passed for c in report.params)
    assert not any("× the reference" in m for m in report.messages())


def test_an_ignored_initial_state_is_named():
    def from_zeros(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets)  # h0 never passed on

    report = diagnose.check_backward(from_zeros)
    assert report.diagnosis.name == "h0-ignored"
    assert "ignores the initial state h0" in report.diagnosis.message
    assert not report.loss.passed and report.h_last_ok is False


@pytest.mark.parametrize("kept, words", [
    (2, "one step fewer than asked, an off-by-one in the bound of your walk back (J_t reaches "
        "k = t … t − 2: t − k < 3, not t − k < 2)"),
    (4, "one step more than asked, an off-by-one in the bound of your walk back (J_t reaches "
        "k = t … t − 2: t − k < 3, not t − k ≤ 3)"),
    (1, "the error is never carried back through ∂h_t/∂h_{t−1} = diag(1 − h_t²) W^hh at all"),
])
def test_a_miscounted_truncation_window_is_named_as_such(kept, words):
    """Asked for truncate=3, a walk back of 2 steps was told to "carry it all the way back to
    the first step" (and to check against --truncate 2), and one of 4 steps was blamed on
    the carry itself: both only miscount the window (each sentence says which bound); one of
    1 step carries nothing back at all."""
    def window(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=kept)

    report = diagnose.check_backward(window, diagnose.make_problem(truncate=3))
    assert report.diagnosis is not None and report.diagnosis.name == "truncate-window"
    message = report.diagnosis.message
    assert f"keep {diagnose._steps(kept)} (the terms with t − k < {kept}): {words}." in message
    assert "all the way back" not in message and "Walk each J_t back exactly 3 steps" in message


def test_a_zero_dJ_dh0_is_not_explained_by_a_bug_of_every_recurrent_gradient():
    """Truncated to 3 of 5 steps, the last loss cannot reach h0, so "only the last loss J_T is
    sent back" also gives ∂J/∂h0 = 0: a learner whose ∂J/∂h0 was zero (and whose other
    recurrent gradients were wrong in another way) was told that their W^xh, W^hh and b_h
    "hold the terms of J_T alone"."""
    def h0_zero_and_wrong_window(params, inputs, targets, h0=None, truncate=None):
        loss, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=1)
        return loss, dict(grads, Whh=2 * grads["Whh"], h0=np.zeros_like(h0))

    report = diagnose.check_backward(h0_zero_and_wrong_window, diagnose.make_problem(truncate=3))
    text = " ".join(report.messages())
    assert "Only the last loss J_T is sent back" not in text
    assert "h0: Your ∂J/∂h0 is zero" in text


def _h_t_in_dWhh_at_the_last_step(grads, params, inputs, targets, h0):
    """dW^hh with h_T where h_{T−1} belongs in the last step's term (wrong already at T = 1)."""
    hs = bptt.forward(params, inputs, h0).caches[0].hs
    dJ_dz = bptt.backprop(params, inputs, targets, h0=h0).dJ_dh[0][0] * (1 - hs[1:] ** 2)
    return grads["Whh"] + dJ_dz[-1].T @ (hs[-1] - hs[-2])


def test_a_bug_at_T_equal_1_is_not_placed_where_the_right_gradients_rule_it_out():
    """A db_h left at zero (every other gradient right) was told, from probing prefixes, that
    the mistake was in "the head, ∂J_t/∂y_t = p_t − onehot, tanh' = 1 − h_t², the input x_t,
    or h0": the right W^hy, b_y, W^xh and W^hh rule out every one of them."""
    report = diagnose.check_backward(_changed("bh", lambda g, *_: np.zeros_like(g["bh"])))
    loc = report.localisation
    assert loc.first_wrong == 0 and "wrong already at T = 1 (in b_h)" in loc.message
    assert "p_t − onehot" not in loc.message and "only b_h's term" in loc.message

    loc = diagnose.check_backward(_changed("Whh", _h_t_in_dWhh_at_the_last_step)).localisation
    assert "p_t − onehot" not in loc.message
    assert "wrong, the previous state h0 for W^hh" in loc.message


def test_a_wrong_head_term_after_the_first_step_does_not_blame_the_states_alone():
    """dW^hy built from the previous step's probabilities, p_{t−1} − onehot(label_t), was
    told "the states your backward reads after the first step are not the forward's": the
    states were right, the probabilities were not step t's."""
    def previous_p(grads, params, inputs, targets, h0):
        fwd = bptt.forward(params, inputs, h0)
        p = np.exp(fwd.logits - fwd.logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        dJ_dy = np.roll(p, 1, axis=0)  # p_{t−1} at step t (p_{T−1} at the first step)
        np.put_along_axis(dJ_dy, targets[..., None], np.take_along_axis(
            dJ_dy, targets[..., None], axis=-1) - 1, axis=-1)
        return np.einsum("tbv,tbh->vh", dJ_dy, fwd.caches[0].hs[1:])

    loc = diagnose.check_backward(_changed("Why", previous_p)).localisation
    assert loc.first_wrong == 1 and "head's terms of J_2 are not (W^hy)" in loc.message
    assert "the states your backward reads after the first step are not" not in loc.message
    assert "or p_t in ∂J_t/∂y_t = p_t − onehot(label_t)" in loc.message


def test_a_wrong_head_gradient_alone_is_not_said_to_be_wrong_too():
    """db_y summed over every axis (zero: each row of p_t − onehot sums to 0), all else right,
    was told "Your head gradients are wrong too": nothing else was wrong."""
    report = diagnose.check_backward(_changed("by", lambda g, *_: np.zeros_like(g["by"])))
    text = " ".join(report.messages())
    assert "wrong too" not in text and "Only your head gradients are wrong (b_y)" in text


def test_a_wrong_dJ_dh0_alone_is_not_said_to_be_a_wrong_head():
    """Every gradient right but ∂J/∂h0 (off in one entry) was told "Only your head gradients
    are wrong ()", an empty list, before the sentence about ∂J/∂h0."""
    def h0_off(grads, *_):
        dh0 = grads["h0"].copy()
        dh0[0, 0] += 0.37
        return dh0

    report = diagnose.check_backward(_changed("h0", h0_off))
    assert not report.passed and report.localisation is None
    assert report.messages() == [
        "Your ∂J/∂h0 differs from the reference: the initial state feeds z_1, so ∂J/∂h0 = "
        "W^hhᵀ ∂J/∂z_1, the error carried one step past the first."]


@pytest.mark.parametrize("change, left_out, not_said", [
    # dW^hh wrong, b_h not given: "Your W^xh and b_h gradients are right" was said
    (("Whh", _h_t_in_dWhh_at_the_last_step), ("bh",), "W^xh and b_h gradients are right"),
    # db_h wrong, W^xh not given: "Only db_h is wrong" was said
    (("bh", lambda g, *_: np.zeros_like(g["bh"])), ("Wxh",), "Only db_h is wrong"),
    # db_h wrong, b_y not given: "Your head gradients (W^hy, b_y) are right" was said
    (("bh", lambda g, *_: np.zeros_like(g["bh"])), ("by",), "head gradients (W^hy, b_y) are"),
    # db_y wrong, W^hh not given: "Only your head gradients are wrong" was said
    (("by", lambda g, *_: np.zeros_like(g["by"])), ("Whh",), "Only your head gradients"),
], ids=["W^hh wrong, b_h left out", "b_h wrong, W^xh left out", "b_h wrong, b_y left out",
        "b_y wrong, W^hh left out"])
def test_a_gradient_left_out_is_not_called_right(change, left_out, not_said):
    """The sentences on which gradients agree took a gradient the learner did not return
    for a right one (it is said missing in its own row)."""
    backward = _changed(*change)

    def without(*args, **kwargs):
        return {k: v for k, v in backward(*args, **kwargs).items() if k not in left_out}

    report = diagnose.check_backward(without)
    assert not report.passed and report.diagnosis is None
    assert not any(not_said in m for m in report.messages()), report.messages()


def test_no_hypothesis_is_the_right_gradient_of_a_truncated_problem():
    """Asked for truncate=K, the windows of m ≠ K steps are bugs; the window of K steps is the
    right gradient, which no named bug may be (it would name a bug where there is none)."""
    problem = diagnose.make_problem(truncate=3)
    correct = diagnose.expansion(problem)
    ref = correct.grads()
    for h in diagnose.hypotheses(problem, correct):
        assert diagnose._altered(h, ref), (h.name, h.message)


@pytest.mark.parametrize("fn, left_out, said, not_said", [
    # W^hy and b_y not given: the head cannot be ruled out
    (lambda: load("missing_tanh_derivative"), ("Why", "by"),
     "single step — the head, ∂J_t/∂y_t = p_t − onehot", "The head's terms are right"),
    # b_h not given: nothing says ∂J/∂z_t is right
    (lambda: _changed("Whh", _h_t_in_dWhh_at_the_last_step), ("bh",),
     "The head's terms are right, so ∂J_t/∂y_t is right", "b_h's term"),
    # W^xh not given: nothing says the terms of W^xh are right
    (lambda: _changed("bh", lambda g, *_: np.zeros_like(g["bh"])), ("Wxh",),
     "The head's terms are right, so ∂J_t/∂y_t is right", "W^xh's and W^hh's terms are right"),
], ids=["head left out", "b_h left out", "W^xh left out"])
def test_a_bug_at_T_equal_1_is_placed_only_from_the_gradients_given(fn, left_out, said, not_said):
    """Where a mistake wrong at T = 1 can be is ruled out only by gradients the learner
    returned and got right: one left out rules out nothing."""
    backward = fn()

    def without(*args, **kwargs):
        grads = backward(*args, **kwargs)
        grads = dict(grads[1] if isinstance(grads, tuple) else grads)
        return {k: v for k, v in grads.items() if k not in left_out}

    loc = diagnose.check_backward(without).localisation
    assert loc.first_wrong == 0 and said in loc.message and not_said not in loc.message


# --- found by a mutation audit: each test kills a mutant that survived the tests above ------


@pytest.mark.parametrize("kept", [1, 2, 3, 4])
def test_every_cut_of_the_recurrence_is_named_with_its_length(kept):
    """A walk back of m < T steps is "truncated" for every m, the longest (T − 1) too."""
    def cut(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=kept)[1]

    report = diagnose.check_backward(cut, diagnose.make_problem(seq_len=5))
    assert report.diagnosis is not None and report.diagnosis.name == "truncated"
    assert f"Your dW^hh keeps only {diagnose._steps(kept)} of the recurrence" in \
        report.diagnosis.message


def test_a_mean_over_the_batch_is_named_when_T_differs_from_B():
    def mean_over_batch(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return {k: v / inputs.shape[1] for k, v in grads.items()}

    report = diagnose.check_backward(mean_over_batch, diagnose.make_problem(seq_len=5, batch=2))
    assert report.diagnosis is not None and report.diagnosis.name == "mean"
    assert report.diagnosis.message.startswith(
        "You differentiate the MEAN over the batch: every gradient is 1/B = 1/2 of the reference")


def test_a_loop_that_skips_the_last_step_is_named():
    """for t in reversed(range(T − 1)): the gradient of J_1 … J_{T−1} alone, which is the
    efficient backward run on the first T − 1 steps."""
    def skips_last(params, inputs, targets, h0=None, truncate=None):
        result = bptt.backprop(params, inputs[:-1], targets[:-1], h0=h0)
        return dict(result.grads, h0=result.dJ_dstate0)

    report = diagnose.check_backward(skips_last)
    assert report.diagnosis is not None and report.diagnosis.name == "last-step-skipped"
    assert report.diagnosis.message.startswith(
        "Your loop over time skips the last step (t = T): the terms of J_T are missing.")


def test_a_transposed_dWhy_is_named():
    report = diagnose.check_backward(_changed("Why", lambda g, *_: g["Why"].T))
    assert report.diagnosis is not None and report.diagnosis.name == "transposed"
    assert report.diagnosis.message.startswith("Your dW^hy is the transpose of the right gradient")


def test_a_constant_factor_in_one_gradient_is_named_with_its_value():
    """Per parameter, a gradient that is c × the reference says c (1/T by name); a factor
    as close to 1 as 1.001 is a factor, not round-off."""
    def scaled(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return dict(grads, Whh=2 * grads["Whh"], bh=grads["bh"] / inputs.shape[0])

    messages = diagnose.check_backward(scaled).messages()
    assert "W^hh: Your gradient is 2 × the reference: a constant factor slipped in here." \
        in messages
    assert "b_h: Your gradient is 1/T = 1/5 × the reference: a constant factor slipped in " \
           "here." in messages

    report = diagnose.check_backward(_changed("Whh", lambda g, *_: 1.001 * g["Whh"]))
    assert "W^hh: Your gradient is 1.001 × the reference: a constant factor slipped in here." \
        in report.messages()
    assert not any("round-off" in m for m in report.messages())


def test_a_gradient_that_is_almost_a_constant_factor_is_not_called_one():
    def nearly_twice(grads, *_):
        whh = 2 * grads["Whh"]
        whh[0, 0] += 1e-6 * np.abs(whh).max()
        return whh

    messages = diagnose.check_backward(_changed("Whh", nearly_twice)).messages()
    assert not any("constant factor" in m for m in messages), messages


def test_a_gradient_off_by_round_off_beside_wrong_ones_is_not_given_a_factor_or_their_bug():
    """dW^xh × (1 + 5e-9) fails at PASS_TOL but is the reference to round-off: it was "1 × the
    reference: a constant factor slipped in here", and it is no hypothesis's gradient either
    (the transposed dW^hh leaves dW^xh as the reference: that sentence is dW^hh's alone)."""
    def three_off(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return dict(grads, Whh=grads["Whh"].T.copy(), bh=2 * grads["bh"],
                    Wxh=grads["Wxh"] * (1 + 5e-9))

    report = diagnose.check_backward(three_off, probe=False)
    assert [c.name for c in report.params if not c.passed] == ["Wxh", "Whh", "bh"]
    assert report.findings == [
        "W^hh: Your dW^hh is the transpose of the right gradient: ∂J/∂W^hh = Σ_t ∂J/∂z_t "
        "h_{t−1}ᵀ, shaped like W^hh (H × H): in batch rows dJ_dz.T @ h_prev, not h_prev.T @ "
        "dJ_dz.",
        "b_h: Your gradient is 2 × the reference: a constant factor slipped in here.",
        "Your head gradients (W^hy, b_y) are right, so your forward pass and ∂J_t/∂y_t = p_t − "
        "onehot(label_t) are right: the mistake is in the backward through the recurrence "
        "(W^xh, W^hh, b_h differ)."]


@pytest.mark.parametrize("off, said", [
    (3e-5, "differs from the reference J = 22.10050921: the forward pass or the loss itself"),
    (3e-6, "agrees with the reference J = 22.10050921 to 3e-06 but not to 1e-10: that is "
           "round-off"),
])
def test_a_loss_is_called_round_off_only_below_NEAR_TOL(off, said):
    def loss_off(params, inputs, targets, h0=None, truncate=None):
        loss, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return loss * (1 + off), dict(grads)

    report = diagnose.check_backward(loss_off)
    assert not report.loss.passed and said in report.loss.message, report.loss.message


def test_only_dWxh_wrong_is_said_to_be_assembled_wrongly():
    messages = diagnose.check_backward(
        _changed("Wxh", lambda g, *_: g["Wxh"][:, ::-1].copy())).messages()
    assert ("Your W^hh and b_h gradients are right, so ∂J/∂z_t is right: only dW^xh is "
            "assembled wrongly. It is Σ_t ∂J/∂z_t x_tᵀ with x_t the one-hot input of step t."
            ) in messages


def test_a_wrong_head_beside_a_wrong_recurrence_is_said_first_to_fix():
    def both_off(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        grads["Why"][0, 0] += 0.37
        grads["Whh"][0, 0] += 0.37
        return grads

    messages = diagnose.check_backward(both_off).messages()
    assert any(m.startswith("Your head gradients are wrong too, so start there: ∂J_t/∂y_t = "
                            "p_t − onehot(label_t)") for m in messages), messages


def test_localisation_of_a_recurrence_cut_to_one_step_names_J_1_and_the_reach():
    problem = diagnose.make_problem()
    loc = diagnose.localise(load("no_recurrence"), problem, diagnose.expansion(problem))
    assert loc.first_wrong == 1 and loc.steps[1].reach == 1
    assert "The terms of J_1 are right, so a single step is right" in loc.message
    assert "For J_2 your gradient holds only the terms k = 2 … 2: the error stops after " \
           "1 step." in loc.message


def test_the_shortest_sequence_allowed_is_checked():
    problem = diagnose.make_problem(seq_len=diagnose.MIN_SEQ_LEN)
    assert problem.T == 4
    assert diagnose.check_backward(load("correct"), problem).passed


def test_the_last_line_names_the_loss_and_h_last_that_differ():
    def from_zeros(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets)

    assert diagnose.check_backward(from_zeros).failures() == [
        "5 of 5 gradients differ from the reference", "the loss differs", "h_last differs"]

    def off(loss_by, h_by):
        def fn(params, inputs, targets, h0=None, truncate=None):
            loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
            return loss + loss_by, grads, h_last + h_by
        return fn

    assert diagnose.check_backward(off(1.0, 0)).failures() == ["the loss differs"]
    report = diagnose.check_backward(off(0, 1e-6))  # far beyond round-off of a float64 state
    assert report.h_last_ok is False and report.failures() == ["h_last differs"]


def test_a_wrong_loss_is_told_the_reference_formula():
    def loss_plus_one(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return loss + 1, grads, h_last

    report = diagnose.check_backward(loss_plus_one)
    J = report.loss.reference
    assert report.messages() == [
        f"Your loss {J + 1:.10g} differs from the reference J = {J:.10g}: the forward pass or "
        "the loss itself is different. The reference is J = Σ_t Σ_b −log softmax(W^hy h_t + "
        "b_y)[label_t] with z_t = W^xh x_t + W^hh h_{t−1} + b_h, h_t = tanh z_t, h_0 = h0; if "
        "the gradients are wrong too, fix the forward first."]


def test_an_ignored_initial_state_is_named_under_truncation_too():
    def from_zeros(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets, truncate=truncate)

    report = diagnose.check_backward(from_zeros, diagnose.make_problem(truncate=2))
    assert report.diagnosis is not None and report.diagnosis.name == "h0-ignored"


@pytest.mark.parametrize("truncate", [2, 4])
def test_an_ignored_truncate_argument_is_named_for_every_window_shorter_than_T(truncate):
    report = diagnose.check_backward(load("correct"), diagnose.make_problem(seq_len=5,
                                                                            truncate=truncate))
    assert report.diagnosis is not None and report.diagnosis.name == "truncate-ignored"


def test_a_window_two_steps_off_is_not_called_an_off_by_one():
    def window(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=4)

    report = diagnose.check_backward(window, diagnose.make_problem(seq_len=5, truncate=2))
    assert report.diagnosis is not None and report.diagnosis.name == "truncate-window"
    assert "keep 4 steps (the terms with t − k < 4): another window than the one asked for." \
        in report.diagnosis.message
    assert "off-by-one" not in report.diagnosis.message


def test_a_loss_that_changes_between_calls_fails():
    calls = []

    def accumulates(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        calls.append(loss)
        return sum(calls), grads, h_last  # a module-level running total, never reset

    report = diagnose.check_backward(accumulates)
    assert report.loss.passed and not report.repeatable and not report.passed
    assert report.failures() == ["a second call returns other results"]


def test_each_step_of_the_localisation_has_its_worst_error_and_its_reach():
    def cut_and_head_off(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=2)
        return dict(grads, Why=2 * grads["Why"])

    problem = diagnose.make_problem()
    loc = diagnose.localise(cut_and_head_off, problem, diagnose.expansion(problem))
    assert [s.ok for s in loc.steps] == [False] * 5
    assert all("Why" in s.wrong for s in loc.steps)
    # the recurrent part still holds only k = t − 1 … t, head wrong or not
    assert [s.reach for s in loc.steps] == [None, None, 2, 2, 2]
    # a step is wrong by its worst parameter (W^hy, 2 × the reference: 1/3)
    for s in loc.steps:
        assert s.max_rel == pytest.approx(1 / 3, rel=1e-9)


def test_a_wrong_gradient_in_the_transposed_shape_is_not_called_right_but_transposed():
    report = diagnose.check_backward(_changed("Wxh", lambda g, *_: 2 * g["Wxh"].T))
    row = next(p for p in report.params if p.name == "Wxh")
    assert row.note == "shape (5, 4), expected (4, 5)" and not row.explanation
    assert not any("has the right values" in m for m in report.messages()), report.messages()
    row = next(p for p in diagnose.check_backward(_changed("Wxh", lambda g, *_: g["Wxh"].T))
               .params if p.name == "Wxh")
    assert row.explanation == ("Your ∂J/∂W^xh has the right values, transposed: return it in "
                               "the shape of W^xh, (4, 5).")


# --- the LSTM (--cell lstm): the same check, its own bugs, localised by gate ---------------

# example file -> (hypothesis name, words the learner must be told)
LSTM_DIAGNOSES = {
    "lstm_c_path_cut": ("lstm-c-path-cut", "The error through the cell state is not carried "
                        "back: your gradients equal the reference with the path c_{t−1} → c_t cut"),
    "lstm_gate_mixup": ("lstm-gate-mixup", "Gate mix-up: the derivative of gate o (output gate) "
                        "is taken at gate f's activation"),
    "lstm_missing_sigmoid_derivative": ("lstm-gate-derivative-missing", "The derivative of gate "
                                        "f's activation (forget gate) is missing"),
    "lstm_mean_over_time": ("mean", "the MEAN over time: every gradient is 1/T"),
    "lstm_sigmoid_derivative_for_g": ("lstm-other-activation-derivative", "The derivative "
                                      "of gate g's activation (candidate cell) is σ's, g_t ⊙ "
                                      "(1 − g_t), but g_t = tanh(a^g_t)"),
    "lstm_missing_tanh_c_derivative": ("lstm-tanh-c-derivative-missing", "The derivative of "
                                       "tanh at the cell state is missing"),
    "lstm_tanh_c_prev": ("lstm-tanh-c-prev", "you take tanh at the previous cell state "
                         "c_{t−1} where tanh c_t belongs"),
    "lstm_gate_order_ifog": ("lstm-gate-order", "exactly the reference's for the gate blocks "
                             "in the order i, f, o, g (CS231n's order)"),
}


def load_lstm(name: str):
    return diagnose.load_backward(f"{EXAMPLES / name}.py:lstm_backward")


def lstm_problem(**sizes):
    return diagnose.make_problem(**sizes, cell="lstm")


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_the_correct_lstm_backward_passes(sizes):
    report = diagnose.check_backward(load_lstm("lstm_correct"), lstm_problem(**sizes))
    assert report.passed, report.messages()
    assert [p.name for p in report.params] == ["Wxh", "Whh", "bxh", "bhh", "Why", "by", "h0",
                                               "c0"]
    assert report.loss is not None and report.loss.passed and report.h_last_ok
    assert report.messages() == [] and report.gates is None


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
@pytest.mark.parametrize("example", sorted(LSTM_DIAGNOSES))
def test_each_broken_lstm_backward_gets_its_own_diagnosis(example, sizes):
    name, words = LSTM_DIAGNOSES[example]
    report = diagnose.check_backward(load_lstm(example), lstm_problem(**sizes))
    assert not report.passed
    assert report.diagnosis is not None, f"{example}: no hypothesis fits; {report.messages()}"
    assert report.diagnosis.name == name
    assert words in report.diagnosis.message
    assert report.gates is not None and set(report.gates) == {"Wxh", "Whh", "bxh", "bhh"}


@pytest.mark.parametrize("truncate", [None, 2])
def test_the_lstm_walk_is_the_reference_double_sum(truncate):
    problem = lstm_problem(truncate=truncate)
    mine = diagnose.expansion(problem).grads()
    loss, grads, terms = reference.loss_and_grads(problem.params, problem.inputs,
                                                  problem.targets, h0=problem.state,
                                                  truncate=truncate, cell="lstm")
    for key, value in grads.items():
        np.testing.assert_allclose(mine[key], value, rtol=0, atol=1e-13, err_msg=key)
    np.testing.assert_allclose(mine["h0"], terms.dJ_dstate0[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(mine["c0"], terms.dJ_dstate0[1], rtol=0, atol=1e-13)


def test_the_c_path_cut_is_the_walk_with_dc_dc_prev_zero_and_differs_from_a_truncation():
    problem = lstm_problem()
    correct = diagnose.expansion(problem)
    cut = diagnose.gated_walk(problem, diagnose.gated_step_variant("lstm", cut_direct=True)).grads()
    ref = correct.grads()
    assert np.abs(cut["c0"]).max() == 0  # nothing reaches c0 without the c path
    np.testing.assert_allclose(cut["Why"], ref["Why"])  # the head is untouched
    t, k = np.indices((problem.T, problem.T))
    one_step = correct.grads(rec_mask=(t == k))
    assert diagnose._rel(cut["Whh"], one_step["Whh"]) > 1e-3
    assert diagnose._rel(cut["Whh"], ref["Whh"]) > 1e-3



def _lstm_in_float32(name: str):
    """The learner's LSTM backward ``name`` called with float32 params and state (h0, c0)."""
    fn = load_lstm(name)

    def in_float32(params, inputs, targets, h0=None, truncate=None):
        p32 = {k: v.astype(np.float32) for k, v in params.items()}
        s32 = None if h0 is None else tuple(np.asarray(s, dtype=np.float32) for s in h0)
        return fn(p32, inputs, targets, s32, truncate)

    return in_float32


def test_a_float32_lstm_backward_passes_at_float32s_tolerance_and_a_broken_one_fails():
    problem = lstm_problem()
    _, grads, _ = _lstm_in_float32("lstm_correct")(problem.params, problem.inputs,
                                                   problem.targets, problem.state)
    assert grads["Wxh"].dtype == np.float32  # its float32 accumulators: float32 gradients
    report = diagnose.check_backward(_lstm_in_float32("lstm_correct"), problem)
    assert report.passed and report.tolerance == diagnose.FLOAT32_PASS_TOL, report.messages()
    assert report.messages()[0].startswith("Your backward computes in float32: it agrees with")
    report = diagnose.check_backward(_lstm_in_float32("lstm_gate_mixup"), problem)
    assert not report.passed and report.tolerance == diagnose.FLOAT32_PASS_TOL
    assert report.failures() and not any("computes in float32: it agrees" in m
                                         for m in report.messages())
    assert any("far more than float32's round-off" in m for m in report.messages())

def test_the_lstm_hypotheses_are_told_apart_on_the_problem():
    problem = lstm_problem()
    candidates = diagnose.hypotheses(problem, diagnose.expansion(problem))
    keys = [*problem.param_keys, *problem.state_keys]
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            same = all(a.grads[k] is None or b.grads[k] is None
                       or diagnose._rel(a.grads[k], b.grads[k]) <= diagnose.MATCH_TOL
                       for k in keys)
            assert not same, (a.name, b.name)


def _lstm_changed(change):
    """The correct LSTM backward with its grads changed by ``change(grads)``."""
    correct = load_lstm("lstm_correct")

    def fn(params, inputs, targets, h0=None, truncate=None):
        loss, grads, state = correct(params, inputs, targets, h0, truncate)
        change(grads, params, inputs, targets, h0)
        return loss, grads, state

    return fn


def test_exactly_one_gates_rows_failing_is_named_the_gate_mixup_signature():
    def bias_of_f_for_o(grads, *_):  # one gate's bias gradient copied from another's
        H = grads["bhh"].shape[0] // 4
        grads["bhh"][3 * H:] = grads["bhh"][H:2 * H]

    report = diagnose.check_backward(_lstm_changed(bias_of_f_for_o), lstm_problem())
    assert not report.passed and report.diagnosis is None
    assert report.gates["bhh"] == {"i": True, "f": True, "g": True, "o": False}
    assert report.gates["Wxh"] == dict.fromkeys("ifgo", True)
    text = " ".join(report.messages())
    assert "b^hh: o wrong, i, f and g right" in text
    assert "Exactly one gate's rows fail, gate o's: the signature of a gate mix-up" in text


def test_an_unnamed_lstm_bug_inside_one_gate_is_placed_on_the_first_step():
    def c_t_in_dJ_df(params, inputs, targets, h0=None, truncate=None):
        # dJ/df_t taken with c_t where c_{t−1} belongs: only f's rows are wrong at T = 1
        source = (EXAMPLES / "lstm_correct.py").read_text()
        assert "dJ_df = dJ_dc * cs[t]  # cs[t] is c_{t-1}" in source
        namespace: dict = {}
        exec(compile(source.replace("dJ_df = dJ_dc * cs[t]", "dJ_df = dJ_dc * cs[t + 1]"),
                     "c_t_in_dJ_df.py", "exec"), namespace)
        return namespace["lstm_backward"](params, inputs, targets, h0, truncate)

    report = diagnose.check_backward(c_t_in_dJ_df, lstm_problem())
    assert not report.passed and report.diagnosis is None
    text = " ".join(report.messages())
    assert "only gate f's rows are wrong: the mistake lives in that gate’s part" in text
    assert report.localisation is None  # the RNN's prefix probing speaks the RNN's math


def test_a_missing_dJ_dc0_is_named():
    report = diagnose.check_backward(
        _lstm_changed(lambda grads, *_: grads.update(c0=np.zeros_like(grads["c0"]))),
        lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "c0-missing"
    assert "∂J/∂c0 = ∂J/∂c_1 ⊙ f_1" in report.diagnosis.message


def test_an_lstm_truncated_to_one_step_is_named_with_the_lstms_step():
    def one_step(grads, params, inputs, targets, h0):
        problem = diagnose.Problem(params, inputs, targets, h0[0], None, 0, "lstm", h0[1])
        correct = diagnose.expansion(problem)
        t, k = np.indices((problem.T, problem.T))
        grads.update({key: value for key, value in correct.grads(rec_mask=(t == k)).items()
                      if key in grads})

    report = diagnose.check_backward(_lstm_changed(one_step), lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "truncated"
    assert "∂(h_t, c_t)/∂(h_{t−1}, c_{t−1})" in report.diagnosis.message
    assert "W^xh, W^hh, b^xh and b^hh" in report.diagnosis.message


def test_an_lstm_final_state_is_checked_as_the_pair_or_h_alone():
    correct = load_lstm("lstm_correct")

    def h_only(params, inputs, targets, h0=None, truncate=None):
        loss, grads, (h, c) = correct(params, inputs, targets, h0, truncate)
        return loss, grads, h

    def swapped(params, inputs, targets, h0=None, truncate=None):
        loss, grads, (h, c) = correct(params, inputs, targets, h0, truncate)
        return loss, grads, (c, h)

    def like_nn_lstm(params, inputs, targets, h0=None, truncate=None):  # (h_n, c_n): (1, B, H)
        loss, grads, (h, c) = correct(params, inputs, targets, h0, truncate)
        return loss, grads, (h[None], c[None])

    def in_columns(params, inputs, targets, h0=None, truncate=None):  # each (H, B)
        loss, grads, (h, c) = correct(params, inputs, targets, h0, truncate)
        return loss, grads, (h.T, c.T)

    assert diagnose.check_backward(h_only, lstm_problem()).h_last_ok
    for fn in (like_nn_lstm, in_columns):
        report = diagnose.check_backward(fn, lstm_problem())
        assert report.passed and report.h_last_ok, report.messages()
    report = diagnose.check_backward(swapped, lstm_problem())
    assert report.h_last_ok is False and not report.passed
    assert "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t" in " ".join(report.messages())


def test_the_rnns_backward_checked_as_an_lstm_is_an_error_naming_the_key():
    with pytest.raises(BpttError, match="KeyError"):
        diagnose.check_backward(load("correct"), lstm_problem())
    with pytest.raises(BpttError, match="cells rnn, lstm, gru, not 'transformer'"):
        diagnose.make_problem(cell="transformer")


# --- the GRU (--cell gru): the same machinery, gates r, z, n ---------------------------------

GRU_DIAGNOSES = {
    "gru_direct_path_cut": ("gru-direct-path-cut", "The error through the direct path "
                            "z_t ⊙ h_{t−1} is not carried back"),
    "gru_gate_mixup": ("gru-gate-mixup", "Gate mix-up: the derivative of gate z (update gate) "
                       "is taken at gate r's activation"),
    "gru_missing_tanh_derivative": ("gru-gate-derivative-missing", "The derivative of gate "
                                    "n's activation (candidate state) is missing"),
    "gru_sigmoid_derivative_for_n": ("gru-other-activation-derivative", "The derivative of "
                                     "gate n's activation (candidate state) is σ's, n_t ⊙ (1 − "
                                     "n_t), but n_t = tanh(a^n_t)"),
    "gru_z_swapped": ("gru-z-swapped", "those of a GRU with h_t = z_t ⊙ n_t + (1 − z_t) ⊙ "
                      "h_{t−1}"),
}


def load_gru(name: str):
    return diagnose.load_backward(f"{EXAMPLES / name}.py:gru_backward")


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_the_correct_gru_backward_passes(sizes):
    report = diagnose.check_backward(load_gru("gru_correct"),
                                     diagnose.make_problem(**sizes, cell="gru"))
    assert report.passed, report.messages()
    assert [p.name for p in report.params] == ["Wxh", "Whh", "bxh", "bhh", "Why", "by", "h0"]
    assert report.loss.passed and report.h_last_ok and report.messages() == []


@pytest.mark.parametrize("sizes", PROBLEMS.values(), ids=PROBLEMS.keys())
@pytest.mark.parametrize("example", sorted(GRU_DIAGNOSES))
def test_each_broken_gru_backward_gets_its_own_diagnosis(example, sizes):
    name, words = GRU_DIAGNOSES[example]
    report = diagnose.check_backward(load_gru(example), diagnose.make_problem(**sizes, cell="gru"))
    assert not report.passed
    assert report.diagnosis is not None, f"{example}: no hypothesis fits; {report.messages()}"
    assert report.diagnosis.name == name and words in report.diagnosis.message
    assert any(m.startswith("By gate (the blocks of H rows r, z, n, in PyTorch's order)")
               for m in report.messages())


@pytest.mark.parametrize("truncate", [None, 2])
def test_the_gru_walk_is_the_reference_double_sum(truncate):
    problem = diagnose.make_problem(truncate=truncate, cell="gru")
    mine = diagnose.expansion(problem).grads()
    _, grads, terms = reference.loss_and_grads(problem.params, problem.inputs, problem.targets,
                                               h0=problem.h0, truncate=truncate, cell="gru")
    for key, value in grads.items():
        np.testing.assert_allclose(mine[key], value, rtol=0, atol=1e-13, err_msg=key)
    np.testing.assert_allclose(mine["h0"], terms.dJ_dstate0, rtol=0, atol=1e-13)


def test_the_gru_hypotheses_are_told_apart_on_the_problem():
    problem = diagnose.make_problem(cell="gru")
    candidates = diagnose.hypotheses(problem, diagnose.expansion(problem))
    keys = [*problem.param_keys, *problem.state_keys]
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            assert not all(a.grads[k] is None or b.grads[k] is None
                           or diagnose._rel(a.grads[k], b.grads[k]) <= diagnose.MATCH_TOL
                           for k in keys), (a.name, b.name)


def test_a_gru_with_kerass_gate_order_is_named_as_that_order():
    correct = load_gru("gru_correct")

    def keras_order(params, inputs, targets, h0=None, truncate=None):  # blocks z, r, n
        H = params["Whh"].shape[1]
        swap = np.r_[H:2 * H, 0:H, 2 * H:3 * H]  # its own inverse
        mine = {k: v[swap] if k in ("Wxh", "Whh", "bxh", "bhh") else v for k, v in params.items()}
        loss, grads, h_last = correct(mine, inputs, targets, h0)
        return loss, {k: v[swap] if k in mine and k not in ("Why", "by") else v
                      for k, v in grads.items()}, h_last

    report = diagnose.check_backward(keras_order, diagnose.make_problem(cell="gru"))
    assert report.diagnosis is not None and report.diagnosis.name == "gru-gate-order"
    assert "in the order z, r, n (Keras's order)" in report.diagnosis.message
    assert "read gate r from rows 0:H and z from rows H:2H" in report.diagnosis.message


def test_a_wrong_gru_dJ_dh0_is_told_the_grus_formula_with_the_direct_path():
    correct = load_gru("gru_correct")

    def h0_first_row_flipped(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = correct(params, inputs, targets, h0)
        grads["h0"][0] *= -1
        return loss, grads, h_last

    report = diagnose.check_backward(h0_first_row_flipped, diagnose.make_problem(cell="gru"))
    assert report.diagnosis is None and [p.name for p in report.params if not p.passed] == ["h0"]
    said = " ".join(report.messages())
    assert "the initial state feeds a^hh_1 and, directly, h_1, so ∂J/∂h0 = W^hhᵀ ∂J/∂a^hh_1 + " \
        "∂J/∂h_1 ⊙ z_1" in said
    assert "∂J/∂h0 = W^hhᵀ ∂J/∂a_1," not in said


def test_a_pass_says_which_of_the_learners_keys_it_did_not_check():
    correct = load_lstm("lstm_correct")

    def other_state_keys(params, inputs, targets, h0=None, truncate=None):
        loss, grads, state = correct(params, inputs, targets, h0, truncate)
        grads["dh0"], grads["dc0"] = grads.pop("h0"), grads.pop("c0")
        return loss, grads, state

    report = diagnose.check_backward(other_state_keys, lstm_problem())
    assert report.passed
    assert report.messages() == ["Your grads also have 'dc0', 'dh0', which name no parameter: "
                                 "not checked. ∂J/∂h0 is read under the key 'h0', ∂J/∂c0 under "
                                 "'c0'."]


def test_swapped_dJ_dh0_and_dJ_dc0_are_named():
    def swap(grads, *_):
        grads["h0"], grads["c0"] = grads["c0"], grads["h0"]

    report = diagnose.check_backward(_lstm_changed(swap), lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "state-gradients-swapped"
    assert report.diagnosis.message.endswith(
        "∂J/∂h0 = W^hhᵀ ∂J/∂a_1 (the error carried through W^hh), ∂J/∂c0 = ∂J/∂c_1 ⊙ f_1 "
        "(through the cell state).")



def test_a_wrong_gru_loss_is_told_the_published_grus_that_differ_from_pytorchs():
    said = diagnose._loss_check(19.0, 18.0, diagnose.make_problem(cell="gru")).message
    assert "b^hn outside the reset" in said and "r_t ⊙ h_{t−1}) + b^hn) (Cho et al." in said
    assert "Cho" not in diagnose._loss_check(19.0, 18.0, lstm_problem()).message


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_bias_gradient_left_zero_is_told_what_it_is(cell):
    correct = load_lstm("lstm_correct") if cell == "lstm" else load_gru("gru_correct")

    def bhh_left_zero(params, inputs, targets, h0=None, truncate=None):
        loss, grads, state = correct(params, inputs, targets, h0, truncate)
        return loss, dict(grads, bhh=np.zeros_like(grads["bhh"])), state

    report = diagnose.check_backward(bhh_left_zero, diagnose.make_problem(cell=cell))
    said = " ".join(report.messages())
    assert "Only db^hh is wrong, and your weight gradients are right" in said
    assert ("b^hn sits inside r_t ⊙" in said) == (cell == "gru")


def _source_changed(cell: str, line: str, changed: str):
    """The correct LSTM or GRU example with one line of its backward changed."""
    source = (EXAMPLES / f"{cell}_correct.py").read_text()
    assert line in source
    namespace: dict = {}
    exec(compile(source.replace(line, changed), f"{cell}_changed.py", "exec"), namespace)
    return namespace[f"{cell}_backward"]


def test_gate_blocks_judge_a_block_by_the_tensors_measure_as_compare_arrays_does():
    """A block's worst difference is taken over the whole tensor's max(|mine| + |ref|), the
    scale of compare_arrays: a tensor that passes has every gate right, and no more."""
    ref = {"bhh": np.ones(8)}  # H = 2: blocks i, f, g, o of two rows
    for off, right in ((1.5e-9, True), (3e-9, False)):
        mine = ref["bhh"].copy()
        mine[2] += off  # in gate f's block
        assert diagnose.compare_arrays("bhh", mine, ref["bhh"]).passed(diagnose.PASS_TOL) == right
        blocks = diagnose.gate_blocks(diagnose.UserResult({"bhh": mine}), ref, ("bhh",))
        assert blocks == {"bhh": {"i": True, "f": right, "g": True, "o": True}}


def test_two_gates_failing_is_not_called_the_signature_of_a_gate_mixup():
    def f_and_o_swapped(grads, *_):
        H = grads["bhh"].shape[0] // 4
        f, o = grads["bhh"][H:2 * H].copy(), grads["bhh"][3 * H:].copy()
        grads["bhh"][H:2 * H], grads["bhh"][3 * H:] = o, f

    report = diagnose.check_backward(_lstm_changed(f_and_o_swapped), lstm_problem())
    assert report.diagnosis is None
    assert report.gates["bhh"] == {"i": True, "f": False, "g": True, "o": False}
    assert report.findings[:2] == [
        "By gate (the blocks of H rows i, f, g, o, in PyTorch's order) — W^xh: every gate right; "
        "W^hh: every gate right; b^xh: every gate right; b^hh: f and o wrong, i and g right.",
        "Your head gradients (W^hy, b_y) are right, so your forward pass and ∂J_t/∂y_t = p_t − "
        "onehot(label_t) are right: the mistake is in the backward through the recurrence "
        "(b^hh differs)."]


def test_a_first_step_wrong_in_every_gate_adds_no_first_step_sentence():
    report = diagnose.check_backward(
        _lstm_changed(lambda grads, *_: grads.update(Wxh=2 * grads["Wxh"])), lstm_problem())
    assert report.messages() == [
        "By gate (the blocks of H rows i, f, g, o, in PyTorch's order) — W^xh: every gate wrong; "
        "W^hh: every gate right; b^xh: every gate right; b^hh: every gate right.",
        "W^xh: Your gradient is 2 × the reference: a constant factor slipped in here."]


@pytest.mark.parametrize("cell, line, carried", [
    ("lstm", "dJ_dh_from_later = dJ_da @ Whh", "errors ∂J/∂h and ∂J/∂c are"),
    ("gru", "dJ_dh_from_later = dJ_da_hh @ Whh + dJ_dh * z", "error ∂J/∂h is"),
])
def test_a_wrong_carry_is_placed_between_the_steps_by_the_first_step_alone(cell, line, carried):
    halved = _source_changed(cell, line, line.replace("= ", "= 0.5 * (", 1) + ")")
    report = diagnose.check_backward(halved, diagnose.make_problem(cell=cell))
    assert report.diagnosis is None
    assert report.findings[-1] == (
        "On the first step alone (T = 1, nothing carried back through time) every gate's rows "
        "are right: a single step is right, so the mistake is in how the "
        f"{carried} carried back from step t to step t − 1.")


def test_a_gate_mixup_across_sigma_and_tanh_takes_the_gates_formula_at_the_other_gate():
    """g's tanh' written at i's value, 1 − i², as the sentence says (not i's σ' formula)."""
    g_at_i = _source_changed("lstm", "dJ_da_g = dJ_dg * (1 - g**2)",
                             "dJ_da_g = dJ_dg * (1 - i**2)")
    report = diagnose.check_backward(g_at_i, lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "lstm-gate-mixup"
    assert report.diagnosis.message == (
        "Gate mix-up: the derivative of gate g (candidate cell) is taken at gate i's "
        "activation, 1 − i_t², where ∂g_t/∂a^g_t = 1 − g_t² belongs (a line copied from gate "
        "i's and not fully changed?): dJ_da_g = dJ_dg * (1 - g**2). Gate g's rows (block 3 of "
        "4) go wrong first; through W^hhᵀ the error carried back then spoils every gate's rows "
        "at the earlier steps.")


def test_a_wrong_bias_beside_a_weight_left_out_is_not_told_the_weights_are_right():
    def whh_left_out_bxh_zero(grads, *_):
        del grads["Whh"]
        grads["bxh"] = np.zeros_like(grads["bxh"])

    report = diagnose.check_backward(_lstm_changed(whh_left_out_bxh_zero), lstm_problem())
    assert "W^hh: Your grads have no 'Whh': return ∂J/∂W^hh under that key." \
        in report.messages()
    assert not any("weight gradients are right" in m for m in report.messages())


def test_a_dJ_dc0_explained_by_a_hypothesis_is_not_said_again_as_unexplained():
    def c0_zero_and_o_bias_of_f(grads, *_):
        H = grads["bhh"].shape[0] // 4
        grads["c0"] = np.zeros_like(grads["c0"])
        grads["bhh"][3 * H:] = grads["bhh"][H:2 * H]

    report = diagnose.check_backward(_lstm_changed(c0_zero_and_o_bias_of_f), lstm_problem())
    assert report.diagnosis is None
    said = [m for m in report.messages() if "c0" in m]
    assert said == ["c0: Your ∂J/∂c0 is zero, but the initial cell state feeds the first one: "
                    "c_1 = f_1 ⊙ c0 + i_1 ⊙ g_1, so ∂J/∂c0 = ∂J/∂c_1 ⊙ f_1."]


def test_an_lstm_with_only_its_head_wrong_is_not_looked_at_by_gate():
    report = diagnose.check_backward(
        _lstm_changed(lambda grads, *_: grads.update(Why=1.5 * grads["Why"] + 0.01)),
        lstm_problem())
    assert report.gates is None
    assert report.messages() == [
        "Only your head gradients are wrong (W^hy): ∂J_t/∂y_t = p_t − onehot(label_t), "
        "∂J/∂W^hy = Σ_t ∂J_t/∂y_t h_tᵀ, ∂J/∂b_y = Σ_t Σ_b ∂J_t/∂y_t (summed over steps and "
        "batch rows, one entry per output)."]


def test_an_lstm_that_ignores_its_initial_state_and_cell_state_is_named():
    correct = load_lstm("lstm_correct")

    def from_zeros(params, inputs, targets, h0=None, truncate=None):
        zeros = np.zeros_like(h0[0])
        return correct(params, inputs, targets, (zeros, zeros.copy()), truncate)

    report = diagnose.check_backward(from_zeros, lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "h0-ignored"
    assert report.diagnosis.message == (
        "Your function ignores the initial state (h0, c0) it is given and starts from zeros: "
        "its gradients are exactly those of the same network with h0 = c0 = 0. Start the "
        "forward from it; it matters whenever the state is carried between chunks.")


def test_the_localisation_sentence_names_the_first_wrong_loss_counted_from_1():
    loc = diagnose.check_backward(load("clipped_carry")).localisation
    assert loc.message.startswith(
        "Run on the first T' = 1 … 5 steps, your gradient differs first in the terms of J_2 "
        "(t counted from 1): J_1 right, J_2 WRONG, J_3 WRONG, J_4 WRONG, J_5 WRONG. The terms "
        "of J_1 are right, so a single step is right")


@pytest.mark.parametrize("example", ["missing_tanh_derivative", "tanh_derivative_at_pre_activation",
                                     "tanh_applied_twice", "activation_for_derivative",
                                     "tanh_derivative_off_by_one"])
def test_a_wrong_tanh_derivative_is_told_the_line_that_computes_it(example):
    report = diagnose.check_backward(load(example))
    assert report.diagnosis.message.endswith("dJ_dz = dJ_dh * (1 - h_t**2).")


def test_a_nan_loss_returned_twice_is_not_called_state_kept_between_calls():
    """Two calls that both return a NaN loss return the same: NaN ≠ NaN is no change."""
    def nan_loss(params, inputs, targets, h0=None, truncate=None):
        _, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return float("nan"), grads, h_last

    report = diagnose.check_backward(nan_loss)
    assert report.repeatable and report.failures() == ["the loss differs"]
    assert not any("Called a second time" in m for m in report.messages())


def test_the_lstm_is_checked_with_a_c0_of_its_own():
    """c0 is random and not h0: a backward that starts its cell state from h0 fails."""
    problem = lstm_problem()
    assert np.abs(problem.c0 - problem.h0).max() > 0.1 and np.all(problem.c0 != 0)

    def c0_from_h0(params, inputs, targets, h0=None, truncate=None):
        return bptt.loss_and_grads(params, inputs, targets, h0=(h0[0], h0[0].copy()))

    assert not diagnose.check_backward(c0_from_h0, problem).passed


def test_a_sigma_gates_derivative_written_as_tanhs_is_named():
    i_as_tanh = _source_changed("lstm", "dJ_da_i = dJ_di * i * (1 - i)",
                                "dJ_da_i = dJ_di * (1 - i**2)")
    report = diagnose.check_backward(i_as_tanh, lstm_problem())
    assert report.diagnosis is not None
    assert report.diagnosis.name == "lstm-other-activation-derivative"
    assert report.diagnosis.message == (
        "The derivative of gate i's activation (input gate) is tanh's, 1 − i_t², but i_t = "
        "σ(a^i_t): ∂i_t/∂a^i_t = i_t ⊙ (1 − i_t): dJ_da_i = dJ_di * i * (1 - i).")


def test_a_gru_mixup_in_n_says_the_r_rows_go_wrong_with_it():
    n_at_z = _source_changed("gru", "dJ_da_n = dJ_dn * (1 - n**2)",
                             "dJ_da_n = dJ_dn * (1 - z**2)")
    report = diagnose.check_backward(n_at_z, diagnose.make_problem(cell="gru"))
    assert report.diagnosis is not None and report.diagnosis.name == "gru-gate-mixup"
    assert ("Gate mix-up: the derivative of gate n (candidate state) is taken at gate z's "
            "activation, 1 − z_t²," in report.diagnosis.message)
    assert ("Gate n's rows (block 3 of 3) and r's, whose error passes through it, go wrong "
            "first" in report.diagnosis.message)


def test_a_missing_dJ_dc0_under_truncation_to_one_step_is_not_called_a_cut_c_path():
    """Truncated to 1 step nothing is carried between steps, so "the c-path cut" changes only
    ∂J/∂c0, as "∂J/∂c0 is zero" does: the learner whose only mistake was a zero dc0 was told to
    carry dJ_dc back and add it to the next step's, which would break their truncation."""
    def c0_zero(params, inputs, targets, h0=None, truncate=None):
        loss, grads, terms = reference.loss_and_grads(params, inputs, targets, h0=h0,
                                                      truncate=truncate, cell="lstm")
        return loss, dict(grads, h0=terms.dJ_dstate0[0], c0=np.zeros_like(h0[1]))

    report = diagnose.check_backward(c0_zero, lstm_problem(truncate=1))
    assert report.diagnosis is not None and report.diagnosis.name == "c0-missing"
    assert "carried back" not in " ".join(report.messages())


def test_a_wrong_dJ_dc0_alone_is_told_what_dJ_dc0_is():
    report = diagnose.check_backward(
        _lstm_changed(lambda grads, *_: grads.update(c0=grads["c0"] + 0.1)), lstm_problem())
    assert report.diagnosis is None and report.failures() == ["1 of 8 gradients differ from "
                                                               "the reference"]
    assert report.messages() == ["Your ∂J/∂c0 differs from the reference: c_1 = f_1 ⊙ c0 + i_1 "
                                 "⊙ g_1, so ∂J/∂c0 = ∂J/∂c_1 ⊙ f_1."]


def test_a_bug_is_named_when_its_gradient_is_reproduced_to_MATCH_TOL():
    """−(1 + 1e-8) × the reference misses −1 × it by 5e-9 in compare_arrays' measure: past
    PASS_TOL (1e-9), within MATCH_TOL (1e-8), so still the flipped sign."""
    def nearly_flipped(params, inputs, targets, h0=None, truncate=None):
        result = bptt.backprop(params, inputs, targets, h0=h0)
        grads = dict(result.grads, h0=result.dJ_dstate0)
        return {k: -(1 + 1e-8) * v for k, v in grads.items()}

    report = diagnose.check_backward(nearly_flipped)
    assert report.diagnosis is not None and report.diagnosis.name == "sign"


def test_the_lstm_problem_says_it_starts_from_a_random_h0_and_c0():
    assert lstm_problem(truncate=2).describe() == (
        "LSTM (gates i, f, g, o), T = 5, B = 2, H = 4, D = 5, V = 4, float64, random non-zero "
        "biases and h0 and c0 (seed 0), truncated to 2 steps")


def test_a_wrong_lstm_final_state_is_told_to_start_from_h0_and_c0():
    correct = load_lstm("lstm_correct")

    def h_off(params, inputs, targets, h0=None, truncate=None):
        loss, grads, (h_T, c_T) = correct(params, inputs, targets, h0, truncate)
        return loss, grads, (h_T + 0.1, c_T)

    report = diagnose.check_backward(h_off, lstm_problem())
    assert report.failures() == ["h_last differs"]
    assert report.messages()[0].endswith("h_t = o_t ⊙ tanh c_t, starting from h0 and c0).")


def test_a_file_imports_its_own_neighbour_before_one_in_the_current_directory(tmp_path,
                                                                              monkeypatch):
    """As ``python mine.py`` does: the file's directory comes first in sys.path."""
    name = "_bptt_test_neighbour"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / f"{name}.py").write_text("WHICH = 'beside the file'\n")
    (tmp_path / f"{name}.py").write_text("WHICH = 'in the current directory'\n")
    (tmp_path / "mine" / "backward.py").write_text(f"from {name} import WHICH\n\n\n"
                                                   "def fn():\n    return WHICH\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        assert diagnose.load_backward("mine/backward.py:fn")() == "beside the file"
    finally:
        sys.modules.pop(name, None)


def test_a_bug_at_T_equal_1_in_both_weights_names_both_inputs():
    def both_doubled(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return loss, dict(grads, Wxh=2 * grads["Wxh"], Whh=2 * grads["Whh"]), h_last

    loc = diagnose.check_backward(both_doubled).localisation
    assert loc.first_wrong == 0 and loc.message.endswith(
        "what it is multiplied by is wrong, the input x_t for W^xh and the previous state h0 "
        "for W^hh.")


def test_a_float32_result_far_off_says_by_how_much():
    def doubled_in_float32(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return {k: (2 * v).astype(np.float32) for k, v in grads.items()}

    report = diagnose.check_backward(doubled_in_float32)
    worst = max(p.comparison.max_rel for p in report.params)
    assert 0.3 < worst < 0.4  # |2r − r| / (|2r| + |r|) = 1/3
    assert f"differ from the reference by up to {worst:.1g}: far more than float32's" in \
        report.messages()[0]


def test_lstm_weight_gradients_only_transposed_are_not_said_to_be_carried_back_wrongly():
    """dW^xh and dW^hh returned transposed (right values), nothing else wrong: the first step
    alone, judged on the biases only (the weights are not in their shape), said "every gate's
    rows are right: … the mistake is in how the errors ∂J/∂h and ∂J/∂c are carried back"."""
    def weights_transposed(grads, *_):
        grads.update(Wxh=grads["Wxh"].T, Whh=grads["Whh"].T)

    report = diagnose.check_backward(_lstm_changed(weights_transposed), lstm_problem())
    assert report.diagnosis is None and not report.passed
    assert not any("carried back" in m for m in report.messages())
    assert [m for m in report.messages() if "transposed" in m] == [
        "W^xh: Your ∂J/∂W^xh has the right values, transposed: return it in the shape of W^xh, "
        "(16, 5).",
        "W^hh: Your ∂J/∂W^hh has the right values, transposed: return it in the shape of W^hh, "
        "(16, 4)."]


@pytest.mark.parametrize(("example", "cell", "ending"), [
    ("sign_flipped", "rnn", "∂J_t/∂y_t = p_t − onehot(label_t), not onehot − p_t; and a gradient "
                            "is returned before the descent step's minus sign is applied."),
    ("truncated_two_steps", "rnn", "(If you meant truncated BPTT, check against the truncated "
                                   "reference: --truncate 2.)"),
    ("lstm_missing_sigmoid_derivative", "lstm", "so multiply by ∂f_t/∂a^f_t = f_t ⊙ (1 − f_t): "
                                                "dJ_da_f = dJ_df * f * (1 - f)."),
    ("lstm_tanh_c_prev", "lstm", "dJ_do = dJ_dh * np.tanh(c) with c = c_t (cs[t + 1] when cs[0] "
                                 "= c0, not cs[t])."),
], ids=["sign_flipped", "truncated_two_steps", "lstm_missing_sigmoid_derivative",
        "lstm_tanh_c_prev"])
def test_a_diagnosis_ends_with_the_fix(example, cell, ending):
    fn = diagnose.load_backward(f"{EXAMPLES / example}.py:{cell}_backward")
    report = diagnose.check_backward(fn, diagnose.make_problem(cell=cell))
    assert report.diagnosis.message.endswith(ending)


@pytest.mark.parametrize(("cell", "key", "said"), [
    ("lstm", "bxh", "Only db^xh is wrong, and your weight gradients are right: b^xh and b^hh both "
                    "add to a_t, so each gradient is Σ_t Σ_b ∂J/∂a_t (summed over steps and batch "
                    "rows), the same for both — accumulate it into each."),
    ("gru", "bxh", "Only db^xh is wrong, and your weight gradients are right: it is Σ_t Σ_b "
                   "∂J/∂a^ih_t (summed over steps and batch rows)."),
    ("gru", "bhh", "Only db^hh is wrong, and your weight gradients are right: it is Σ_t Σ_b "
                   "∂J/∂a^hh_t (summed over steps and batch rows), whose n block is r_t ⊙ "
                   "∂J/∂a^n_t: b^hn sits inside r_t ⊙ (W^hn h_{t−1} + b^hn)."),
], ids=["lstm-bxh", "gru-bxh", "gru-bhh"])
def test_a_bias_gradient_left_zero_is_told_its_formula(cell, key, said):
    correct = load_lstm("lstm_correct") if cell == "lstm" else load_gru("gru_correct")

    def left_zero(params, inputs, targets, h0=None, truncate=None):
        loss, grads, state = correct(params, inputs, targets, h0, truncate)
        return loss, dict(grads, **{key: np.zeros_like(grads[key])}), state

    assert diagnose.check_backward(left_zero, diagnose.make_problem(cell=cell)).messages()[-1] \
        == said


def test_an_lstm_missing_dJ_dh0_is_told_the_lstms_formula():
    report = diagnose.check_backward(
        _lstm_changed(lambda grads, *_: grads.update(h0=np.zeros_like(grads["h0"]))),
        lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "h0-missing"
    assert report.diagnosis.message == (
        "Your ∂J/∂h0 is zero, but the initial state feeds the first step: ∂J/∂h0 = W^hhᵀ "
        "∂J/∂a_1, the error carried one step past the first.")


def test_an_lstm_cut_to_one_step_is_told_the_lstms_step_jacobian():
    def one_step(params, inputs, targets, h0=None, truncate=None):
        loss, grads, terms = reference.loss_and_grads(params, inputs, targets, h0=h0, truncate=1,
                                                      cell="lstm")
        return loss, dict(grads, h0=terms.dJ_dstate0[0], c0=terms.dJ_dstate0[1])

    report = diagnose.check_backward(one_step, lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "truncated"
    assert report.diagnosis.message.startswith(
        "Your dW^hh keeps only 1 step of the recurrence: the term ∂(h_t, c_t)/∂(h_{t−1}, "
        "c_{t−1}) (through W^hh and through c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t) is missing")


def test_a_gru_transposed_dWhh_is_told_the_grus_formula():
    correct = load_gru("gru_correct")

    def whh_transposed(params, inputs, targets, h0=None, truncate=None):
        loss, grads, state = correct(params, inputs, targets, h0, truncate)
        return loss, dict(grads, Whh=grads["Whh"].T), state

    report = diagnose.check_backward(whh_transposed, diagnose.make_problem(cell="gru"))
    assert report.diagnosis is not None and report.diagnosis.name == "transposed"
    assert report.diagnosis.message == (
        "Your dW^hh is the transpose of the right gradient: ∂J/∂W^hh = Σ_t ∂J/∂a^hh_t h_{t−1}ᵀ, "
        "shaped like W^hh (3H × H): in batch rows dJ_da_hh.T @ h_prev, not h_prev.T @ dJ_da_hh.")


def test_an_lstm_in_tensorflows_gate_order_is_named_as_that_order():
    order = ("i", "g", "f", "o")  # the learner's blocks of H rows, top to bottom

    def tf_order(params, inputs, targets, h0=None, truncate=None):
        H = params["Whh"].shape[1]

        def moved(a, to, frm):  # block of gate g from frm's order into to's
            return np.concatenate([a[frm.index(g) * H:(frm.index(g) + 1) * H] for g in to])

        mine = {k: moved(v, diagnose.GATES, order) if k in ("Wxh", "Whh", "bxh", "bhh") else v
                for k, v in params.items()}
        loss, grads, terms = reference.loss_and_grads(mine, inputs, targets, h0=h0, cell="lstm")
        grads = {k: moved(v, order, diagnose.GATES) if k in ("Wxh", "Whh", "bxh", "bhh") else v
                 for k, v in grads.items()}
        return loss, dict(grads, h0=terms.dJ_dstate0[0], c0=terms.dJ_dstate0[1])

    report = diagnose.check_backward(tf_order, lstm_problem())
    assert report.diagnosis is not None and report.diagnosis.name == "lstm-gate-order"
    assert ("the gate blocks in the order i, g, f, o (TensorFlow 1's LSTMCell's order)"
            in report.diagnosis.message)


def test_a_gru_bug_inside_one_gate_is_placed_on_the_first_step_with_the_grus_factors():
    halved = _source_changed("gru", "dJ_da_z = dJ_dz * z * (1 - z)",
                             "dJ_da_z = 0.5 * dJ_dz * z * (1 - z)")
    report = diagnose.check_backward(halved, diagnose.make_problem(cell="gru"))
    assert report.diagnosis is None
    assert report.findings[-1] == (
        "On the first step alone (T = 1, nothing carried back through time) only gate z's rows "
        "are wrong: the mistake lives in that gate’s part of a single step (its activation's "
        "derivative, its bias or weights, its factor in n_t = tanh(a^in_t + r_t ⊙ a^hn_t) or "
        "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}); later steps spoil the other gates through the "
        "error carried back.")


def test_a_missing_name_lists_up_to_8_functions_of_the_file(tmp_path):
    for count, listed in ((8, "f1, f2, f3, f4, f5, f6, f7, f8)"),
                          (9, "f1, f2, f3, f4, f5, f6, f7, f8, …)")):
        path = tmp_path / f"mine{count}.py"
        path.write_text("".join(f"def f{n}():\n    pass\n\n\n" for n in range(1, count + 1)))
        with pytest.raises(BpttError) as raised:
            diagnose.load_backward(f"{path}:rnn_backward")
        assert str(raised.value).endswith(f"has no function 'rnn_backward' (it defines: {listed}")


def test_a_boolean_gradient_is_judged_as_numbers_not_refused():
    report = diagnose.check_backward(_changed("bh", lambda g, *_: g["bh"] > 0))
    row = next(p for p in report.params if p.name == "bh")
    assert not row.passed and row.comparison is not None
    assert report.params[0].passed  # the others are still judged


def test_a_head_wrong_with_the_recurrence_after_the_first_step_is_said_to_be_the_heads():
    def off_after_the_first_step(params, inputs, targets, h0=None, truncate=None):
        loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        off = 0.01 * (inputs.shape[0] - 1)  # zero on the first step alone
        return loss, dict(grads, Why=grads["Why"] + off, Wxh=grads["Wxh"] + off), h_last

    loc = diagnose.check_backward(off_after_the_first_step).localisation
    assert loc.first_wrong == 1 and loc.steps[1].wrong == ("Wxh", "Why")
    assert "The terms of J_1 are right, but the head's terms of J_2 are not (W^hy)" in loc.message
    assert "a single step is right" not in loc.message


def test_a_pass_with_H_equal_to_1_says_what_to_check_again_with():
    report = diagnose.check_backward(load("correct"), diagnose.make_problem(hidden=1))
    assert report.passed and report.messages() == [
        "With H = 1, W^hh is 1 × 1: a transposed dW^hh, or W^hh where W^hhᵀ carries the error "
        "back, gives the same numbers and cannot show here. Check again with --hidden 2 or more."]


def test_a_gradient_left_at_zero_is_judged_without_numpy_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = diagnose.check_backward(_changed("Why", lambda g, *_: np.zeros_like(g["Why"])))
    assert not report.passed


def test_a_second_call_that_returns_other_keys_is_not_repeatable():
    calls = []

    def h0_only_the_second_time(params, inputs, targets, h0=None, truncate=None):
        calls.append(1)
        result = bptt.backprop(params, inputs, targets, h0=h0)
        if len(calls) % 2 == 0:
            return dict(result.grads, h0=result.dJ_dstate0)
        return dict(result.grads)

    report = diagnose.check_backward(h0_only_the_second_time, probe=False)
    assert not report.repeatable and not report.passed
    assert report.failures() == ["a second call returns other results"]


def test_a_mean_over_time_of_one_sequence_is_named_as_a_mean_over_time():
    """With B = 1, 1/(T·B) is 1/T: a division by T was called "the MEAN loss over time and
    batch", and 1/B = 1 was tried as a "mean over the batch" factor."""
    def mean_over_time(params, inputs, targets, h0=None, truncate=None):
        _, grads, _ = bptt.loss_and_grads(params, inputs, targets, h0=h0)
        return {k: v / inputs.shape[0] for k, v in grads.items()}

    assert diagnose._fraction(1.0, 5, 1) is None
    report = diagnose.check_backward(mean_over_time, diagnose.make_problem(seq_len=5, batch=1))
    assert report.diagnosis is not None and report.diagnosis.name == "mean"
    assert report.diagnosis.message.startswith(
        "You differentiate the MEAN over time (B = 1 here, so the mean over time and batch "
        "too): every gradient is 1/T = 1/5 of the reference")


def test_a_loss_below_1_is_held_and_shown_to_an_absolute_error():
    """The loss row's error is the one its verdict is held to, |yours − J| / max(|J|, 1): for
    a J below 1 an absolute error (a relative one would make round-off of a tiny J a FAIL)."""
    problem = diagnose.make_problem()
    near = diagnose._loss_check(1e-12 + 5e-11, 1e-12, problem)
    assert near.passed and near.rel_error == pytest.approx(5e-11, rel=1e-9)
    off = diagnose._loss_check(0.3, 0.2, problem)
    assert not off.passed and off.rel_error == pytest.approx(0.1, rel=1e-12)
    big = diagnose._loss_check(22.0, 20.0, problem)
    assert not big.passed and big.rel_error == pytest.approx(0.1, rel=1e-12)
