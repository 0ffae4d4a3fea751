"""Gradient flow ‖∂J_t/∂h_k‖: the dedicated walk equals the reference; the PNG and CSV are right."""

from __future__ import annotations

import csv
import inspect
import itertools

import numpy as np
import pytest
from tests_support import bptt_here, png_size

import bptt
from bptt import checkpoint, flow, gradcheck, reference


def bptt_cli(*args, cwd):
    """``bptt ARGS`` from ``cwd``, by its entry point in this process (bptt_here)."""
    return bptt_here(*args, cwd=cwd)


def reference_norms(params, inputs, targets, h0=None, layer=-1) -> np.ndarray:
    """‖∂J_t/∂h_k‖ straight from the reference double sum's terms; NaN above the diagonal."""
    _, _, terms = reference.loss_and_grads(params, inputs, targets, h0=h0,
                                           keep_contributions=False)
    dJt_dh = terms.dJt_dh[layer]  # (T, T, B, H)
    norms = np.sqrt((dJt_dh**2).sum(axis=(2, 3)))
    norms[np.triu_indices(norms.shape[0], 1)] = np.nan
    return norms


def read_csv(path) -> dict[tuple[str, int, int], float]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cell", "t", "k", "distance", "norm"]
    assert all(int(r["distance"]) == int(r["t"]) - int(r["k"]) >= 0 for r in rows)
    return {(r["cell"], int(r["t"]), int(r["k"])): float(r["norm"]) for r in rows}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_walk_equals_the_reference_terms(cell, layers):
    params, inputs, targets, h0 = gradcheck.random_problem(cell, 3, 6, 2, layers, seed=2)
    for layer in range(layers):
        mine = flow.dJt_dh_norms(params, inputs, targets, h0, layer=layer)
        ref = reference_norms(params, inputs, targets, h0, layer=layer)
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=0)


def test_mean_by_distance_averages_the_diagonals():
    F = np.array([[1.0, np.nan, np.nan], [2.0, 3.0, np.nan], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(flow.mean_by_distance(F), [10 / 3, 3.5, 4.0])


def test_plots_are_figures_with_the_stated_pixel_size():
    report = flow.flow_on_text("abcabcabcabd", "rnn", hidden=4)
    fig = flow.plot_flow(report)
    assert np.allclose(fig.get_size_inches() * fig.dpi, (500, 440))
    assert np.allclose(flow.plot_compare([report] * 3).get_size_inches() * flow.DPI, (1600, 440))
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("k") and ax.get_ylabel().startswith("t")
    assert type(ax.images[0].norm).__name__ == "LogNorm"
    image = ax.images[0].get_array()
    assert image.mask[0, 1] and not image.mask[1, 0]  # the upper triangle (k > t) is masked
    assert len(flow.plot_distance([report, report]).axes[0].lines) == 2


@pytest.mark.parametrize("T", [1, 2])
def test_short_sequences_are_labelled_in_whole_steps_inside_the_figure(T):
    """T = 1 or 2 drew steps 0.5, 0.75, 1.25 … on both heatmap axes and the distance axis,
    and labels of a log axis spanning less than a decade (5.75×10⁻¹) ran off the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    reports = flow.compare_cells("abcab", hidden=4, seq_len=T)
    figures = [flow.plot_flow(reports[0]), flow.plot_compare(reports), flow.plot_distance(reports)]
    for fig in figures:
        FigureCanvasAgg(fig).draw()
        width, height = fig.bbox.width, fig.bbox.height
        heatmaps = fig.axes[:-1] if fig is not figures[2] else []
        for ax in heatmaps:
            assert set(ax.get_xticks()) & set(range(1, T + 1)) == set(range(1, T + 1))
            assert all(float(v).is_integer() for v in [*ax.get_xticks(), *ax.get_yticks()])
        for ax in fig.axes:
            low, high = sorted(ax.get_ylim())
            shown = [label for locs, labels in (
                (ax.yaxis.get_majorticklocs(), ax.yaxis.get_majorticklabels()),
                (ax.yaxis.get_minorticklocs(), ax.yaxis.get_minorticklabels()))
                for loc, label in zip(locs, labels, strict=True)
                if low <= loc <= high and label.get_text()]
            for label in [ax.yaxis.label, *shown]:
                box = label.get_window_extent()
                assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, \
                    label.get_text()
            if ax.get_yscale() == "log" and high / low < 10:  # labelled 0.2, not 2×10⁻¹
                assert all("times" not in label.get_text() for label in shown), \
                    [label.get_text() for label in shown]
    assert all(float(v).is_integer() for v in figures[2].axes[0].get_xticks())


def test_the_figure_api_only_never_pyplot():
    import bptt.cli.flow

    for module in (flow, bptt.cli.flow):
        source = inspect.getsource(module)
        assert "import matplotlib.pyplot" not in source and "import pyplot" not in source
        assert "matplotlib.use(" not in source and "plt." not in source


def test_a_learners_mistake_in_the_flow_api_is_a_bptt_error():
    # each was a raw AttributeError, ValueError or TypeError from matplotlib or numpy
    import matplotlib.pyplot

    report = flow.flow_on_text("abcdabcd", hidden=4)
    for call, message in (
        (lambda: flow.plot_flow(report, fig=matplotlib.pyplot), "fig must be a matplotlib Figure"),
        (lambda: flow.plot_compare([]), "give a non-empty list of FlowReports"),
        (lambda: flow.flow_on_text("abcd", seq_len=2.0), "seq_len must be an integer >= 1"),
        (lambda: flow.flow_on_text("abcd", seed=-1), "seed must be an integer >= 0"),
        (lambda: flow.mean_by_distance(np.ones((3, 2))), r"square \(T, T\) array"),
        (lambda: flow.flow_for_checkpoint(None), "path must be a checkpoint's path, got NoneType"),
        (lambda: flow.dJt_dh_norms(bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0)),
                                   np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64),
                                   layer="0"),
         r"layer must be in \[0, 1\), got '0'"),
    ):
        with pytest.raises(bptt.BpttError, match=message):
            call()
    # one report, or one cell name, where a list is asked for: taken as a list of one
    assert flow.to_csv(report) == flow.to_csv([report])
    assert [r.cell for r in flow.compare_cells(cells="gru", hidden=4)] == ["gru"]


def test_the_sequence_must_fit_the_text():
    with pytest.raises(bptt.BpttError, match="at most 3 steps"):
        flow.flow_on_text("abcd", seq_len=5)


def test_flow_of_a_checkpoint_writes_png_and_csv_equal_to_the_reference(tmp_path):
    text = "a stitch in time saves nine, and nine stitches save time"
    vocab = sorted(set(text))
    params = bptt.init_params("lstm", len(vocab), 5, len(vocab), rng=np.random.default_rng(3),
                              dtype=np.float64, num_layers=2)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint.save_model(run_dir, params, vocab)
    (tmp_path / "proverb.txt").write_text(text)
    run = bptt_cli("flow", "--checkpoint", str(run_dir), "--file", "proverb.txt", "--seq-len",
                   "30", "--out", "pictures", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "pictures"
    assert png_size(out / "flow.png") == (500, 440)
    assert png_size(out / "flow_distance.png") == (500, 440)
    # the numbers, computed here independently from the reference's ∂J_t/∂h_k
    ids = np.array([vocab.index(c) for c in text])
    expected = reference_norms(params, ids[:30, None], ids[1:31, None])
    numbers = read_csv(out / "flow.csv")
    assert len(numbers) == 30 * 31 // 2
    for (cell, t, k), value in numbers.items():
        assert cell == "lstm"
        assert value == pytest.approx(expected[t - 1, k - 1], rel=1e-12)
    assert "wrote pictures/flow.png (500×440)" in run.stdout


def test_compare_draws_three_cells_side_by_side(tmp_path):
    run = bptt_cli("flow", "--compare", "--hidden", "16", "--seq-len", "40", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert png_size(tmp_path / "flow.png") == (1600, 440)
    assert png_size(tmp_path / "flow_distance.png") == (500, 440)
    numbers = read_csv(tmp_path / "flow.csv")
    assert {cell for cell, _, _ in numbers} == {"rnn", "lstm", "gru"}
    assert len(numbers) == 3 * 40 * 41 // 2
    # the vanishing gradient: the vanilla RNN keeps least of J_40's error at h_1
    kept = {c: numbers[(c, 40, 1)] / numbers[(c, 40, 40)] for c in ("rnn", "lstm", "gru")}
    assert kept["rnn"] < 1e-8 and kept["rnn"] < kept["gru"] < kept["lstm"]
    assert "J_40 → h_1 keeps" in run.stdout
    # the same numbers as the library gives for the documented fresh models
    again = flow.compare_cells(flow.DEFAULT_TEXT, hidden=16, seq_len=40)
    for report in again:
        assert numbers[(report.cell, 40, 3)] == report.norms[39, 2]


@pytest.mark.parametrize(("args", "message"), [
    (["--text", "abc", "--seq-len", "9"], "enough for a sequence of at most 2 steps"),
    (["--checkpoint", "nowhere"], "no checkpoint at nowhere"),
    (["--compare", "--cell", "rnn"], "leave out --cell"),
    (["--file", "missing.txt"], "does not exist"),
    (["--cell", "rnn", "--forget-bias", "2"], "--forget-bias sets up a fresh LSTM"),
    (["--torch-init"], "--torch-init sets up a fresh LSTM"),
    (["--cell", "lstm", "--torch-init", "--forget-bias", "1"], "leave out --forget-bias"),
    (["--cell", "lstm", "--forget-bias", "nan"], "--forget-bias must be a finite number"),
    (["--checkpoint", "run", "--forget-bias", "2"], "--forget-bias does not apply with"),
    (["--checkpoint", "run", "--seed", "3"], "--seed does not apply with --checkpoint"),
])
def test_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    run = bptt_cli("flow", *args, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr and run.stderr.count("\n") == 1
    assert not (tmp_path / "flow.png").exists()


# --- found by a mutation audit: each test kills a mutant that survived the tests above ------


def test_the_csv_lists_each_loss_t_then_each_step_k_in_full_precision():
    """Rows in the order of the heatmap's rows: t = 1 … T, and within t, k = 1 … t."""
    norms = np.array([[0.1, np.nan, np.nan], [0.2, 1 / 3, np.nan], [0.4, 0.5, 0.6]])
    report = flow.FlowReport("gru", 4, 1, "abcd", norms, "test")
    assert flow.to_csv([report]) == (
        "cell,t,k,distance,norm\n"
        "gru,1,1,0,0.1\n"
        "gru,2,1,1,0.2\n"
        "gru,2,2,0,0.3333333333333333\n"
        "gru,3,1,2,0.4\n"
        "gru,3,2,1,0.5\n"
        "gru,3,3,0,0.6\n")


def test_a_layer_past_the_top_is_refused():
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0))
    ids = np.zeros((2, 1), np.int64)
    with pytest.raises(bptt.BpttError, match=r"layer must be in \[0, 1\), got 1"):
        flow.dJt_dh_norms(params, ids, ids, layer=1)


def test_the_default_sequence_is_the_whole_text_and_the_report_keeps_what_was_read():
    text = "abcabcabcabd"
    report = flow.flow_on_text(text, hidden=4)
    assert report.T == len(text) - 1 and report.text == text
    # the decay is the last loss's error at h_1 over its size at h_T
    F = reference_norms(*_fresh_problem(text, hidden=4))
    assert report.decay() == pytest.approx(F[-1, 0] / F[-1, -1], rel=1e-12)
    with pytest.raises(bptt.BpttError, match="at most 3 steps"):
        flow.flow_on_text("abcd", seq_len=4)
    with pytest.raises(bptt.BpttError, match="seq_len must be from 1 to 500, got 501"):
        flow.flow_on_text("ab" * 300, seq_len=501)


def _fresh_problem(text, hidden, cell="rnn", seed=0):
    """flow_on_text's documented fresh model and sequence: (params, inputs, targets)."""
    vocab = sorted(set(text))
    params = bptt.init_params(cell, len(vocab), hidden, len(vocab),
                              rng=np.random.default_rng(seed), dtype=np.float64,
                              forget_bias=flow.DEFAULT_FORGET_BIAS if cell == "lstm" else None)
    ids = np.array([vocab.index(c) for c in text])
    return params, ids[:-1, None], ids[1:, None]


def test_compare_uses_the_seed_it_is_given_and_says_the_forget_bias_only_for_an_lstm():
    text = "abcabcabcabd"
    for report in flow.compare_cells(text, hidden=4, seed=3):
        expected = reference_norms(*_fresh_problem(text, 4, report.cell, seed=3))
        np.testing.assert_allclose(report.norms, expected, rtol=1e-12)
        assert report.source == "fresh models, seed 3, LSTM forget bias 1"
    assert [r.source for r in flow.compare_cells(text, ("rnn", "gru"), hidden=4)] == [
        "fresh models, seed 0"] * 2


def test_the_pictures_show_every_point_on_one_scale_with_t_downwards():
    reports = flow.compare_cells("abcabcabcabcabcabcabcabcabcab", hidden=4)
    T = reports[0].T
    positive = np.concatenate([r.norms[np.isfinite(r.norms)] for r in reports])
    compare = flow.plot_compare(reports)
    for ax in compare.axes[:-1]:
        assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (positive.min(),
                                                                     positive.max())
        assert ax.get_ylim() == (T + 0.5, 0.5)  # t = 1 at the top, as the rows of F
    single = flow.plot_flow(reports[0])
    assert single.axes[0].get_ylim() == (T + 0.5, 0.5)
    # (the suptitle is one of the figure's texts; Figure.get_suptitle is matplotlib ≥ 3.8)
    assert any(f"T = {T} — fresh models" in t.get_text() for t in single.texts)
    ax = flow.plot_distance(reports).axes[0]
    for line, report in zip(ax.lines, reports, strict=True):
        np.testing.assert_array_equal(line.get_ydata(), flow.mean_by_distance(report.norms))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "rnn (H = 4)", "lstm (H = 4)", "gru (H = 4)"]


def test_flow_of_a_checkpoint_reads_the_default_text_it_knows(tmp_path):
    vocab = sorted(set("the cat"))
    params = bptt.init_params("rnn", len(vocab), 3, len(vocab), rng=np.random.default_rng(0),
                              dtype=np.float64)
    (tmp_path / "run").mkdir()
    checkpoint.save_model(tmp_path / "run", params, vocab)
    report = flow.flow_for_checkpoint(tmp_path / "run")
    known = "".join(c for c in flow.DEFAULT_TEXT if c in vocab)
    assert report.text == known[:flow.DEFAULT_SEQ_LEN + 1]


def test_a_checkpoint_with_an_unknown_token_reads_characters_outside_its_vocabulary_as_it(
        tmp_path):
    """A model trained with --unk reads unseen characters as its token, in flow as in sample
    (the refusal said 'a model trained with --unk CHAR reads unknown characters as CHAR' of
    such a model); without the token they stay an error."""
    vocab = sorted(set("the cat sat?"))
    params = bptt.init_params("gru", len(vocab), 4, len(vocab), rng=np.random.default_rng(1),
                              dtype=np.float64)
    for name, config in (("unk", {"unk": "?"}), ("plain", {})):
        (tmp_path / name).mkdir()
        checkpoint.save_model(tmp_path / name, params, vocab, config)
    run = bptt_cli("flow", "--checkpoint", "unk", "--text", "the caté sät", "--out", "pictures",
                   cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ids = np.array([vocab.index(c) for c in "the cat? s?t"])
    expected = reference_norms(params, ids[:-1, None], ids[1:, None])
    for (_, t, k), value in read_csv(tmp_path / "pictures" / "flow.csv").items():
        assert value == pytest.approx(expected[t - 1, k - 1], rel=1e-12)
    refused = bptt_cli("flow", "--checkpoint", "plain", "--text", "the caté", cwd=tmp_path)
    assert refused.returncode == 2
    assert "not in the vocabulary: 'é'" in refused.stderr


def test_an_unknown_character_token_outside_the_vocabulary_is_refused():
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0), dtype=np.float64)
    with pytest.raises(bptt.BpttError, match=r"^the unknown-character token '\?' is not in "
                                             r"the model's vocabulary$"):
        flow.flow_for_model(params, list("abc"), "abcab", unk="?")


def test_the_command_draws_a_fresh_rnn_of_32_units_and_summarises_it(tmp_path, capsys):
    """Its defaults (rnn, H = 32, seed 0), and the summary: the text (cut at 40 characters),
    the mean norm at each distance shown, J_T's decay, the number of CSV rows."""
    from bptt import cli

    text = "abcdefghij" * 4 + "abcde"  # 45 characters: T = 44
    assert cli.main(["flow", "--text", text, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    expected = reference_norms(*_fresh_problem(text, hidden=32))
    numbers = read_csv(tmp_path / "flow.csv")
    assert {cell for cell, _, _ in numbers} == {"rnn"} and len(numbers) == 44 * 45 // 2
    for (_, t, k), value in numbers.items():
        assert value == pytest.approx(expected[t - 1, k - 1], rel=1e-12)
    assert out[0] == (f"Gradient flow ‖∂J_t/∂h_k‖ on {text[:39] + '…'!r} (T = 44; t, k = 1 … 44), "
                      "fresh model, seed 0")
    assert out[2].split()[:6] == ["d", "=", "0", "d", "=", "1"]
    assert out[2].count("d = ") == 6  # 0, 1, 5, 10, 20, 40
    row = out[3].split()
    assert row[:7] == ["rnn", "H", "=", "32", "L", "=", "1"]
    means = [np.mean(np.diagonal(expected, offset=-d)) for d in (0, 1, 5, 10, 20, 40)]
    shown = [float(v) for v in row[7:]]
    assert shown == pytest.approx([*means, expected[-1, 0] / expected[-1, -1]], rel=0.06)
    assert out[4].endswith(f"{tmp_path / 'flow.csv'} (990 rows)")


def test_compare_draws_the_cells_in_the_order_rnn_lstm_gru(tmp_path):
    run = bptt_cli("flow", "--compare", "--hidden", "4", "--text", "abcabcab", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "flow.csv", newline="") as f:
        cells = [row["cell"] for row in csv.DictReader(f)]
    assert list(dict.fromkeys(cells)) == ["rnn", "lstm", "gru"]
    assert [line.split()[0] for line in run.stdout.splitlines()[3:6]] == ["rnn", "lstm", "gru"]


@pytest.mark.parametrize(("args", "message"), [
    (["--text", ""], "--text is empty: give at least 2 characters"),
    (["--out", "a_file"], "--out a_file is a file, not a directory"),
    (["--checkpoint", "run", "--hidden", "8"], "--hidden does not apply with --checkpoint"),
    (["--checkpoint", "run", "--compare"], "--compare draws fresh rnn, lstm and gru models: "
                                           "not with --checkpoint"),
])
def test_more_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "a_file").write_text("not a directory\n")
    run = bptt_cli("flow", *args, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr and run.stderr.count("\n") == 1, \
        run.stderr
    assert not (tmp_path / "flow.png").exists()


def test_a_checkpoint_in_a_directory_named_with_a_byte_that_is_not_utf8_is_drawn(tmp_path):
    """The path is the pictures' title: with the byte's lone surrogate in it (U+DCFF for
    b'\\xff') matplotlib refused the title with a TypeError, a traceback, and left an empty
    --out behind.  The title shows the byte as \\xff."""
    import io
    import os

    vocab = sorted(set("the cat sat"))
    params = bptt.init_params("rnn", len(vocab), 3, len(vocab), rng=np.random.default_rng(0),
                              dtype=np.float64)
    run_dir = tmp_path / os.fsdecode(b"run\xff")
    run_dir.mkdir()
    checkpoint.save_model(run_dir, params, vocab)
    report = flow.flow_for_checkpoint(run_dir, "the cat sat")
    for fig in (flow.plot_flow(report), flow.plot_compare([report])):
        assert fig._suptitle.get_text().endswith("run\\xff")
        fig.savefig(io.BytesIO(), format="png")
    run = bptt_cli("flow", "--checkpoint", run_dir.name, "--out", "pictures", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert png_size(tmp_path / "pictures" / "flow.png") == (500, 440)


def test_a_write_that_fails_leaves_no_out_directory_it_made(tmp_path, monkeypatch):
    """flow made --out (with its parents) before writing: a full disk left them empty."""
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    run = bptt_cli("flow", "--text", "abcabcab", "--out", "a/b/c", cwd=tmp_path)
    assert run.returncode == 2 and "No space left on device" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "reason"), [
    (lambda temp: PermissionError(13, "Permission denied", str(temp)), "Permission denied"),
    (lambda temp: OSError(28, "No space left on device"), "No space left on device"),
], ids=["not writable", "full disk"])
def test_a_write_the_system_refuses_names_the_output_not_its_temporary_file(
        tmp_path, monkeypatch, error, reason):
    """'Permission denied: pictures/.tmp-flow.png' named a file the user never asked for,
    and a full disk none ('cannot write the output')."""
    from matplotlib.figure import Figure

    def refused(self, fname, *args, **kwargs):
        raise error(fname)

    (tmp_path / "pictures").mkdir()
    monkeypatch.setattr(Figure, "savefig", refused)
    run = bptt_cli("flow", "--text", "abcabcab", "--out", "pictures", cwd=tmp_path)
    assert (run.returncode, run.stderr) == (
        2, f"bptt: error: cannot write pictures/flow.png: {reason}.\n")
    assert list((tmp_path / "pictures").iterdir()) == []


# --- mutation audit (2): flow.py's checks, its boundaries and its pictures ------------------


def test_a_text_of_one_character_is_refused_as_too_short():
    """One character has no next character to predict: the message says so (not
    'seq_len must be from 1 to 500, got 0', a number the user never gave)."""
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    with pytest.raises(bptt.BpttError, match=r"^the text needs at least 2 characters \(an input "
                                             r"and its next-character target\)$"):
        flow.flow_for_model(params, list("abc"), "a")


def test_a_sequence_of_the_largest_length_is_drawn():
    text = "abcd" * 126  # 504 characters: room for 500 steps
    report = flow.flow_on_text(text, hidden=2, seq_len=flow.MAX_SEQ_LEN)
    assert report.T == 500 and report.norms.shape == (500, 500) and report.text == text[:501]


def test_a_model_that_predicts_other_symbols_than_its_vocabulary_is_refused():
    params = bptt.init_params("rnn", 3, 4, 4, rng=np.random.default_rng(0), dtype=np.float64)
    with pytest.raises(bptt.BpttError, match=r"^the model reads 3 and predicts 4 symbols, but its "
                                             r"vocabulary has 3$"):
        flow.flow_for_model(params, list("abc"), "abcab")


def test_a_fresh_lstm_says_its_forget_bias_in_the_source():
    text = "abcabcab"
    assert flow.flow_on_text(text, "lstm", hidden=2).source == (
        "fresh model, seed 0, LSTM forget bias 1")
    assert flow.flow_on_text(text, "lstm", hidden=2, seed=2, forget_bias=2.5).source == (
        "fresh model, seed 2, LSTM forget bias 2.5")
    assert flow.flow_on_text(text, "lstm", hidden=2, forget_bias=None).source == (
        "fresh model, seed 0")
    assert flow.flow_on_text(text, "gru", hidden=2).source == "fresh model, seed 0"


def _report_with_zeros(zero_everywhere=False):
    """A report whose F holds norms of exactly 0 (a model whose head reads nothing of h)."""
    norms = np.array([[0.5, np.nan, np.nan], [0.0, 2.0, np.nan], [0.25, 0.0, 4.0]])
    if zero_everywhere:
        norms = np.where(np.isnan(norms), np.nan, 0.0)
    return flow.FlowReport("rnn", 4, 1, "abcd", norms, "test")


def test_norms_of_zero_are_left_blank_on_a_log_scale_of_the_positive_ones():
    """A norm of 0 has no place on a log scale: it is masked, and the colour scale runs over
    the positive norms only (vmin 0 makes the LogNorm fail to draw)."""
    import io

    for fig in (flow.plot_flow(_report_with_zeros()), flow.plot_compare([_report_with_zeros()])):
        image = fig.axes[0].images[0]
        assert (image.norm.vmin, image.norm.vmax) == (0.25, 4.0)
        np.testing.assert_array_equal(image.get_array().mask, [[False, True, True],
                                                               [True, False, True],
                                                               [False, True, False]])
        fig.savefig(io.BytesIO(), format="png")


def test_a_flow_of_zeros_only_is_drawn_blank():
    import io

    fig = flow.plot_flow(_report_with_zeros(zero_everywhere=True))
    image = fig.axes[0].images[0]
    assert image.get_array().mask.all()
    assert (image.norm.vmin, image.norm.vmax) == (1e-12, 1.0)
    fig.savefig(io.BytesIO(), format="png")


def test_each_heatmap_is_titled_with_its_cell_and_sizes_and_the_panels_do_not_overlap():
    reports = flow.compare_cells("abcabcab", hidden=3)
    fig = flow.plot_compare(reports)
    *panels, bar = fig.axes
    assert [ax.get_title() for ax in panels] == ["rnn, H = 3, L = 1", "lstm, H = 3, L = 1",
                                                 "gru, H = 3, L = 1"]
    boxes = [ax.get_position() for ax in fig.axes]  # in figure fractions, left to right
    assert all(left.x1 < right.x0 for left, right in itertools.pairwise(boxes))
    assert boxes[0].x0 > 0 and boxes[-1].x1 < 1


def test_the_distance_plot_leaves_out_a_mean_of_zero_and_a_figure_of_0_is_refused():
    """A mean of 0 has no place on the log axis (it is not drawn, not clipped to the bottom);
    fig=0 is no Figure, though it is false like None."""
    report = _report_with_zeros()  # means by distance: 13/6, 0, 0.25
    [line] = flow.plot_distance([report]).axes[0].lines
    np.testing.assert_array_equal(line.get_xdata(), [0, 2])
    np.testing.assert_allclose(line.get_ydata(), [6.5 / 3, 0.25], rtol=1e-15)
    for plot in (flow.plot_flow, flow.plot_distance):
        with pytest.raises(bptt.BpttError, match=r"^fig must be a matplotlib Figure .*got int$"):
            plot(report, fig=0)


def test_the_compared_heatmaps_are_titled_with_the_sequences_length_and_source():
    reports = flow.compare_cells("abcabcab", hidden=3, seed=4)
    fig = flow.plot_compare(reports)
    assert fig._suptitle.get_text() == ("‖∂J_t/∂h_k‖ over (t, k), T = 7, same sequence — "
                                        "fresh models, seed 4, LSTM forget bias 1")


def test_a_checkpoint_without_a_vocabulary_is_refused_by_name(tmp_path):
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    (tmp_path / "run").mkdir()
    checkpoint.save_model(tmp_path / "run", params)
    with pytest.raises(bptt.BpttError, match=r"run has no character vocabulary: bptt flow needs "
                                             r"a character model$"):
        flow.flow_for_checkpoint(tmp_path / "run", "abcab")


def test_the_command_takes_seq_len_up_to_the_largest_and_refuses_one_more(
        monkeypatch, capsys):
    """(The bound lowered to 5 so that the run is short: --seq-len 5 is drawn, 6 refused
    before anything is computed or written.)"""
    from bptt import cli

    written = _no_files_written(monkeypatch)
    monkeypatch.setattr(flow, "MAX_SEQ_LEN", 5)
    argv = ["flow", "--text", "abcabcab", "--hidden", "2"]
    assert cli.main([*argv, "--seq-len", "5"]) == 0
    assert "(T = 5; t, k = 1 … 5)" in capsys.readouterr().out and len(written) == 1
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--seq-len", "6"])
    assert exit_.value.code == 2 and len(written) == 1
    assert "--seq-len must be from 1 to 5, got 6" in capsys.readouterr().err


def _no_files_written(monkeypatch) -> list:
    """bptt flow's writing of its three files replaced by a list of the calls (the PNGs take
    most of a run's time; the tests above check the files)."""
    import bptt.cli.flow

    calls = []
    monkeypatch.setattr(bptt.cli.flow, "_write", lambda *args: calls.append(args))
    return calls


def test_compare_draws_32_units_by_default(monkeypatch, capsys):
    from bptt import cli

    _no_files_written(monkeypatch)
    assert cli.main(["flow", "--compare", "--text", "abcab"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in out[3:6]] == [
        [cell, "H", "=", "32"] for cell in ("rnn", "lstm", "gru")]


def test_the_summary_shows_a_text_of_40_characters_whole(monkeypatch, capsys):
    from bptt import cli

    _no_files_written(monkeypatch)
    text = "abcdefghij" * 4  # 40 characters: T = 39
    assert cli.main(["flow", "--text", text, "--hidden", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"Gradient flow ‖∂J_t/∂h_k‖ on {text!r} (T = 39;")


@pytest.mark.parametrize(("flag", "value"), [("--cell", "lstm"), ("--torch-init", None)])
def test_a_fresh_models_flag_is_refused_with_a_checkpoint(capsys, flag, value):
    """The checkpoint fixes its cell: without the refusal --cell lstm would be ignored silently
    (the picture is of the checkpoint's own cell)."""
    from bptt import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["flow", "--checkpoint", "run", flag, *([value] if value else [])])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"bptt: error: {flag} does not apply with --checkpoint (the model fixes it)\n")


@pytest.mark.parametrize("seq_len", [2.5, "3", True])
def test_the_sequence_length_of_a_model_or_checkpoint_is_checked_as_an_integer(tmp_path, seq_len):
    """flow_for_model and flow_for_checkpoint took seq_len unchecked: 2.5 and "3" were raw
    TypeErrors from numpy and from <=, and True drew one step (flow_on_text refused them)."""
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    (tmp_path / "run").mkdir()
    checkpoint.save_model(tmp_path / "run", params, list("abc"))
    message = rf"^seq_len must be an integer >= 1, got {seq_len!r}$"
    with pytest.raises(bptt.BpttError, match=message):
        flow.flow_for_model(params, list("abc"), "abcabc", seq_len=seq_len)
    with pytest.raises(bptt.BpttError, match=message):
        flow.flow_for_checkpoint(tmp_path / "run", "abcabc", seq_len=seq_len)


def test_the_heatmap_draws_each_f_t_k_at_its_step_k_and_loss_t():
    """The colour at (k, t) on the axes is the colour of F[t, k] (1-based on the axes), and
    k > t is blank: drawn from the bottom up (origin "lower"), the rows were upside down
    under their labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    norms = np.array([[0.5, np.nan, np.nan], [1.0, 2.0, np.nan], [0.25, 3.0, 4.0]])
    fig = flow.plot_flow(flow.FlowReport("rnn", 4, 1, "abcd", norms, "test"))
    FigureCanvasAgg(fig).draw()
    pixels = np.asarray(fig.canvas.buffer_rgba()) / 255
    ax = fig.axes[0]
    image = ax.images[0]
    for t in range(1, 4):
        for k in range(1, 4):
            x, y = ax.transData.transform((k, t))
            drawn = pixels[round(pixels.shape[0] - y), round(x)]
            expected = image.cmap(image.norm(norms[t - 1, k - 1])) if k <= t else (1, 1, 1, 1)
            np.testing.assert_allclose(drawn, expected, atol=0.01, err_msg=f"t = {t}, k = {k}")


def test_the_distance_plot_has_a_log_y_axis():
    ax = flow.plot_distance([_report_with_zeros()]).axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"


@pytest.mark.parametrize("text", [b"abcab", None, list("abcab")], ids=["bytes", "None", "list"])
def test_a_text_that_is_no_str_is_one_clear_error_at_every_entry_point(tmp_path, text):
    """It was an AttributeError or a TypeError from deep inside (bytes has no .encode); a
    checkpoint is not read for it."""
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    message = rf"^text must be a str, got {type(text).__name__}$"
    for call in (lambda: flow.flow_on_text(text, hidden=2),
                 lambda: flow.compare_cells(text, hidden=2),
                 lambda: flow.flow_for_model(params, list("abc"), text)):
        with pytest.raises(bptt.BpttError, match=message):
            call()
    if text is not None:  # (None: the checkpoint's default text)
        with pytest.raises(bptt.BpttError, match=message):
            flow.flow_for_checkpoint(tmp_path / "no-such-run", text)


def test_the_decay_of_a_last_loss_that_reaches_not_even_its_own_step_is_nan_unwarned():
    """F[T−1, T−1] = 0 (a head that reads nothing of h): 0/0 gave numpy's RuntimeWarning."""
    import warnings

    norms = np.array([[0.0, np.nan], [0.0, 0.0]])
    report = flow.FlowReport("rnn", 4, 1, "abc", norms, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(report.decay())
    assert _report_with_zeros().decay() == 0.25 / 4.0


# --- mutation audit (6): the bytes of flow.csv ------------------------------------------------


def test_flow_csv_holds_exactly_the_librarys_table_one_lf_ended_line_a_row(tmp_path, capsys):
    """The file is flow.to_csv of the report, byte for byte: every line, the last one too,
    ends in a single \\n (a reader counting lines, or cat-ing two tables, relies on it)."""
    from bptt import cli

    assert cli.main(["flow", "--text", "abcabcab", "--hidden", "4", "--out",
                     str(tmp_path)]) == 0
    data = (tmp_path / "flow.csv").read_bytes()
    report = flow.flow_on_text("abcabcab", "rnn", hidden=4)
    assert data == flow.to_csv([report]).encode("utf-8")
    assert data.startswith(b"cell,t,k,distance,norm\nrnn,1,1,0,") and b"\r" not in data
    assert data.endswith(f"rnn,7,7,0,{float(report.norms[6, 6])!r}\n".encode())
    assert data.count(b"\n") == 1 + 7 * 8 // 2
    assert capsys.readouterr().out.endswith(f"{tmp_path / 'flow.csv'} (28 rows)\n")
