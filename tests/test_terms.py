"""`bptt terms`: the (t, k) terms of ∂J/∂W^hh re-added give the efficient gradient exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests_support import bptt_here

import bptt
from bptt import terms


def bptt_cli(*args, cwd):
    """``bptt ARGS`` from ``cwd``, by its entry point in this process (bptt_here)."""
    return bptt_here(*args, cwd=cwd)


def _problem_from_json(cell: str, problem: dict):
    params = {k: np.array(v, dtype=np.float64) for k, v in problem["params"].items()}
    h0 = tuple(np.array(s) for s in problem["h0"]) if cell == "lstm" else np.array(problem["h0"])
    return params, np.array(problem["inputs"]), np.array(problem["targets"]), h0


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_json_terms_re_added_equal_the_efficient_gradient(tmp_path, cell):
    run = bptt_cli("terms", "--cell", cell, "--seq-len", "4", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["notation"].startswith("t and k are 1-based")
    T = doc["T"]
    assert [(term["t"], term["k"]) for term in doc["terms"]] == [
        (t, k) for t in range(1, T + 1) for k in range(1, t + 1)]
    # the efficient backward, run here on the problem the command printed
    params, inputs, targets, h0 = _problem_from_json(cell, doc["problem"])
    efficient = bptt.backprop(params, inputs, targets, h0=h0)
    total = sum(np.array(term["value"]) for term in doc["terms"])
    np.testing.assert_allclose(total, efficient.grads["Whh"], rtol=0, atol=1e-12)
    for term in doc["terms"]:
        assert term["norm"] == pytest.approx(np.linalg.norm(term["value"]), rel=1e-12)
    # grouped by k: Σ_t ∂J_t/∂h_k is the efficient dJ_dh[k]
    for k in range(1, T + 1):
        grouped = sum(np.array(d["value"]) for d in doc["dJt_dh"] if d["k"] == k)
        np.testing.assert_allclose(grouped, efficient.dJ_dh[0][0, k - 1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(doc["by_k"][k - 1]["efficient_dJ_dh"], efficient.dJ_dh[0][0, k - 1],
                                   rtol=0, atol=0)


def test_text_output_labels_the_terms_one_based(tmp_path):
    run = bptt_cli("terms", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "Steps are numbered t, k = 1 … 3 as in the derivation" in out
    assert "The 6 terms, one per (t, k) with k ≤ t:" in out
    lines = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [(int(a), int(b)) for a, b, *_ in lines] == [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3)]
    assert "efficient dJ_dh[3]" in out and "max |Σ terms − efficient dW^hh|" in out


def test_the_library_expansion_matches_for_every_cell():
    for cell in ("rnn", "lstm", "gru"):
        e = terms.expand_whh(cell, seq_len=3, hidden=2, seed=1)
        assert e.max_diff_grad < 1e-14
        assert max(e.max_diff_dJ_dh(k) for k in range(e.T)) < 1e-14
        assert np.isnan(e.norms[0, 1]) and e.terms.shape[:2] == (3, 3)
        assert not e.terms[0, 1].any()  # k > t: no term


def test_terms_refuses_huge_sizes(tmp_path):
    run = bptt_cli("terms", "--seq-len", "51", cwd=tmp_path)
    assert run.returncode == 2 and "keep --seq-len <= 50" in run.stderr


def test_a_step_outside_the_sequence_is_refused():
    # it was a raw IndexError, and a negative k silently read from the end
    report = terms.expand_whh(seq_len=3)
    for k in (3, -1, 1.0):
        with pytest.raises(bptt.BpttError, match=r"k must be a step 0 … 2"):
            report.max_diff_dJ_dh(k)
    # the problem's sizes and seed are checked (numpy's TypeError or ValueError before)
    for kwargs, message in ((dict(seq_len=2.0), "seq_len must be an integer >= 1"),
                            (dict(seed=-1), "seed must be an integer >= 0")):
        with pytest.raises(bptt.BpttError, match=message):
            terms.expand_whh(**kwargs)
        with pytest.raises(bptt.BpttError, match=message):
            bptt.gradcheck.check_model(**kwargs)


@pytest.mark.parametrize("cell, words", [
    ("gru", "∂h_k/∂a^hh_k · ∂a^hh_k/∂W^hh"), ("lstm", "∂s_k/∂a_k · ∂a_k/∂W^hh")])
def test_the_double_sum_is_written_in_the_cells_own_variables(tmp_path, cell, words):
    """The header wrote the RNN's ∂h_k/∂z_k · ∂z_k/∂W^hh for every cell: for the GRU z_k is the
    update gate, so it read as the path through z alone; the LSTM's state is [h_k; c_k]."""
    out = bptt_cli("terms", "--cell", cell, cwd=tmp_path).stdout
    header = out.split("Problem:")[0]
    assert words in header and "∂z_k" not in header


@pytest.mark.parametrize("cell, lines", [
    ("rnn", ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂z_k · ∂z_k/∂W^hh"]),
    ("gru", ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂a^hh_k · ∂a^hh_k/∂W^hh",
             "(a^hh_k = W^hh h_{k−1} + b^hh, rows r z n; z_k is the update gate)"]),
    ("lstm", ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂s_k · ∂s_k/∂a_k · ∂a_k/∂W^hh",
              "(the state s_k = [h_k; c_k]; a_k = W^hh h_{k−1} + W^xh x_k + b, rows i f g o)"]),
])
def test_the_header_defines_the_cells_variables_and_the_lstm_says_what_is_not_shown(
        capsys, cell, lines):
    """The GRU's and LSTM's double sum comes with what its variables are; the LSTM's terms
    ∂J_t/∂h_k hold c_k fixed, which only its output says."""
    from bptt import cli

    assert cli.main(["terms", "--cell", cell]) == 0
    out = capsys.readouterr().out
    header = out.split("Problem:")[0].splitlines()
    assert header[1:] == [f"    {line}" for line in lines]
    note = ("(∂J_t/∂h_k holds c_k fixed: the error c_k carries, ∂J_t/∂c_k, is the other half of "
            "∂J_t/∂s_k, not shown)\n")
    assert (note in out) == (cell == "lstm")


# --- found by a mutation audit: each test kills a mutant that survived the tests above ------


def test_json_sums_are_the_terms_re_added_not_the_efficient_numbers(tmp_path):
    """The sums the command shows are computed from the terms (they differ from the efficient
    backward's by round-off, not by nothing), with the largest differences between them."""
    from bptt import reference

    run = bptt_cli("terms", "--seq-len", "4", "--seed", "5", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    params, inputs, targets, h0 = _problem_from_json("rnn", doc["problem"])
    assert doc["seed"] == 5 and inputs.shape == (4, 1)  # B = 1, as the text says
    expected = bptt.gradcheck.random_problem("rnn", 3, 4, 1, 1, 5)
    assert all(np.array_equal(params[k], expected[0][k]) for k in params)
    _, _, ref = reference.loss_and_grads(params, inputs, targets, h0=h0)
    efficient = bptt.backprop(params, inputs, targets, h0=h0)
    total = ref.contributions["Whh"].sum(axis=(0, 1))
    assert doc["dWhh_sum_of_terms"] == total.tolist()
    assert doc["dWhh_efficient"] == efficient.grads["Whh"].tolist()
    assert doc["max_abs_diff"] == np.max(np.abs(total - efficient.grads["Whh"]))
    grouped = ref.dJt_dh[0].sum(axis=0)
    for k, row in enumerate(doc["by_k"]):
        assert row["sum_t_dJt_dh"] == grouped[k].tolist()
        assert row["max_abs_diff"] == np.max(np.abs(grouped[k] - efficient.dJ_dh[0][0, k]))
    for d in doc["dJt_dh"]:
        assert d["value"] == ref.dJt_dh[0][d["t"] - 1, d["k"] - 1].tolist()


def test_the_largest_differences_are_of_absolute_values():
    import dataclasses

    e = terms.expand_whh()
    lower = dataclasses.replace(e, grad_sum=e.grad_efficient - 0.5,
                                dJ_dh_grouped=e.dJ_dh_efficient - 0.25)
    # x − 0.25 and back is 0.25 only to round-off (exactly, for these values' bits)
    assert lower.max_diff_grad == pytest.approx(0.5, rel=1e-12)
    assert lower.max_diff_dJ_dh(1) == pytest.approx(0.25, rel=1e-12)


def test_text_output_gives_each_terms_distance_and_norm_and_each_group(capsys):
    from bptt import cli

    assert cli.main(["terms"]) == 0
    out = capsys.readouterr().out
    e = terms.expand_whh()
    assert "B = 1, float64, random non-zero biases and initial state (seed 0)" in out
    lines = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    for t, k, distance, norm in lines:
        t, k = int(t), int(k)
        assert int(distance) == t - k
        assert float(norm) == pytest.approx(e.norms[t - 1, k - 1], rel=1e-6)
    assert f"max |Σ terms − efficient dW^hh| = {e.max_diff_grad:.1e}\n" in out
    groups = out.split("  k = ")[1:]
    assert len(groups) == 3
    for k, group in enumerate(groups, start=1):
        labels = [line.split(" = ")[0].strip() for line in group.splitlines()[1:-1]
                  if " = [" in line]
        assert labels == [f"∂J_{t}/∂h_{k}" for t in range(k, 4)] + [
            f"Σ_t ∂J_t/∂h_{k}", f"efficient dJ_dh[{k}]"]
        assert f"max |Σ − efficient| = {e.max_diff_dJ_dh(k - 1):.1e}" in group


def test_the_header_gives_the_shape_of_dWhh_and_a_long_vector_is_cut(capsys):
    from bptt import cli

    assert cli.main(["terms", "--cell", "lstm", "--hidden", "9", "--seq-len", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dJ/dW^hh of one lstm layer (36×9) as the double sum")
    assert "∂J_1/∂h_1 = [" in out
    vectors = [line for line in out.split("Grouped by k")[1].splitlines() if " = [" in line]
    assert len(vectors) == 2 * (2 + 2) - 1 and all(line.endswith(", …]") and line.count(",") == 8 for line in vectors)


@pytest.mark.parametrize(("args", "code"), [
    (("--seq-len", "50"), 0), (("--hidden", "64", "--seq-len", "2"), 0),
    (("--hidden", "65"), 2)])
def test_terms_takes_sizes_up_to_its_limits(tmp_path, args, code):
    run = bptt_cli("terms", *args, cwd=tmp_path)
    assert run.returncode == code, run.stderr
    if code:
        assert "keep --seq-len <= 50 and --hidden <= 64" in run.stderr


# --- mutation audit (2): the printed norms and vectors -------------------------------------


def test_the_text_gives_both_norms_of_dWhh_and_vectors_of_eight_entries_whole(capsys):
    """The two ‖·‖_F lines are of the sum of the terms and of the efficient dW^hh (each its
    own); a vector of SHOWN = 8 entries is printed whole, each to 6 decimals, with no "…"."""
    from bptt import cli

    assert cli.main(["terms", "--hidden", "8", "--seq-len", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    e = terms.expand_whh("rnn", 2, 8, 1)
    assert f"\nΣ of all terms      ‖·‖_F = {np.linalg.norm(e.grad_sum):.12e}\n" in out
    assert f"\nefficient dW^hh     ‖·‖_F = {np.linalg.norm(e.grad_efficient):.12e}\n" in out
    values = ", ".join(f"{x:+.6f}" for x in e.dJt_dh[1, 0].reshape(-1))
    assert f"    ∂J_2/∂h_1 = [{values}]\n" in out
    assert "…]" not in out
