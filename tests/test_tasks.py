"""The built-in tasks (bptt.tasks): what each generator promises, and the training loop."""

from __future__ import annotations

import csv
import dataclasses
import re
import sys

import numpy as np
import pytest
from tests_support import png_size, task_run_cut_short_at_its_end

from bptt import heads, tasks
from bptt.errors import BpttError
from bptt.estimators import SequenceClassifier, SequenceRegressor


def test_adding_marks_one_value_in_each_half_and_sums_them():
    data = tasks.adding(500, 9, np.random.default_rng(0))
    assert data.X.shape == (500, 9, 2) and data.y.shape == (500,)
    values, markers = data.X[..., 0], data.X[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :5].sum(axis=1) == 1) and np.all(markers[:, 5:].sum(axis=1) == 1)
    # every step of each half is marked in some sequence (the first and the last too)
    first, second = markers[:, :5].argmax(axis=1), markers[:, 5:].argmax(axis=1) + 5
    assert set(first.tolist()) == set(range(5)) and set(second.tolist()) == set(range(5, 9))
    np.testing.assert_allclose(data.y, (values * markers).sum(axis=1), rtol=0, atol=0)
    assert np.all((values >= 0) & (values < 1)) and np.all(data.lengths == 9)
    # predicting the mean scores Var(v_a + v_b) = 1/6: the baseline a model must beat
    assert np.mean((data.y - 1) ** 2) == pytest.approx(1 / 6, rel=0.15)


def test_parity_labels_and_variable_lengths():
    data = tasks.parity(400, 8, np.random.default_rng(1), variable=True)
    assert data.X.shape == (400, 8, 1)
    assert data.lengths.min() == 1 and data.lengths.max() == 8
    for x, y, n in zip(data.X, data.y, data.lengths, strict=True):
        assert y == int(x[:n, 0].sum()) % 2 and not x[n:].any()
    assert set(data.y) == {0, 1}
    assert np.all(tasks.parity(10, 5, np.random.default_rng(1)).lengths == 5)


def test_tweets_follow_their_sentiment_rule_with_negation():
    data = tasks.tweets(600, 12, np.random.default_rng(2))
    assert data.X.shape == (600, 12, 3)
    assert data.lengths.min() >= 3 and data.lengths.max() <= 12
    assert set(data.y) == {"negative", "positive"}
    words = data.X.argmax(axis=2)  # the noise (σ = 0.1) never hides the word
    scores = tasks._tweet_scores(words, data.lengths)
    assert np.all(scores != 0)
    assert np.array_equal(np.where(scores > 0, "positive", "negative"), data.y)
    for i, n in enumerate(data.lengths):
        assert not data.X[i, n:].any()
    # "not good" is negative, "good" positive, "not bad" positive
    w = {"good": 0, "bad": 1, "not": 2}
    phrases = np.array([[w["not"], w["good"], w["not"]], [w["good"], w["not"], w["not"]],
                        [w["not"], w["bad"], w["not"]]])
    assert tasks._tweet_scores(phrases, np.array([3, 3, 3])).tolist() == [-1, 1, 1]


def test_the_same_seed_gives_the_same_data():
    a = tasks.tweets(50, 8, np.random.default_rng(5))
    b = tasks.tweets(50, 8, np.random.default_rng(5))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_digits_without_scikit_learn_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(BpttError, match=r"needs scikit-learn.*pip install 'bptt\[examples\]'"):
        tasks.digits(np.random.default_rng(0))


@pytest.mark.parametrize("bad, message", [
    (dict(task="mnist"), "unknown task 'mnist'"),
    (dict(task="digits", length=5), "fixed length"),
    (dict(task="adding", length=1), "length >= 2"),
    (dict(task="tweets", length=2), "length >= 3"),
    (dict(task="parity", hidden=0), "hidden must be"),
    (dict(task="parity", lr=float("inf")), "lr must be"),
    (dict(task="parity", cell="tcn"), "unknown cell"),
    (dict(task="parity", lr="0.1"), "lr must be a finite number > 0, got '0.1'"),
    (dict(task="parity", clip_norm=[5]), "clip_norm must be a finite number > 0"),
    # what --seed takes, as a setting of a --config file too
    (dict(task="parity", seed=2**63), r"seed must be an integer from 0 to 2\^63-1, got 9223"),
    # (a batch of 10^8 was made a piece at a time: it grew for minutes past 15 GB)
    (dict(task="parity", batch=10**8), "batch is unreasonably large for this machine "
                                       r"\(at most 65,536\)"),
    (dict(task="parity", layers=65), r"layers is unreasonably large for this machine "
                                     r"\(at most 64\)"),
])
def test_bad_task_settings(bad, message):
    with pytest.raises(BpttError, match=message):
        tasks.TaskConfig(**bad).resolved()


def test_numpy_numbers_are_task_settings_kept_as_python_ones():
    config = tasks.TaskConfig(task="parity", hidden=np.int64(8), steps=np.int32(3),
                              lr=np.float32(0.5), length=np.int64(6)).resolved()
    assert (config.hidden, config.steps, config.lr, config.length) == (8, 3, 0.5, 6)
    assert all(type(v) in (int, float, str, type(None)) for v in config.to_dict().values())


def test_the_loop_reports_evaluates_and_writes_its_files(tmp_path):
    config = tasks.TaskConfig(task="adding", length=6, hidden=8, steps=6, batch=8,
                              eval_every=3, seed=4)
    run = tasks.new_task_run(config, tmp_path / "run")
    assert isinstance(run.estimator, SequenceRegressor)
    events = []
    assert tasks.train_task(run, events.append)
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 6 and kinds.count("eval") == 2 and kinds[-1] == "done"
    # each step reports its own minibatch's loss: the estimator's curve, one value a step
    assert [e.loss for e in events if e.kind == "step"] == run.estimator.loss_curve_
    assert len(set(run.estimator.loss_curve_)) == 6
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["3", "6"]
    assert set(rows[0]) == {"step", "train_mse", "val_mse", "val_r2", "seqs_per_sec"}
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    loaded = SequenceRegressor.load(tmp_path / "run")
    assert np.array_equal(loaded.predict(run.data.val.X), run.estimator.predict(run.data.val.X))
    # the count the command line prints is that of the model trained (one output)
    assert tasks.num_parameters(run) == sum(v.size for v in run.estimator.params_.values())
    with pytest.raises(BpttError, match="already holds a checkpoint"):
        tasks.new_task_run(config, tmp_path / "run")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_evaluation_scores_r2_as_the_estimator_does(tmp_path, dtype):
    # (one forward pass over the validation set gives the MSE and R² both)
    config = tasks.TaskConfig(task="adding", length=6, hidden=8, steps=3, batch=8, seed=2,
                              dtype=dtype)
    run = tasks.new_task_run(config, tmp_path / "run")
    tasks.train_task(run)
    val = run.data.val
    metrics = tasks.evaluate(run)
    assert metrics["val_r2"] == run.estimator.score(val.X, val.y, lengths=val.lengths)
    predicted = run.estimator.predict(val.X, lengths=val.lengths)
    assert metrics["val_mse"] == float(np.mean((predicted - val.y) ** 2))


def test_a_stopped_loop_keeps_a_checkpoint_of_its_last_step(tmp_path):
    config = tasks.TaskConfig(task="tweets", length=6, hidden=8, steps=50, batch=8, seed=1)
    run = tasks.new_task_run(config, tmp_path / "run")
    steps = []
    finished = tasks.train_task(run, lambda e: steps.append(e.step), lambda: len(steps) >= 4)
    assert not finished and run.step == 4
    loaded = SequenceClassifier.load(tmp_path / "run")
    assert loaded.n_steps_ == 4 and loaded.classes_.tolist() == ["negative", "positive"]


def _tensors(directory):
    """(tensors, metadata) of a run's train state."""
    from bptt.checkpoint import read_safetensors

    return read_safetensors(directory / tasks.STATE_FILE)


@pytest.mark.parametrize(("task", "dtype"), [("tweets", "float32"), ("adding", "float64")])
def test_a_resumed_run_is_bit_identical_to_one_never_stopped(tmp_path, task, dtype):
    config = tasks.TaskConfig(task=task, length=6, hidden=8, steps=7, batch=8, seed=3,
                              eval_every=2, dtype=dtype)
    straight = tasks.new_task_run(config, tmp_path / "straight")
    assert tasks.train_task(straight)
    stopped = tasks.new_task_run(config, tmp_path / "stopped")
    steps = []
    assert not tasks.train_task(stopped, lambda e: steps.append(e.kind),
                                lambda: steps.count("step") >= 3)
    resumed = tasks.resume_task_run(tmp_path / "stopped")
    assert resumed.step == 3 and resumed.estimator.n_steps_ == 3
    assert tasks.train_task(resumed)
    a, meta_a = _tensors(tmp_path / "straight")
    b, meta_b = _tensors(tmp_path / "stopped")
    assert sorted(a) == sorted(b) and any(k.startswith("opt.") for k in a)
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    assert meta_a["rng"] == meta_b["rng"] and meta_a["estimator"] == meta_b["estimator"]
    # the history, the training loss of the interval the run stopped in included (its
    # losses are saved), is that of the run never stopped; only the measured speed differs
    never_stopped = [{k: v for k, v in row.items() if k != "seqs_per_sec"}
                     for row in straight.history]
    after_resume = [{k: v for k, v in row.items() if k != "seqs_per_sec"}
                    for row in resumed.history]
    assert after_resume == never_stopped


def test_going_on_past_an_end_off_the_eval_schedule_gives_the_history_of_one_run(tmp_path):
    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=8, batch=4, seed=0,
                              eval_every=3)
    straight = tasks.new_task_run(config, tmp_path / "straight")
    assert tasks.train_task(straight)
    first = tasks.new_task_run(dataclasses.replace(config, steps=5), tmp_path / "first")
    assert tasks.train_task(first) and [row["step"] for row in first.history] == [3, 5]
    longer = tasks.resume_task_run(tmp_path / "first", steps=8)
    assert [row["step"] for row in longer.history] == [3]
    assert tasks.train_task(longer)

    def without_speed(history):
        return [{k: v for k, v in row.items() if k != "seqs_per_sec"} for row in history]

    assert without_speed(longer.history) == without_speed(straight.history)


def test_resume_can_go_on_longer_and_refuses_what_is_not_a_task_run(tmp_path):
    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=2, batch=4, seed=0,
                              eval_every=1)
    assert tasks.train_task(tasks.new_task_run(config, tmp_path / "run"))
    longer = tasks.resume_task_run(tmp_path / "run", steps=5, eval_every=5)
    assert (longer.config.steps, longer.config.eval_every, longer.step) == (5, 5, 2)
    assert tasks.train_task(longer) and longer.step == 5
    assert [row["step"] for row in longer.history] == [1, 2, 5]
    with pytest.raises(BpttError, match=r"holds no train_state\.safetensors"):
        tasks.resume_task_run(tmp_path / "nothing")
    (tmp_path / "text").mkdir()
    from bptt import checkpoint

    checkpoint.write_safetensors_atomic(
        tmp_path / "text" / tasks.STATE_FILE, {"x": np.zeros(1)},
        {"format": "bptt", "format_version": checkpoint.FORMAT_VERSION, "kind": "train_state"})
    with pytest.raises(BpttError, match="expected a 'task_state' file"):
        tasks.resume_task_run(tmp_path / "text")
    tensors, meta = _tensors(tmp_path / "run")
    del meta["estimator"]["rng"]
    checkpoint.write_safetensors_atomic(tmp_path / "run" / tasks.STATE_FILE, tensors, meta)
    with pytest.raises(BpttError, match="damaged or incomplete"):
        tasks.resume_task_run(tmp_path / "run")


def test_a_task_checkpoint_cut_short_at_the_end_is_completed_from_the_train_state(
        tmp_path, monkeypatch):
    # killed at its last checkpoint after the train state's write: a resume trains nothing,
    # so nothing else would write the model and metrics.csv of its last step
    from bptt import checkpoint

    config = task_run_cut_short_at_its_end(tmp_path / "cut", monkeypatch)
    assert tasks.train_task(tasks.new_task_run(config, tmp_path / "straight"))
    stale = [checkpoint.MODEL_FILE, tasks.METRICS_FILE]
    assert tasks.complete_checkpoint(tmp_path / "cut") == stale
    for d in ("straight", "cut"):
        assert checkpoint.read_metadata(tmp_path / d / checkpoint.MODEL_FILE)["step"] == 4
        with (tmp_path / d / tasks.METRICS_FILE).open() as f:
            assert [row["step"] for row in csv.DictReader(f)] == ["2", "4"]
    weights = [checkpoint.read_safetensors(tmp_path / d / checkpoint.MODEL_FILE)[0]
               for d in ("straight", "cut")]
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert tasks.complete_checkpoint(tmp_path / "cut") == []


@pytest.fixture(scope="module")
def stopped_task_run(tmp_path_factory):
    """A parity run stopped at step 3, in the middle of its second evaluation interval."""
    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=8, batch=4, seed=0,
                              eval_every=2)
    run = tasks.new_task_run(config, tmp_path_factory.mktemp("task") / "run")
    steps = []
    assert not tasks.train_task(run, lambda e: steps.append(e.kind),
                                lambda: steps.count("step") >= 3)
    return run.out_dir


def test_a_stopped_task_run_draws_the_history_it_saved(stopped_task_run):
    assert (stopped_task_run / tasks.PLOT_FILE).read_bytes()[:4] == b"\x89PNG"


def test_a_task_run_stopped_before_its_first_step_writes_nothing(tmp_path):
    """No step trained: no checkpoint (the model is not fitted), no plot, and the stop is
    reported as one (False)."""
    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=8, batch=4, seed=0)
    run = tasks.new_task_run(config, tmp_path / "run")
    events = []
    assert not tasks.train_task(run, events.append, should_stop=lambda: True)
    assert events == [] and run.step == 0
    assert not any(f.name.endswith((".safetensors", ".csv", ".png"))
                   for f in (tmp_path / "run").iterdir())


def test_a_task_run_stopped_before_its_first_evaluation_draws_no_plot(tmp_path):
    # nothing to draw: an empty loss.png would stand for a run that has no row yet
    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=8, batch=4, seed=0,
                              eval_every=4)
    run = tasks.new_task_run(config, tmp_path / "run")
    assert not tasks.train_task(run, should_stop=lambda: run.step >= 1)
    assert run.step == 1 and run.history == []
    assert (run.out_dir / tasks.STATE_FILE).exists()
    assert not (run.out_dir / tasks.PLOT_FILE).exists()


def _set(key, value):
    return lambda tensors, meta: meta.__setitem__(key, value)


DAMAGED_TASK_STATES = {
    "history-not-a-list": (_set("history", "x"), "its history must be a list of rows"),
    "history-row-of-strings": (_set("history", [{"step": "a"}]),
                               "history row 0 must have exactly the columns step, train_loss"),
    "step-negative": (_set("step", -1), "its step must be an integer >= 0, got -1"),
    "step-not-the-optimizer's": (_set("step", 4),
                                 "the optimizer's step counter is 3 but the run is at step 4"),
    "optimizer-counter-negative": (
        lambda t, m: t.__setitem__("opt.step.t", np.array(-1)),
        "the optimizer's step counter 'step.t' must be an integer >= 0, got -1"),
    "estimator-steps": (lambda t, m: m["estimator"].__setitem__("n_steps", 7),
                        "the estimator's step count is 7 but the run is at step 3"),
    "estimator-epochs": (lambda t, m: m["estimator"].__setitem__("n_iter", 2),
                         "the estimator's epoch count is 2 but the run is at step 3"),
    "hidden-not-the-weights'": (lambda t, m: m["task_config"].__setitem__("hidden", 9),
                                "the saved weights do not fit this estimator"),
    "rng-out-of-range": (lambda t, m: m["rng"]["state"].__setitem__("inc", -1),
                         "the saved random generator state is invalid"),
    "interval-longer-than-the-steps": (
        _set("interval_losses", [0.5] * 2),
        "it holds 2 interval losses but only 1 steps were trained since the last evaluation"),
}


@pytest.mark.parametrize("change, message", DAMAGED_TASK_STATES.values(),
                         ids=DAMAGED_TASK_STATES.keys())
def test_a_damaged_task_state_is_refused_before_anything_is_trained(stopped_task_run, tmp_path,
                                                                     change, message):
    import shutil

    from bptt import checkpoint
    from bptt.errors import CheckpointError

    out = tmp_path / "damaged"
    shutil.copytree(stopped_task_run, out)
    tensors, meta = _tensors(out)
    change(tensors, meta)
    checkpoint.write_safetensors_atomic(out / tasks.STATE_FILE, tensors, meta)
    with pytest.raises(CheckpointError) as caught:
        tasks.resume_task_run(out)
    assert str(caught.value).startswith(f"{out / tasks.STATE_FILE} is damaged")
    assert message in str(caught.value)
    run = tasks.resume_task_run(stopped_task_run)  # the undamaged state resumes
    assert run.step == 3 and len(run.interval_losses) == 1


@pytest.mark.parametrize("name", ["steps", "eval_every"])
def test_a_resumed_task_run_refuses_a_new_steps_or_eval_every_of_0(stopped_task_run, name):
    # 0 was taken for "not given" (None) and the saved value kept; -1 was refused
    for bad in (0, -1):
        with pytest.raises(BpttError, match=f"{name} must be an integer >= 1, got {bad}"):
            tasks.resume_task_run(stopped_task_run, **{name: bad})


@pytest.mark.parametrize(("task", "length", "hidden", "steps"), [
    ("adding", 50, 64, 1500), ("parity", 8, 16, 300), ("tweets", 12, 16, 500),
])
def test_each_tasks_defaults_are_the_documented_ones(task, length, hidden, steps):
    # docs/tasks.md: hidden 64 / 16 / 16 / 64, steps 1500 / 300 / 500 / 600, lr 1e-2, batch 32,
    # clip-norm 1, eval-every 100; the module docstring: adding T = 50, parity 8, tweets 12
    config = tasks.TaskConfig(task=task).resolved()
    assert (config.length, config.hidden, config.steps, config.lr, config.batch,
            config.clip_norm, config.eval_every, config.cell, config.layers, config.optimizer,
            config.dtype) == (length, hidden, steps, 1e-2, 32, 1.0, 100, "lstm", 1, "adam",
                              "float32")


def test_an_unreasonable_length_is_refused():
    with pytest.raises(BpttError, match="a parity length of 100001 is unreasonably long"):
        tasks.parity(1, 100_001, np.random.default_rng(0))
    assert tasks.parity(1, 100_000, np.random.default_rng(0)).X.shape == (1, 100_000, 1)


@pytest.mark.parametrize("task, shortest", [("adding", 2), ("parity", 1), ("tweets", 3)])
def test_each_task_takes_its_shortest_length(task, shortest):
    """adding needs a step in each half, tweets 3 words; the refusals name the bound."""
    assert tasks.TaskConfig(task=task, length=shortest).resolved().length == shortest
    data = getattr(tasks, task)(4, shortest, np.random.default_rng(0))
    assert data.X.shape[:2] == (4, shortest) and np.all(data.lengths <= shortest)
    with pytest.raises(BpttError, match=f"the {task} task needs a length >= {shortest}, got "
                                        f"{shortest - 1}"):
        tasks.TaskConfig(task=task, length=shortest - 1).resolved()


def test_the_runs_estimator_takes_every_setting_of_the_task(tmp_path):
    config = tasks.TaskConfig(task="tweets", length=5, cell="gru", hidden=6, layers=2, steps=1,
                              batch=4, lr=0.2, optimizer="momentum", clip_norm=0.5,
                              dtype="float64", seed=3)
    run = tasks.new_task_run(config, tmp_path / "run")
    assert {k: v for k, v in run.estimator.get_params().items() if k != "per_step"} == {
        "cell": "gru", "hidden_size": 6, "num_layers": 2, "optimizer": "momentum", "lr": 0.2,
        "epochs": 1, "batch_size": 4, "clip_norm": 0.5, "truncate": None,
        "forget_bias": None, "dtype": "float64", "random_state": 3}
    tasks.train_task(run)
    # the number the command line states is the number of the weights trained
    assert tasks.num_parameters(run) == sum(v.size for v in run.estimator.params_.values())


def test_the_validation_set_is_not_drawn_from_the_training_batches_stream(tmp_path):
    run = tasks.new_task_run(tasks.TaskConfig(task="adding", length=5, steps=1, batch=8),
                             tmp_path / "run")
    batch = run.data.batch(8, run.rng)
    assert not np.isin(batch.X[:, :, 0], run.data.val.X[:, :, 0]).any()


def test_a_tweets_batch_draws_training_tweets_without_replacement(tmp_path):
    run = tasks.new_task_run(tasks.TaskConfig(task="tweets", steps=1), tmp_path / "run")
    train = run.data.train
    batch = run.data.batch(len(train.y), run.rng)  # the whole set: each tweet once
    assert sorted(map(bytes, batch.X)) == sorted(map(bytes, train.X))
    # a batch larger than the training set (--batch 2500) is the whole set, not an error
    batch = run.data.batch(len(train.y) + 500, run.rng)
    assert sorted(map(bytes, batch.X)) == sorted(map(bytes, train.X))


def test_the_history_its_files_hold_is_the_mean_of_each_intervals_losses(tmp_path):
    config = tasks.TaskConfig(task="parity", length=4, hidden=6, steps=6, batch=8,
                              eval_every=3, seed=5)
    run = tasks.new_task_run(config, tmp_path / "run")
    events = []
    tasks.train_task(run, events.append)
    losses = [e.loss for e in events if e.kind == "step"]
    assert [row["train_loss"] for row in run.history] == [
        float(np.mean(losses[:3])), float(np.mean(losses[3:]))]
    for row in run.history:  # validation cross-entropy in nats, accuracy as a fraction
        assert 0 < row["val_loss"] < 2 and 0 <= row["val_accuracy"] <= 1
    val = run.data.val
    proba = run.estimator.predict_proba(val.X, lengths=val.lengths)
    assert run.history[-1]["val_loss"] == pytest.approx(
        -np.mean(np.log(proba[np.arange(len(val.y)), val.y])), rel=1e-6)
    from bptt import checkpoint

    assert checkpoint.load_model(tmp_path / "run").meta["info"]["history"] == run.history
    rows = list(csv.reader((tmp_path / "run" / "metrics.csv").open()))
    assert rows[1:] == [[str(row["step"])] + [f"{row[c]:.6g}" for c in rows[0][1:]]
                        for row in run.history]



def test_a_confident_float32_classifier_has_a_finite_validation_loss(tmp_path):
    # a wrong class's float32 probability under 1e-45 is 0: the loss comes from the logits
    # (log-softmax), finite, not from −log 0 (an inf that stopped the run as diverged)
    config = tasks.TaskConfig(task="parity", length=4, hidden=6, steps=1, batch=8, seed=5)
    run = tasks.new_task_run(config, tmp_path / "run")
    tasks.train_task(run)
    est = run.estimator
    est.params_["Why"] *= 20000  # logits hundreds of nats apart
    val = run.data.val
    x = np.ascontiguousarray(val.X.transpose(1, 0, 2)).astype(np.float32)
    logits = heads.forward(est.params_, x, "softmax_last", val.lengths).outputs.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(val.y)), val.y]
    assert nll.max() > 110  # some validation label's float32 probability is 0
    metrics = tasks.evaluate(run)
    assert metrics["val_loss"] == pytest.approx(nll.mean(), rel=1e-5)
    assert metrics["val_accuracy"] == np.mean(logits.argmax(axis=1) == val.y)

def test_resume_refuses_a_model_file_that_is_not_the_runs_own(stopped_task_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_task_run, run_dir)
    other = tasks.TaskConfig(task="parity", length=4, hidden=5, steps=1, batch=4, seed=9)
    other_run = tasks.new_task_run(other, tmp_path / "other")
    tasks.train_task(other_run)
    shutil.copy(other_run.out_dir / "model.safetensors", run_dir / "model.safetensors")
    before = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(BpttError, match=r"model\.safetensors is not the model of the run whose "
                       r"train state is beside it \(step 3\)"):
        tasks.resume_task_run(run_dir)
    assert (run_dir / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(("config", "line"), [
    (tasks.TaskConfig(task="adding"),
     "adding (regression, T = 50, D = 2; fresh batches, 1,000 validation sequences)"),
    (tasks.TaskConfig(task="tweets"),
     "tweets (classification, 2 classes, T = 12, D = 3; 2,000 training, 500 validation "
     "sequences)"),
])
def test_a_task_describes_its_data_in_one_line(config, line):
    assert tasks.TaskData(config.resolved()).describe() == line


def test_a_tweets_steps_are_its_words_bag_of_words_plus_noise_of_deviation_0_1():
    data = tasks.tweets(2000, 12, np.random.default_rng(4))
    real = np.arange(12)[None, :] < data.lengths[:, None]
    steps = data.X[real]  # (steps, 3): one-hot of the word + N(0, 0.1²)
    noise = steps - np.eye(3)[steps.argmax(axis=1)]
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    assert not data.X[~real].any()
    # noise= is the deviation: 0 leaves the one-hot words exactly
    quiet = tasks.tweets(50, 6, np.random.default_rng(4), noise=0.0)
    real = np.arange(6)[None, :] < quiet.lengths[:, None]
    np.testing.assert_array_equal(quiet.X[real], np.eye(3)[quiet.X[real].argmax(axis=1)])


def test_digits_are_the_images_row_by_row_over_16_split_80_20(monkeypatch):
    """A stand-in load_digits (scikit-learn is optional) of 50 images, image i numbered by
    its first two pixels: every image is in one of the two sets, once, pixels / 16."""
    import types

    images = np.random.default_rng(0).integers(0, 17, size=(50, 8, 8))
    images[:, 0, 0], images[:, 0, 1] = np.arange(50) // 17, np.arange(50) % 17
    target = np.arange(50) % 10
    datasets = types.ModuleType("sklearn.datasets")
    datasets.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    train, val = tasks.digits(np.random.default_rng(1))
    assert (len(train.y), len(val.y)) == (40, 10)
    ids = [np.rint(d.X[:, 0, 0] * 16 * 17 + d.X[:, 0, 1] * 16).astype(int) for d in (train, val)]
    assert sorted(np.concatenate(ids).tolist()) == list(range(50))
    for data, i in zip((train, val), ids, strict=True):
        assert data.X.dtype == np.float64 and np.all(data.lengths == 8)
        np.testing.assert_array_equal(data.X, images[i] / 16.0)
        np.testing.assert_array_equal(data.y, target[i])


@pytest.mark.parametrize("make, message", [
    (lambda rng: tasks.adding(-1, 5, rng), "n must be an integer >= 1, got -1"),
    (lambda rng: tasks.parity(2.5, 5, rng), "n must be an integer >= 1, got 2.5"),
    (lambda rng: tasks.tweets(0, 5, rng), "n must be an integer >= 1, got 0"),
    (lambda rng: tasks.tweets(3, 5, rng, noise=float("nan")), "noise must be a finite number >= 0"),
    (lambda rng: tasks.tweets(3, 5, rng, noise=-0.1), "noise must be a finite number >= 0"),
])
def test_a_generator_refuses_a_count_or_noise_that_is_no_data_set(make, message):
    """numpy's "negative dimensions" ValueError or its TypeError for a float count came out,
    n = 0 gave an empty set the estimators refuse, and noise=nan made every step NaN."""
    with pytest.raises(BpttError, match=re.escape(message)):
        make(np.random.default_rng(0))
    assert tasks.tweets(2, 5, np.random.default_rng(0), noise=0).X.shape == (2, 5, 3)


# ---- mutation audit (6): what loss.png draws ----


def _drawn_plot(tmp_path, monkeypatch, **settings):
    """Train a small task run to its end; return it, the figure its loss.png was drawn from
    (the last write_plot's) and the PNG's (width, height)."""
    from matplotlib.figure import Figure

    figures = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig",
                        lambda fig, *a, **k: figures.append(fig) or savefig(fig, *a, **k))
    run = tasks.new_task_run(tasks.TaskConfig(**settings), tmp_path / "run")
    assert tasks.train_task(run)
    return run, figures[-1], png_size(run.out_dir / tasks.PLOT_FILE)


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_loss_png_of_a_regression_task_draws_the_mse_against_the_mean_predictors(
        tmp_path, monkeypatch):
    run, fig, size = _drawn_plot(tmp_path, monkeypatch, task="adding", length=6, cell="lstm",
                                 hidden=8, layers=2, steps=6, batch=8, eval_every=3, seed=4)
    assert size == (700, 400)
    [ax] = fig.axes  # no accuracy axis
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == (
        "adding (T=6): lstm, H=8, L=2", "step", "mean squared error", "log")
    lines = _lines(ax)
    assert list(lines) == ["train", "validation", "predicting the mean"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)
    for label, key in (("train", "train_mse"), ("validation", "val_mse")):
        assert list(lines[label].get_xdata()) == [3, 6]
        assert list(lines[label].get_ydata()) == [row[key] for row in run.history]
    # the baseline: the variance of the validation targets (what predicting their mean scores)
    assert list(lines["predicting the mean"].get_ydata()) == [np.var(run.data.val.y)] * 2


def test_loss_png_of_a_classification_task_draws_the_loss_and_the_accuracy_from_0_to_1(
        tmp_path, monkeypatch):
    run, fig, size = _drawn_plot(tmp_path, monkeypatch, task="parity", length=5, hidden=4,
                                 cell="gru", steps=4, batch=4, eval_every=2, seed=0)
    assert size == (700, 400)
    ax, acc = fig.axes
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == (
        "parity (T=5): gru, H=4, L=1", "step", "cross-entropy (nats)", "linear")
    lines = _lines(ax)
    assert list(lines) == ["train", "validation"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    for label, key in (("train", "train_loss"), ("validation", "val_loss")):
        assert list(lines[label].get_xdata()) == [2, 4]
        assert list(lines[label].get_ydata()) == [row[key] for row in run.history]
    assert (acc.get_ylabel(), acc.get_ylim()) == ("accuracy", (0, 1.02))
    [accuracy] = acc.get_lines()
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["validation accuracy"]
    assert list(accuracy.get_xdata()) == [2, 4]
    assert list(accuracy.get_ydata()) == [row["val_accuracy"] for row in run.history]
