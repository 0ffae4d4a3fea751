"""Built-in sequence tasks, generated with a numpy Generator (nothing is downloaded), and the
training loop of ``bptt train --task NAME``.

Legend: N sequences, T (padded) length, D features per step, B batch.  Every task returns a
:class:`Dataset`: X (N, T, D) float64 padded at the end, y, lengths (N,) — the estimators'
padded form (batch first).

    adding   regression, D = 2, T = length (default 50).  Hochreiter & Schmidhuber's adding
             problem in its common modern form (Le, Jaitly & Hinton 2015): step t holds a value
             v_t ~ U(0, 1) and a marker m_t ∈ {0, 1}; exactly two markers, one among the first
             ⌈T/2⌉ steps and one among the rest; the target is the sum of the two marked
             values.  Predicting the mean, 1, scores MSE = Var(v_a + v_b) = 1/6 ≈ 0.167: a
             model is solving the task when it is far below (< 0.01 here).
    parity   classification (2 classes), D = 1.  Bits b_t ∈ {0, 1}; the label is Σ_t b_t mod 2,
             read at the sequence's last step (many-to-one).  Training sequences have random
             lengths in [1, T] (each labelled with the parity of its own bits: the short ones
             teach XOR first, the padding machinery makes it one batch); validation sequences
             all have the full length T (default 8).  Chance: 50%.
    tweets   classification (labels "negative"/"positive"), D = 3: the seed's example, a
             synthetic bag-of-words sentiment set.  A tweet is 3 … T words (default T = 12)
             over the vocabulary (good, bad, not); step t is the word's bag-of-words vector
             over those 3 words plus N(0, 0.1²) noise (dense).  Its score is Σ_t s_t with
             s_t = +1 for good, −1 for bad, 0 for not, the sign flipped when the previous word
             is "not"; the label is the sign of the score (ties are redrawn).  Order matters
             (negation), so a plain bag of words of the whole tweet cannot solve it.
    digits   classification (10 classes), D = 8, T = 8: scikit-learn's 8×8 digit images
             (shipped with scikit-learn, no download) read row by row, pixels / 16.  Needs
             the optional extra ``bptt[examples]``; 80% train / 20% validation, split by seed.

The loop (:func:`train_task`) trains a :class:`~bptt.estimators.SequenceClassifier` or
:class:`~bptt.estimators.SequenceRegressor` one minibatch per step (``partial_fit``): a fresh
random batch each step for adding and parity, a random batch of the fixed training set for
tweets and digits.  Every ``eval_every`` steps it measures the validation set, then writes
DIR/train_state.safetensors (what :func:`resume_task_run` continues from, exactly),
DIR/model.safetensors (the estimator, see its ``save``), DIR/metrics.csv; DIR/loss.png at the
end.  The library never prints: the loop reports through a callback, as bptt.train.train.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bptt import checkpoint, models, ops, optim, train
from bptt.cells import CELLS
from bptt.errors import (
    BpttError,
    DivergedError,
    check_int,
    check_positive,
    check_seed,
    is_finite_number,
    is_int,
)
from bptt.estimators import SequenceClassifier, SequenceRegressor, r2_score

TASKS = ("adding", "parity", "tweets", "digits")
VALIDATION_SIZE = 1000  # sequences in the validation set of a generated task
TWEETS_TRAIN, TWEETS_VAL = 2000, 500
TWEET_WORDS = ("good", "bad", "not")
TWEET_LABELS = ("negative", "positive")
METRICS_FILE = train.METRICS_FILE
PLOT_FILE = train.PLOT_FILE
STATE_FILE = train.STATE_FILE
STATE_KIND = "task_state"  # the "kind" of a task run's STATE_FILE (a text run's: "train_state")


class Dataset(NamedTuple):
    """X (N, T, D) float64, zeros on padding; y (N,) labels or (N,) values; lengths (N,)."""

    X: np.ndarray
    y: np.ndarray
    lengths: np.ndarray


# ----------------------------------------------------------------------------
# the generators
# ----------------------------------------------------------------------------


def _check_length(name: str, length: Any, low: int) -> int:
    if not is_int(length) or length < low:
        raise BpttError(f"the {name} task needs a length >= {low}, got {length!r}")
    if length > 100_000:
        raise BpttError(f"a {name} length of {length} is unreasonably long for this machine")
    return int(length)


def adding(n: int, length: int, rng: np.random.Generator) -> Dataset:
    """n adding-problem sequences of T = length steps: X (n, T, 2) = (value, marker), y (n,)."""
    n, T = check_int("n", n, 1), _check_length("adding", length, 2)
    values = rng.random((n, T))
    half = (T + 1) // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return Dataset(np.stack([values, markers], axis=-1), y, np.full(n, T, dtype=np.int64))


def parity(n: int, length: int, rng: np.random.Generator, variable: bool = False) -> Dataset:
    """n bit sequences, y (n,) = parity of each.  variable: lengths uniform in [1, length]."""
    n, T = check_int("n", n, 1), _check_length("parity", length, 1)
    bits = rng.integers(0, 2, size=(n, T))
    lengths = rng.integers(1, T + 1, size=n) if variable else np.full(n, T)
    real = np.arange(T)[None, :] < lengths[:, None]
    bits = bits * real
    return Dataset(bits[..., None].astype(np.float64), bits.sum(axis=1) % 2,
                   lengths.astype(np.int64))


def tweets(n: int, length: int, rng: np.random.Generator, noise: float = 0.1) -> Dataset:
    """n synthetic tweets of 3 … length words: X (n, T, 3), y (n,) "negative"/"positive"."""
    n, T = check_int("n", n, 1), _check_length("tweets", length, 3)
    if not is_finite_number(noise) or noise < 0:  # (NaN would make every step NaN)
        raise BpttError(f"noise must be a finite number >= 0, got {noise!r}")
    words = np.empty((n, T), dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    scores = np.zeros(n)
    todo = np.arange(n)
    while todo.size:  # redraw the tweets whose score is 0 (no sentiment)
        lengths[todo] = rng.integers(3, T + 1, size=todo.size)
        words[todo] = rng.choice(3, size=(todo.size, T), p=[0.4, 0.4, 0.2])
        scores[todo] = _tweet_scores(words[todo], lengths[todo])
        todo = todo[scores[todo] == 0]
    real = np.arange(T)[None, :] < lengths[:, None]
    X = (np.eye(3)[words] + noise * rng.normal(size=(n, T, 3))) * real[..., None]
    return Dataset(X, np.array(TWEET_LABELS)[(scores > 0).astype(int)], lengths)


def _tweet_scores(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Σ_t s_t: +1 good, −1 bad, 0 not; flipped after a "not"; only the real steps count."""
    sentiment = np.array([1.0, -1.0, 0.0])[words]
    after_not = np.zeros_like(sentiment, dtype=bool)
    after_not[:, 1:] = words[:, :-1] == 2
    sentiment = np.where(after_not, -sentiment, sentiment)
    real = np.arange(words.shape[1])[None, :] < lengths[:, None]
    return (sentiment * real).sum(axis=1)


def digits(rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """scikit-learn's 8×8 digits, row by row: (train 80%, validation 20%), X (N, 8, 8)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BpttError(
            "the digits task needs scikit-learn, which is not installed: "
            "pip install 'bptt[examples]' (or pip install scikit-learn)"
        ) from None
    data = load_digits()
    X = np.asarray(data.images, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = rng.permutation(len(y))
    cut = (4 * len(y)) // 5
    full = np.full(len(y), 8, dtype=np.int64)
    take = [order[:cut], order[cut:]]
    return tuple(Dataset(X[i], y[i], full[i]) for i in take)  # type: ignore[return-value]


# ----------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------

# each task's length (None: fixed by the data) and the settings it trains well with
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "adding": {"length": 50, "hidden": 64, "steps": 1500, "lr": 1e-2},
    "parity": {"length": 8, "hidden": 16, "steps": 300, "lr": 1e-2},
    "tweets": {"length": 12, "hidden": 16, "steps": 500, "lr": 1e-2},
    "digits": {"length": None, "hidden": 64, "steps": 600, "lr": 1e-2},
}
CLASSIFICATION = {"parity", "tweets", "digits"}


@dataclass
class TaskConfig:
    """The settings of ``bptt train --task``; None takes the task's default (TASK_DEFAULTS)."""

    task: str = "adding"
    length: int | None = None
    cell: str = "lstm"
    hidden: int | None = None
    layers: int = 1
    steps: int | None = None
    batch: int = 32
    lr: float | None = None
    optimizer: str = "adam"
    clip_norm: float | None = 1.0
    dtype: str = "float32"
    seed: int = 0
    eval_every: int = 100

    def resolved(self) -> TaskConfig:
        """The settings with the task's defaults filled in, validated (BpttError on the first
        bad one)."""
        if self.task not in TASKS:
            raise BpttError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        defaults = TASK_DEFAULTS[self.task]
        if defaults["length"] is None and self.length is not None:
            raise BpttError(f"the {self.task} task has a fixed length; --task-length does not "
                            "apply to it")
        values = {k: defaults[k] if getattr(self, k) is None else getattr(self, k)
                  for k in ("length", "hidden", "steps", "lr")}
        config = dataclasses.replace(self, **values)
        if config.cell not in CELLS:
            raise BpttError(f"unknown cell {config.cell!r}: choose one of {', '.join(CELLS)}")
        if config.optimizer not in optim.OPTIMIZERS:
            raise BpttError(f"unknown optimizer {config.optimizer!r}")
        if config.dtype not in train.DTYPES:
            raise BpttError(f"unknown dtype {config.dtype!r}: choose float32 or float64")
        # numbers are kept as Python's (numpy's taken as the numbers they are): they go to JSON
        config.hidden = hidden = check_int("hidden", config.hidden, 1)
        for name, low in (("layers", 1), ("steps", 1), ("batch", 1), ("eval_every", 1)):
            setattr(config, name, check_int(name, getattr(config, name), low))
        config.seed = check_seed(config.seed)
        train.check_sizes(hidden, config.layers, batch=config.batch)
        for name in ("lr", "clip_norm"):
            if getattr(config, name) is not None:
                setattr(config, name, check_positive(name, getattr(config, name)))
        if config.length is not None:
            config.length = _check_length(config.task, config.length, 3 if config.task ==
                                          "tweets" else 2 if config.task == "adding" else 1)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (the metadata a task run stores)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------
# a run
# ----------------------------------------------------------------------------


class TaskData:
    """Where a run's batches and its validation set come from."""

    def __init__(self, config: TaskConfig) -> None:
        self.name, self.length = config.task, config.length
        self.classification = config.task in CLASSIFICATION
        self.train: Dataset | None = None
        data_rng = np.random.default_rng([config.seed, 1])  # the data, apart from training
        if config.task == "digits":
            self.train, self.val = digits(data_rng)
        else:
            T = config.length
            assert T is not None  # resolved() gives every task its length but digits
            if config.task == "adding":
                self.val = adding(VALIDATION_SIZE, T, data_rng)
            elif config.task == "parity":
                self.val = parity(VALIDATION_SIZE, T, data_rng)
            else:
                self.train = tweets(TWEETS_TRAIN, T, data_rng)
                self.val = tweets(TWEETS_VAL, T, data_rng)
        self.classes = (np.unique(self.val.y if self.train is None else self.train.y)
                        if self.classification else None)

    @property
    def features(self) -> int:
        """D, the features of each step of the task's inputs."""
        return int(self.val.X.shape[2])

    def describe(self) -> str:
        """One line for people: what the task is and how much data it has."""
        size = "fresh batches" if self.train is None else f"{len(self.train.y):,} training"
        kind = (f"classification, {len(self.classes)} classes" if self.classes is not None
                else "regression")  # (classes: None for a regression)
        length = f"T = {self.length}" if self.length else f"T = {self.val.X.shape[1]}"
        return (f"{self.name} ({kind}, {length}, D = {self.features}; {size}, "
                f"{len(self.val.y):,} validation sequences)")

    def batch(self, B: int, rng: np.random.Generator) -> Dataset:
        """The next training batch: generated afresh, or drawn from the training set."""
        if self.name in ("adding", "parity"):
            assert self.length is not None  # resolved() gives both their length
            if self.name == "adding":
                return adding(B, self.length, rng)
            return parity(B, self.length, rng, variable=True)
        assert self.train is not None
        rows = rng.choice(len(self.train.y), size=min(B, len(self.train.y)), replace=False)
        return Dataset(self.train.X[rows], self.train.y[rows], self.train.lengths[rows])


@dataclass
class TaskRun:
    """A task training run: its settings, data, estimator, directory, and progress."""

    config: TaskConfig
    data: TaskData
    estimator: SequenceClassifier | SequenceRegressor
    out_dir: Path
    rng: np.random.Generator
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    # the training losses of the steps since the last evaluation (saved, as a text run's)
    interval_losses: list[float] = field(default_factory=list)


def history_columns(classification: bool) -> tuple[str, ...]:
    """The columns of a task run's history rows (and metrics.csv), in order."""
    if classification:
        return ("step", "train_loss", "val_loss", "val_accuracy", "seqs_per_sec")
    return ("step", "train_mse", "val_mse", "val_r2", "seqs_per_sec")


def new_task_run(config: TaskConfig, out_dir: str | os.PathLike) -> TaskRun:
    """Start a run of ``config`` (its defaults filled in) writing into ``out_dir``.

    A directory that already holds a checkpoint is refused (nothing is overwritten).
    """
    config = config.resolved()
    out = train.check_fresh_out(out_dir)
    data = TaskData(config)
    estimator = _estimator(config, data)
    train.make_out_dir(out)
    return TaskRun(config, data, estimator, out, np.random.default_rng([config.seed, 2]))


def _estimator(config: TaskConfig, data: TaskData) -> SequenceClassifier | SequenceRegressor:
    """The (unfitted) estimator a run of ``config`` trains, one minibatch per partial_fit."""
    kind = SequenceClassifier if data.classification else SequenceRegressor
    assert config.hidden is not None and config.lr is not None  # resolved() filled them in
    return kind(
        cell=config.cell, hidden_size=config.hidden, num_layers=config.layers,
        optimizer=config.optimizer, lr=config.lr, epochs=1, batch_size=config.batch,
        clip_norm=config.clip_norm, dtype=config.dtype, random_state=config.seed,
    )


def resume_task_run(out_dir: str | os.PathLike, steps: int | None = None,
                    eval_every: int | None = None) -> TaskRun:
    """Continue the run saved in ``out_dir`` exactly where it stopped (the data is made
    again from the seed; the weights, the optimizer's state, both random generators, the
    history and the losses of the unfinished evaluation interval come from
    DIR/train_state.safetensors, every value checked before anything is trained or written).
    steps (the run's total) and eval_every may change; every other setting comes from the
    checkpoint."""
    out = Path(out_dir)
    file, tensors, meta = train.read_train_state(out, STATE_KIND)
    with train.damaged(file):
        config = TaskConfig(**meta["task_config"]).resolved()
        rng = checkpoint.generator(meta["rng"])
    data = TaskData(config)  # (the digits task may need scikit-learn: not a damaged file)
    estimator = _estimator(config, data)
    with train.damaged(file):
        estimator._restore_train_state(tensors, meta["estimator"])
    progress = train.read_progress(file, meta, history_columns(data.classification),
                                   config.eval_every)
    step = progress.step
    train.check_counter(file, "the optimizer's step counter",
                        optim.step_count(estimator._opt_state), step)
    train.check_counter(file, "the estimator's step count", estimator.n_steps_, step)
    train.check_counter(file, "the estimator's epoch count", estimator.n_iter_, step)
    train.check_run_model(out, estimator.params_, step)
    config = dataclasses.replace(
        config,
        steps=config.steps if steps is None else steps,
        eval_every=config.eval_every if eval_every is None else eval_every,
    ).resolved()
    assert config.steps is not None  # resolved() filled it in
    return TaskRun(config, data, estimator, out, rng, *progress.to_continue(config.steps)[:3])


def num_parameters(run: TaskRun) -> int:
    """How many numbers the run's model holds (cell, H, L, D and the outputs)."""
    c = run.config
    outputs = len(run.data.classes) if run.data.classes is not None else 1  # (None: regression)
    assert c.hidden is not None  # resolved() filled it in
    shapes = models.init_params(c.cell, run.data.features, c.hidden, outputs, True,
                                np.random.default_rng(0), np.float32, c.layers)
    return sum(v.size for v in shapes.values())


@dataclass
class TaskEvent:
    """What :func:`train_task` reports: kind "step", "eval", "checkpoint" or "done".

    loss: the step's mean loss (cross-entropy per sequence, or squared error per value);
    metrics: at "eval", the row added to the history (see :func:`evaluate`).
    """

    kind: str
    step: int
    loss: float | None = None
    seqs_per_sec: float = 0.0
    metrics: dict[str, float] | None = None


def evaluate(run: TaskRun) -> dict[str, float]:
    """Validation metrics: val_loss (mean cross-entropy, nats) and val_accuracy, or val_mse
    (mean squared error per value) and val_r2."""
    # a diverged model's inf and NaN come out in the metrics, which the loop reports as one
    # DivergedError: numpy's warnings on the way would only be noise
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _metrics(run)


def _metrics(run: TaskRun) -> dict[str, float]:
    val, est = run.data.val, run.estimator
    if isinstance(est, SequenceClassifier):
        # the cross-entropy from the logits (log-softmax), not from the probabilities: a
        # float32 probability under 1e-45 is 0, and its −log an infinite loss (a DivergedError
        # of a model whose weights are finite) where the loss is a finite number of nats
        logits = est._outputs(val.X, val.lengths)
        index = np.searchsorted(est.classes_, val.y)
        J, _ = ops.cross_entropy_forward(logits, index)
        return {"val_loss": J / len(index),
                "val_accuracy": float(np.mean(logits.argmax(axis=1) == index))}
    predicted = est.predict(val.X, lengths=val.lengths)
    assert isinstance(predicted, np.ndarray)  # a task's model is of whole sequences (no per_step)
    # R² of these predictions, as est.score computes it (the targets in the weights' dtype),
    # without a second forward pass over the validation set
    targets = val.y.astype(est.params_["Whh"].dtype)
    return {"val_mse": float(np.mean((predicted - val.y) ** 2)),
            "val_r2": r2_score(targets, predicted)}


def train_task(
    run: TaskRun,
    on_event: Callable[[TaskEvent], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Train ``config.steps`` minibatch steps, evaluating and checkpointing every eval_every.

    Returns True when finished, False when ``should_stop()`` asked to stop early (the
    checkpoint of the last completed step is written first).
    """
    config, est = run.config, run.estimator
    steps = config.steps
    assert steps is not None  # resolved() filled it in
    started, seen = time.perf_counter(), 0
    while run.step < steps:
        if should_stop():
            if run.step:
                save(run)
                on_event(TaskEvent("checkpoint", run.step))
            if run.history:  # after the checkpoint (see bptt.train.train)
                write_plot(run)
            return False
        batch = run.data.batch(config.batch, run.rng)
        if isinstance(est, SequenceClassifier):
            est.partial_fit(batch.X, batch.y, lengths=batch.lengths, classes=run.data.classes)
        else:
            est.partial_fit(batch.X, batch.y, lengths=batch.lengths)
        run.step += 1
        loss = est.loss_curve_[-1]
        run.interval_losses.append(loss)
        seen += len(batch.y)
        speed = seen / max(time.perf_counter() - started, 1e-9)
        on_event(TaskEvent("step", run.step, loss, speed))
        last, scheduled = run.step == config.steps, run.step % config.eval_every == 0
        if scheduled or last:
            train_key = history_columns(run.data.classification)[1]
            metrics = evaluate(run)  # (weights overflowed by an update: partial_fit raised)
            if not all(math.isfinite(v) for v in metrics.values()):
                raise DivergedError(run.step)  # before this step's checkpoint
            row = {"step": run.step, train_key: float(np.mean(run.interval_losses)),
                   **metrics, "seqs_per_sec": speed}
            if scheduled:  # (a last step off the schedule keeps them: train.Progress)
                run.interval_losses = []
            run.history.append(row)
            on_event(TaskEvent("eval", run.step, seqs_per_sec=speed, metrics=row))
            if last:  # before the last checkpoint: a run saved at its end has its plot
                write_plot(run)
            save(run)
            on_event(TaskEvent("checkpoint", run.step))
    on_event(TaskEvent("done", run.step))
    return True


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------


def save(run: TaskRun) -> Path:
    """The checkpoint: DIR/train_state.safetensors (everything :func:`resume_task_run` needs,
    the weights included, so a kill between the two writes never pairs a new optimizer
    state with old weights), then DIR/model.safetensors (the estimator, with the task, step
    and history) and metrics.csv.  Returns the model's path.  (Its weights are finite: the
    estimator raises DivergedError at an update that overflows them.)"""
    tensors, estimator_state = run.estimator._train_state()
    meta = {**checkpoint.header(STATE_KIND), "task_config": run.config.to_dict(),
            "step": run.step, "history": run.history, "interval_losses": run.interval_losses,
            "rng": run.rng.bit_generator.state, "estimator": estimator_state}
    checkpoint.write_safetensors_atomic(run.out_dir / STATE_FILE, tensors, meta)
    path = _write_model(run)
    write_metrics(run)
    checkpoint.clean_temp_files(run.out_dir, train.RUN_FILES)
    return path


def _write_model(run: TaskRun) -> Path:
    """DIR/model.safetensors: the estimator, with the task, step and history."""
    info = {"task": run.config.task, "length": run.config.length, "step": run.step,
            "task_config": run.config.to_dict(), "history": run.history}
    return run.estimator._write(run.out_dir / checkpoint.MODEL_FILE, info)


def complete_checkpoint(out_dir: str | os.PathLike) -> list[str]:
    """Write again, from the train state in ``out_dir``, the files of its checkpoint that are
    behind it (:func:`bptt.train.stale_files`), as :func:`save` writes them; return their
    names (see :func:`bptt.train.complete_checkpoint`)."""
    run = resume_task_run(out_dir)  # the settings as saved: the model's metadata holds them
    stale = train.stale_files(out_dir, run.step, run.history)
    if checkpoint.MODEL_FILE in stale:
        _write_model(run)
    if METRICS_FILE in stale:
        write_metrics(run)
    return stale


def write_metrics(run: TaskRun) -> Path:
    """metrics.csv from the history (rewritten whole, atomically)."""
    columns = history_columns(run.data.classification)
    rows = ([row[c] if c == "step" else f"{row[c]:.6g}" for c in columns] for row in run.history)
    return checkpoint.write_csv_atomic(run.out_dir / METRICS_FILE, columns, rows)


def write_plot(run: TaskRun) -> Path:
    """loss.png: training and validation loss against step (and validation accuracy)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    steps = [row["step"] for row in run.history]
    classification = run.data.classification
    _, train_key, val_key, *_ = history_columns(classification)
    ax.plot(steps, [row[train_key] for row in run.history], "o-", label="train")
    ax.plot(steps, [row[val_key] for row in run.history], "s-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)" if classification else "mean squared error")
    if not classification:
        # predicting the mean of the targets scores their variance (adding: 1/6)
        ax.axhline(float(np.var(run.data.val.y)), color="gray", linestyle=":",
                   label="predicting the mean")
        ax.set_yscale("log")
    if classification:
        acc = ax.twinx()
        acc.plot(steps, [row["val_accuracy"] for row in run.history], "^--", color="tab:green",
                 label="validation accuracy")
        acc.set_ylabel("accuracy")
        acc.set_ylim(0, 1.02)
        acc.legend(loc="center right")
    c = run.config
    ax.set_title(f"{c.task} (T={run.data.val.X.shape[1]}): {c.cell}, H={c.hidden}, L={c.layers}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left" if classification else "upper right")
    fig.tight_layout()
    return checkpoint.replace_atomic(
        run.out_dir / PLOT_FILE, lambda temp: fig.savefig(temp, format="png")
    )
