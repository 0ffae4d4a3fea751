"""Training a character language model: the loop, evaluation, checkpoints, resume.

Legend: T sequence length (``seq_len``), B parallel streams (``batch``), V vocabulary.

Stateful truncated BPTT, as char-rnn: the text is cut into B streams read T
characters at a time (:class:`bptt.data.StreamBatcher`); the hidden state at
the end of one chunk is the initial state of the next chunk of the same stream,
but the gradient stops at the chunk border (each chunk is its own J = Σ_t J_t).
The state is reset to zeros at every new epoch.

Loss conventions.  The gradients are those of the TOTAL J over the chunk (as in
the derivation and the gradient checks); what is reported is the mean per
character, in nats (J / (T·B)) and in bits per character (bpc = nats / ln 2).

Checkpoints (safetensors only, JSON metadata, each file written atomically):

    DIR/model.safetensors        the weights, cell, sizes, vocabulary, settings
    DIR/train_state.safetensors  weights again, optimizer moments, carried hidden
                                 state; metadata: step, data position, RNG state,
                                 the metrics history, the training losses since the
                                 last evaluation, the corpus description
    DIR/metrics.csv, DIR/loss.png   derived from the history

``train_state`` holds everything a resume needs, so a kill between the two
writes can never pair a new optimizer state with old weights; ``model`` is what
``bptt sample`` and ``bptt export`` read.

The library never prints: :func:`train` reports through a callback.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bptt import checkpoint, flat, models, ops, optim
from bptt.cells import CELLS, common, get_cell
from bptt.corpus import EncodedCorpus
from bptt.data import StreamBatcher, Vocab, check_unk, fingerprint, split_train_val
from bptt.errors import (
    BpttError,
    CheckpointError,
    DataError,
    DivergedError,
    check_int,
    check_positive,
    check_seed,
    is_finite_number,
    is_int,
    is_number,
    printable,
)
from bptt.sample import sample_text

STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "loss.png"
RUN_FILES = (checkpoint.MODEL_FILE, STATE_FILE, METRICS_FILE, PLOT_FILE)
"""The files a run writes into its directory (a new run refuses a directory holding any)."""
# a history row of a run on text: the columns of metrics.csv
HISTORY_COLUMNS = ("step", "train_bpc", "val_bpc", "chars_per_sec")
LN2 = math.log(2)
DTYPES = {"float32": np.float32, "float64": np.float64}


# ----------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every setting of a run (the CLI flags of ``bptt train``; JSON in checkpoints)."""

    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    seq_len: int = 50
    batch: int = 32
    steps: int = 3000
    lr: float = 3e-3
    optimizer: str = "adam"
    clip: float | None = None
    clip_norm: float | None = 5.0
    dtype: str = "float32"
    seed: int = 0
    eval_every: int = 250
    checkpoint_every: int | None = None
    val_fraction: float = 0.05
    sample_length: int = 200
    temperature: float = 0.8
    # the text: how undecodable UTF-8 is read, the unknown-character token, where the
    # encoded corpus is cached (None: DIR/cache), the checkpoint fine-tuned from (if any)
    errors: str = "strict"
    unk: str | None = None
    cache_dir: str | None = None
    init_from: str | None = None

    def validate(self) -> TrainConfig:
        """Raise BpttError naming the first bad setting; return self, its numbers Python's
        (a numpy number is taken as the number it is, and stored as JSON)."""
        if self.cell not in CELLS:
            raise BpttError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.optimizer not in optim.OPTIMIZERS:
            raise BpttError(
                f"unknown optimizer {self.optimizer!r}: choose one of "
                f"{', '.join(optim.OPTIMIZERS)}"
            )
        if self.dtype not in DTYPES:
            raise BpttError(f"unknown dtype {self.dtype!r}: choose float32 or float64")
        for name, low in (("hidden", 1), ("layers", 1), ("seq_len", 1), ("batch", 1),
                          ("steps", 1), ("eval_every", 1), ("sample_length", 0)):
            setattr(self, name, check_int(name, getattr(self, name), low))
        self.seed = check_seed(self.seed)
        if self.checkpoint_every is not None:
            self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, 1)
        for name in ("lr", "temperature"):
            setattr(self, name, check_positive(name, getattr(self, name)))
        for name in ("clip", "clip_norm"):
            if getattr(self, name) is not None:
                setattr(self, name, check_positive(name, getattr(self, name)))
        if not is_number(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise BpttError(f"val_fraction must be between 0 and 1, got {self.val_fraction!r}")
        self.val_fraction = float(self.val_fraction)
        if self.errors not in ("strict", "replace"):
            raise BpttError(f"unknown errors policy {self.errors!r}: choose strict or replace")
        if self.unk is not None:
            check_unk(self.unk)
        for name in ("cache_dir", "init_from"):
            if getattr(self, name) == "":
                raise BpttError(f"{name} must be a path, got an empty string")
        check_sizes(self.hidden, self.layers, self.seq_len, self.batch)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """Settings from a dict (a JSON config file): unknown keys and wrong types refused."""
        if not isinstance(values, dict):
            raise BpttError(f"a config must be a JSON object, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise BpttError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; known keys: "
                f"{', '.join(known)}"
            )
        merged = dataclasses.asdict(base or cls())
        for key, value in values.items():
            merged[key] = _coerce(key, value, cls().__dict__[key], known[key].type)
        return cls(**merged).validate()


MAX_HIDDEN, MAX_LAYERS, MAX_SEQ_LEN, MAX_BATCH = 65536, 64, 1_000_000, 65536


def check_sizes(hidden: int, layers: int, seq_len: int = 1, batch: int = 1) -> None:
    """Refuse a network, or a batch, no machine this runs on could hold (BpttError naming
    the size), before any memory is taken for it; sizes below these bounds that do not fit
    end in a MemoryError.  (A batch is refused here, not by its first allocation: a task
    run's batches are made a piece at a time, each small enough to be granted, so a batch
    of 10^8 grew for minutes past 15 GB.)"""
    for name, value, limit in (("hidden", hidden, MAX_HIDDEN), ("layers", layers, MAX_LAYERS),
                               ("seq_len", seq_len, MAX_SEQ_LEN), ("batch", batch, MAX_BATCH)):
        if value > limit:
            raise BpttError(f"{name} is unreasonably large for this machine (at most {limit:,})")


def _coerce(key: str, value: Any, default: Any, annotation: str | type[Any]) -> Any:
    """Check a JSON value's type against the setting's; ints are accepted for floats."""
    if value is None and "None" in str(annotation):
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif "float" in str(annotation):
        ok = isinstance(value, (int, float))
        # an int beyond every float (10**400: float() raises OverflowError) is kept, for
        # validate to refuse as not finite
        value = float(value) if ok and is_finite_number(value) else value
    elif "int" in str(annotation):
        ok = isinstance(value, int)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise BpttError(
            f"config key {key!r} has the wrong type: got {type(value).__name__} {value!r}, "
            f"expected {annotation}"
        )
    return value


# ----------------------------------------------------------------------------
# a run: everything that changes while training
# ----------------------------------------------------------------------------


@dataclass
class Run:
    """A training run.  ``state`` is the hidden state carried across chunks (public form)."""

    config: TrainConfig
    vocab: Vocab
    params: dict[str, np.ndarray]
    optimizer: optim.Optimizer
    opt_state: dict[str, dict[str, np.ndarray]]
    batches: StreamBatcher
    val_ids: np.ndarray
    state: models.State
    rng: np.random.Generator
    out_dir: Path
    corpus: str
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    # the bits per character of the steps since the last evaluation (saved: see Progress)
    interval_losses: list[float] = field(default_factory=list)
    # the text's FILEs as given (none: the built-in corpus), for a resume to read them again
    files: tuple[str, ...] = ()
    # the training loop's memory (see FastPath): made by the first train_step, never saved
    fast: FastPath | None = field(default=None, repr=False, compare=False)


def prepare_text(
    text: str | EncodedCorpus, config: TrainConfig, vocab: Vocab | None = None
) -> tuple[Vocab, np.ndarray, np.ndarray]:
    """Vocabulary, and the train / validation ids of a text (validation: the last fraction).

    text: a str (kept in memory: the built-in corpus, tests) or an
    :class:`~bptt.corpus.EncodedCorpus` (token ids memory-mapped from the cache; the
    two parts are views of the map, nothing is read whole).  vocab: a fixed vocabulary
    (resume, fine-tuning); characters outside it are an error, or read as
    ``config.unk`` when the vocabulary has that unknown-character token.
    """
    if isinstance(text, EncodedCorpus):
        if vocab is not None and text.vocab != vocab:
            raise DataError(
                "the encoded corpus has another vocabulary than the model; encode it with "
                "the model's vocabulary (bptt train does this for you)."
            )
        vocab, ids = text.vocab, text.ids
    else:
        if vocab is None:
            vocab = Vocab.from_text(text, config.unk)
        ids = vocab.encode(text, config.unk)
    if config.unk is not None and config.unk not in vocab.chars:
        raise DataError(
            f"the unknown-character token {config.unk!r} is not in the vocabulary; use the "
            "--unk character the model was trained with (or none)."
        )
    train_ids, val_ids = split_train_val(ids, config.val_fraction)
    return vocab, train_ids, val_ids


def holds_checkpoint(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a run's model or train state (of text or of a task)."""
    return (Path(out_dir) / checkpoint.MODEL_FILE).exists() or holds_train_state(out_dir)


def holds_train_state(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` is a training run's directory (it holds a train state, of text
    or of a task): its model.safetensors must then only be written by the run itself."""
    return (Path(out_dir) / STATE_FILE).exists()


def is_run_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is the model or the train state of a training run's directory,
    files only the run itself may write (another model there would not match its state)."""
    file = Path(path)
    return file.name in (checkpoint.MODEL_FILE, STATE_FILE) and holds_train_state(file.parent)


def run_files(out_dir: str | os.PathLike) -> list[str]:
    """The files a run writes that ``out_dir`` already holds (a new run there would
    replace them): its checkpoint, metrics.csv, loss.png."""
    return [name for name in RUN_FILES if (Path(out_dir) / name).exists()]


def free_out_dir(base: str | os.PathLike) -> Path:
    """base, or base-2, base-3, …: the first that is no file and holds none of a run's files
    (a missing or an empty directory, or one that holds other things)."""
    base = Path(base)
    candidate, n = base, 1
    while run_files(candidate) or (candidate.exists() and not candidate.is_dir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_fresh_out(out_dir: str | os.PathLike) -> Path:
    """Return ``out_dir`` as a Path if it holds none of a run's files; else BpttError (never
    overwrite: a checkpoint, or a metrics.csv or loss.png of an earlier run or of the user)."""
    out = Path(out_dir)
    if holds_checkpoint(out):
        raise BpttError(
            f"{out} already holds a checkpoint; continue it with --resume {out} "
            "or choose another --out"
        )
    present = run_files(out)
    if present:
        raise BpttError(
            f"{out} already holds {present[0]}, which a run writes there; move it away or "
            "choose another --out"
        )
    return out


def new_run(config: TrainConfig, text: str | EncodedCorpus, corpus: str,
            out_dir: str | os.PathLike, init: checkpoint.LoadedModel | None = None,
            files: Sequence[str] = ()) -> Run:
    """Start a run on ``text`` (described as ``corpus``; read from ``files``, saved for a
    resume to read them again), writing into ``out_dir``.

    The directory is created if needed; one that already holds a checkpoint is refused
    (use :func:`resume_run`), so no earlier run is overwritten.

    init: fine-tuning.  The run starts from this model's weights (copied, cast to
    ``config.dtype``) and vocabulary, with a fresh optimizer state at step 0.  Its cell,
    hidden size and layers must equal ``config``'s; the text must be in its vocabulary
    (or the model has the unknown-character token ``config.unk``).
    """
    config.validate()
    out = check_fresh_out(out_dir)
    vocab = _init_vocab(init, config) if init is not None else None
    vocab, train_ids, val_ids = prepare_text(text, config, vocab)
    batches = StreamBatcher(train_ids, config.batch, config.seq_len)
    rng = np.random.default_rng(config.seed)
    if init is None:
        params = models.init_params(
            config.cell, vocab.size, config.hidden, vocab.size, True, rng,
            DTYPES[config.dtype], config.layers,
        )
    else:
        params = {k: np.array(v, dtype=DTYPES[config.dtype]) for k, v in init.params.items()}
    optimizer = optim.make_optimizer(config.optimizer, config.lr)
    make_out_dir(out)
    return Run(config, vocab, params, optimizer, optimizer.init_state(params), batches, val_ids,
               None, rng, out, corpus, files=tuple(files))


def _init_vocab(init: checkpoint.LoadedModel, config: TrainConfig) -> Vocab:
    """The vocabulary of the model to fine-tune, after checking it fits ``config``."""
    if init.vocab is None:
        raise CheckpointError("the model to fine-tune has no vocabulary; it is not a "
                              "character model, so it cannot be fine-tuned on text.")
    shapes = models.check_params(init.params)
    have = {"cell": shapes.cell, "hidden": shapes.H, "layers": shapes.L}
    for key, value in have.items():
        if getattr(config, key) != value:
            raise BpttError(
                f"the model to fine-tune has {key}={value} but the settings say "
                f"{key}={getattr(config, key)}; the model's shape comes from --init-from, "
                f"so leave out --{key}."
            )
    saved_unk = init.config.get("unk")
    if config.unk != saved_unk:
        raise BpttError(
            f"the model to fine-tune has the unknown-character token {saved_unk!r} but the "
            f"settings say unk={config.unk!r}; the token is part of the model's vocabulary, "
            "so use the model's (bptt train --init-from takes it from the checkpoint)."
        )
    return Vocab.from_list(init.vocab)


class RunDirInUseError(BpttError):
    """Another process holds the run directory's lock: a run training there, or a model
    being saved into it (:func:`not_while_training`)."""


IN_USE = (
    "is in use by another bptt process (a run training there, or a model being saved into it)"
)
"""What holds a run directory's lock, as the messages of a refused command say it."""


@contextlib.contextmanager
def run_dir_lock(
    out_dir: str | os.PathLike,
    advice: str = "wait for it to end (or stop it), or choose another --out",
) -> Iterator[None]:
    """Hold the run directory's lock while a run trains in it: a second run there (a resume,
    or a new run with the same --out) would overwrite its checkpoints and remove its files
    in the middle of their writes.  An advisory lock on the directory itself (flock: no lock
    file to leave behind, and it is let go when the process ends, however it ends); another
    holder makes this raise :class:`RunDirInUseError` at once, its message ending with
    ``advice``.  Where the system cannot lock a directory (no fcntl: Windows; NFS, which
    needs a file open for writing), the run goes on unlocked, as before there was a lock."""
    try:
        import fcntl

        fd = os.open(out_dir, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUseError(f"{out_dir} {IN_USE}; {advice}") from None
        except OSError:
            pass  # locks not supported here: unlocked
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def not_while_training(target: Path, instead: str) -> Iterator[None]:
    """Hold the run lock of the directory of ``target`` while it is written, when it is named
    like a file a training run writes there (model.safetensors, …): a run training in it
    (before its first checkpoint there is no train state to see) would replace it at its next
    checkpoint.  BpttError if another process holds the lock (a run, or another save
    there), saying ``instead`` what to do."""
    if target.name not in RUN_FILES:
        yield
        return
    try:
        with run_dir_lock(target.parent):
            yield
    except RunDirInUseError:
        raise BpttError(
            f"{target.parent} {IN_USE}, which may replace {target.name}; wait for it to "
            f"end, or {instead}"
        ) from None


def make_out_dir(out: Path) -> None:
    """Create the run directory (and parents); BpttError if it cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # (with exist_ok: there, and not a directory)
        raise BpttError(f"the output directory {out} is a file; choose another --out") from None
    except OSError as exc:
        raise BpttError(
            f"cannot create the output directory {out}: {exc.strerror}; choose another --out"
        ) from exc
    if not os.access(out, os.W_OK):
        raise BpttError(f"the output directory {out} is not writable; choose another --out")


def check_writable(run_dir: Path) -> None:
    """BpttError unless the directory of a run to resume can be written (checked before any
    training, not at its first checkpoint)."""
    if not os.access(run_dir, os.W_OK):
        raise BpttError(f"the run directory {run_dir} is not writable; make it writable, or "
                        "copy it somewhere writable and resume the copy")


# ----------------------------------------------------------------------------
# one step, evaluation
# ----------------------------------------------------------------------------


@dataclass
class StepStats:
    """One step: mean loss per character (nats and bits) and the gradient norm before clipping."""

    loss: float
    bpc: float
    grad_norm: float


@dataclass
class FastPath:
    """The training loop's fast path: a run's parameters, gradients and optimizer moments
    as views of one flat buffer each (:class:`bptt.models.Workspace`,
    :func:`bptt.optim.pack_state`), the parameters validated once.

    ``run.params`` and ``run.opt_state`` keep their keys, shapes and values (checkpoints
    do not change); the global norm, clipping and the optimizer run on whole buffers.
    """

    workspace: models.Workspace
    params: dict[str, np.ndarray]  # {"flat": parameters}
    grads: dict[str, np.ndarray]  # {"flat": gradients}
    opt_state: dict[str, dict[str, np.ndarray]]  # {slot: {"flat": …}, "step": the counter}
    slot_views: dict[str, dict[str, np.ndarray]]
    norm_scratch: np.ndarray  # float64, one per gradient element: optim.global_norm's squares

    @classmethod
    def of(cls, run: Run) -> FastPath:
        """Pack ``run``'s parameters and optimizer state (in place) into flat buffers."""
        workspace = models.Workspace(run.params)
        opt_state = optim.pack_state(run.opt_state, workspace.layout)
        slot_views = {slot: dict(run.opt_state[slot]) for slot in run.optimizer.slots}
        return cls(workspace, {flat.FLAT_KEY: workspace.params_flat},
                   {flat.FLAT_KEY: workspace.grads_flat}, opt_state, slot_views,
                   np.empty(workspace.grads_flat.size, np.float64))

    def fits(self, run: Run) -> bool:
        """True while ``run`` still holds exactly the arrays this fast path packed."""
        return self.workspace.owns(run.params) and all(
            flat.is_packed(run.opt_state.get(slot, {}), views)
            for slot, views in self.slot_views.items()
        ) and run.opt_state.get(optim.STEP_SLOT) is self.opt_state[optim.STEP_SLOT]


def train_step(run: Run) -> StepStats:
    """Forward + BPTT on the next chunk, clip, check finiteness, update; advance one step.

    The parameters are validated once per run, when the first step packs them (with the
    optimizer state) into flat buffers: see :class:`FastPath`.
    """
    if run.fast is None or not run.fast.fits(run):
        run.fast = FastPath.of(run)
    fast = run.fast
    inputs, targets, new_epoch = run.batches.next_batch()
    h0 = None if new_epoch else run.state
    # a diverging run's inf and NaN are caught just below, as one DivergedError: numpy's
    # warnings on the way there would only be noise before it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = models.backprop(run.params, inputs, targets, h0=h0, workspace=fast.workspace)
    chars = targets.size
    # result.grads are views of fast.grads["flat"]: one buffer for the norm and the clipping
    norm = optim.global_norm(fast.grads, fast.norm_scratch)
    if not (math.isfinite(result.loss) and math.isfinite(norm)):
        raise DivergedError(run.step + 1)  # (nothing of this step is saved)
    if run.config.clip_norm is not None:
        optim.clip_by_global_norm(fast.grads, run.config.clip_norm, norm=norm)
    if run.config.clip is not None:
        optim.clip_by_value(fast.grads, run.config.clip)
    run.optimizer.update(fast.params, fast.grads, fast.opt_state)
    run.state = result.state
    run.step += 1
    loss = result.loss / chars
    return StepStats(loss, loss / LN2, norm)


EVAL_MAX_CHARS = 250_000


def evaluate(params: dict[str, np.ndarray], val_ids: np.ndarray, config: TrainConfig) -> float:
    """Validation bits per character over B streams, state carried across chunks.

    The whole validation text up to its first EVAL_MAX_CHARS characters (all of it for the
    built-in corpus; a bounded cost per evaluation for a corpus of gigabytes).

    The parameters are validated once, and the chunks' forward passes share one memory
    (the weights do not change during an evaluation): fresh caches for every chunk, each
    page of them faulted in anew, made an evaluation up to 1.5 times as slow; the same
    numbers come out.
    """
    val_ids = val_ids[:EVAL_MAX_CHARS]
    T = min(config.seq_len, len(val_ids) - 1)
    B = max(1, min(config.batch, (len(val_ids) - 1) // T))
    batches = StreamBatcher(val_ids, B, T)
    total, chars, state = 0.0, 0, None
    shapes = models.check_params(params)
    dtype = params["Whh"].dtype
    work = common.Buffers(fixed_params=True)  # made per evaluation: the next one has new weights
    # a diverged model's inf and NaN come out as an infinite or NaN result, which the loop
    # reports as one DivergedError: numpy's warnings on the way would only be noise
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(batches.chunks_per_epoch):
            inputs, targets, _ = batches.next_batch()
            x = models.check_inputs(inputs, shapes, dtype)
            fwd = models.forward_checked(params, shapes, x, state, work)
            total += ops.cross_entropy_forward(fwd.logits, targets)[0]
            chars += targets.size
            state = fwd.state
    return total / chars / LN2


# ----------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------


@dataclass
class Event:
    """What :func:`train` reports: kind is "step", "eval", "checkpoint" or "done"."""

    kind: str
    step: int
    stats: StepStats | None = None
    chars_per_sec: float = 0.0
    val_bpc: float | None = None
    sample: str | None = None


def train(
    run: Run,
    on_event: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
    sample_length: int | None = None,
) -> bool:
    """Train until ``config.steps`` (the run's total), evaluating and checkpointing on the way.

    Returns True when finished, False when ``should_stop()`` asked to stop early (a
    checkpoint of the last completed step is written first).  On divergence the last good
    checkpoint stays and :class:`DivergedError` is raised.

    sample_length: characters sampled at each evaluation for the "eval" event (None:
    ``config.sample_length``; 0 when nothing shows them: the samples are never saved).
    """
    config = run.config
    every = config.checkpoint_every or config.eval_every
    length = config.sample_length if sample_length is None else sample_length
    started, chars_done = time.perf_counter(), 0
    while run.step < config.steps:
        if should_stop():
            save(run)
            on_event(Event("checkpoint", run.step))
            if run.history:  # after the checkpoint: a second Ctrl-C here costs only the plot
                write_plot(run)  # (an older loss.png would not match metrics.csv)
            return False
        stats = train_step(run)
        run.interval_losses.append(stats.bpc)
        chars_done += config.seq_len * config.batch
        speed = chars_done / max(time.perf_counter() - started, 1e-9)
        on_event(Event("step", run.step, stats, speed))
        last, scheduled = run.step == config.steps, run.step % config.eval_every == 0
        if scheduled or last:
            event = _evaluate_and_sample(run, speed, length, scheduled)
            on_event(event)
        if run.step % every == 0 or last:
            if last:  # before the last checkpoint: a run saved at its end has its plot
                write_plot(run)
            save(run)
            on_event(Event("checkpoint", run.step))
    on_event(Event("done", run.step))
    return True


def _evaluate_and_sample(run: Run, speed: float, sample_length: int, scheduled: bool) -> Event:
    """Add the evaluation of this step to the history (the interval's mean training bpc
    included); sample ``sample_length`` characters.  An evaluation on the schedule of
    eval_every starts a new interval; the one of a run's last step off that schedule keeps
    the interval's losses, which go on into the next row if the run is continued (see
    :meth:`Progress.to_continue`)."""
    check_finite_weights(run.params, run.step)
    val_bpc = evaluate(run.params, run.val_ids, run.config)
    if not math.isfinite(val_bpc):  # (cross-entropy from shifted logits: inf only when they are)
        raise DivergedError(run.step)  # before this step's checkpoint: the last one is kept
    losses = run.interval_losses
    run.history.append({
        "step": run.step,
        "train_bpc": float(np.mean(losses)) if losses else float("nan"),
        "val_bpc": val_bpc,
        "chars_per_sec": speed,
    })
    if scheduled:
        run.interval_losses = []
    text = None
    if sample_length > 0:
        # a generator of its own per step: the samples do not depend on when the run resumed
        sample_rng = np.random.default_rng([run.config.seed, run.step])
        text = sample_text(run.params, run.vocab.chars, sample_length, run.config.temperature,
                           rng=sample_rng)
    return Event("eval", run.step, chars_per_sec=speed, val_bpc=val_bpc, sample=text)


# ----------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------


def _state_tensors(state: models.State) -> dict[str, np.ndarray]:
    if state is None:
        return {}
    parts = state if isinstance(state, tuple) else (state,)
    return {f"carry.{i}": np.asarray(s) for i, s in enumerate(parts)}


def _train_meta(run: Run) -> dict[str, Any]:
    return {
        **checkpoint.header("train_state"),
        "config": run.config.to_dict(),
        "vocab": run.vocab.to_list(),
        "corpus": run.corpus,
        "corpus_files": list(run.files),
        "step": run.step,
        "data": {**run.batches.state_dict(), "val_crc32": validation_fingerprint(run.val_ids)},
        "rng": run.rng.bit_generator.state,
        "history": run.history,
        "interval_losses": run.interval_losses,
    }


def check_finite_weights(params: dict[str, np.ndarray], step: int) -> None:
    """DivergedError(step) unless every weight is finite: an update that overflowed them (a
    learning rate far too large) is divergence, caught before they are evaluated or saved
    (the forward of an evaluation would refuse them as a user's bad parameters)."""
    if not all(np.isfinite(p).all() for p in params.values()):
        raise DivergedError(step)


def save(run: Run) -> None:
    """Write the checkpoint (train state first, then the model) and metrics.csv (loss.png:
    :func:`train` draws it at a run's end and at a stop); DivergedError, before anything is
    written, if a weight is NaN or inf."""
    check_finite_weights(run.params, run.step)
    tensors = optim.checkpoint_tensors(run.params, run.opt_state)
    tensors.update(_state_tensors(run.state))
    checkpoint.write_safetensors_atomic(run.out_dir / STATE_FILE, tensors, _train_meta(run))
    checkpoint.save_model(run.out_dir, run.params, run.vocab.to_list(), run.config.to_dict(),
                          run.step)
    write_metrics(run)
    checkpoint.clean_temp_files(run.out_dir, RUN_FILES)


def write_metrics(run: Run) -> Path:
    """metrics.csv from the history (rewritten whole, atomically)."""
    return _write_history(run.out_dir, run.history)


def _write_history(out_dir: Path, history: Sequence[Mapping[str, Any]]) -> Path:
    rows = ([row["step"], f"{row['train_bpc']:.6f}", f"{row['val_bpc']:.6f}",
             f"{row['chars_per_sec']:.1f}"] for row in history)
    return checkpoint.write_csv_atomic(out_dir / METRICS_FILE, HISTORY_COLUMNS, rows)


def stale_files(out_dir: str | os.PathLike, step: int,
                history: Sequence[Mapping[str, Any]]) -> list[str]:
    """The files of the checkpoint in ``out_dir`` that are behind its train state (at
    ``step``, with ``history``): a model.safetensors of an earlier step (or none), a
    metrics.csv whose steps are not the history's (or none).  A kill between the train
    state's write and theirs leaves them so; the run's next checkpoint writes them again,
    but a run that trains no more has none (see :func:`complete_checkpoint`)."""
    out = Path(out_dir)
    model = out / checkpoint.MODEL_FILE
    stale = []
    if not model.exists() or checkpoint.read_metadata(model).get("step") != step:
        stale.append(checkpoint.MODEL_FILE)
    if _csv_steps(out / METRICS_FILE) != [row["step"] for row in history]:
        stale.append(METRICS_FILE)
    return stale


def _csv_steps(file: Path) -> list[int] | None:
    """The step column of a metrics.csv; None when there is none or it cannot be read."""
    try:
        with file.open(encoding="utf-8", newline="") as lines:
            return [int(row["step"]) for row in csv.DictReader(lines)]
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None


def complete_checkpoint(out_dir: str | os.PathLike) -> list[str]:
    """Write again, from the train state in ``out_dir``, the files of its checkpoint that are
    behind it (:func:`stale_files`), as the run's own save writes them; return their names.
    For a resume that trains nothing (the run is at its --steps): no later checkpoint would
    write them, and ``bptt sample`` would read an earlier model, metrics.csv lack rows."""
    saved = read_saved_run(out_dir)  # the settings as saved: the model's metadata holds them
    step, history = saved.progress.step, saved.progress.history
    stale = stale_files(out_dir, step, history)
    if checkpoint.MODEL_FILE in stale:
        checkpoint.save_model(out_dir, saved.params, saved.vocab.to_list(),
                              saved.config.to_dict(), step)
    if METRICS_FILE in stale:
        _write_history(Path(out_dir), history)
    return stale


PLOT_CORPUS_CHARS = 80
"""The most characters loss.png's title gives the corpus's name."""


def plot_corpus_name(run: Run) -> str:
    """The corpus as loss.png's title names it: its name (its paths, printable: see
    bptt.errors.printable), or, when that is longer than PLOT_CORPUS_CHARS, the first FILE
    and how many more (a long path cut to fit): a title of thousands of paths takes
    matplotlib seconds to lay out at every checkpoint (about 2 s per thousand files) and
    shows nothing readable."""
    name = printable(run.corpus)
    if len(name) <= PLOT_CORPUS_CHARS:
        return name
    more = f" + {len(run.files) - 1:,} more files" if len(run.files) > 1 else ""
    first = printable(run.files[0]) if more else name
    room = PLOT_CORPUS_CHARS - len(more)
    return (first if len(first) <= room else first[: room - 1] + "…") + more


def write_plot(run: Run) -> Path:
    """loss.png: train and validation bits per character against step (Figure API, no screen)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    steps = [row["step"] for row in run.history]
    ax.plot(steps, [row["train_bpc"] for row in run.history], "o-", label="train")
    ax.plot(steps, [row["val_bpc"] for row in run.history], "s-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    c = run.config
    ax.set_title(f"{c.cell}, H={c.hidden}, L={c.layers}: {plot_corpus_name(run)}")
    ax.grid(alpha=0.3)
    ax.legend()
    with warnings.catch_warnings():
        # a corpus named in characters the font lacks (CJK) is drawn as boxes, not reported
        # on the terminal: the library never prints
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        fig.tight_layout()
        return checkpoint.replace_atomic(
            run.out_dir / PLOT_FILE, lambda temp: fig.savefig(temp, format="png")
        )


def read_train_state(
    out_dir: str | os.PathLike, kind: str = "train_state"
) -> tuple[Path, dict[str, np.ndarray], dict[str, Any]]:
    """(path, tensors, metadata) of DIR/train_state.safetensors, once the temp files a kill
    left are gone.  kind: "train_state" (a run on text) or bptt.tasks.STATE_KIND (a task
    run).  CheckpointError when there is none, or it holds another kind of run."""
    out = Path(out_dir)
    file = out / STATE_FILE
    if not file.exists():
        raise CheckpointError(
            f"{out} holds no {STATE_FILE} to resume from; start a run there with --out {out}"
        )
    checkpoint.clean_temp_files(out, RUN_FILES)
    tensors, meta = checkpoint.read_safetensors(file)
    checkpoint.check_format(file, meta, kind)
    return file, tensors, meta


# ----------------------------------------------------------------------------
# reading a train state back: every value checked before a run is made of it
# ----------------------------------------------------------------------------


class Progress(NamedTuple):
    """How far a saved run is: its step, its history (the rows of metrics.csv) and the
    training losses of the evaluation interval it stopped in (averaged into the next row).

    ends_off_schedule: the last row is the evaluation of the run's last step, which was not
    a multiple of eval_every (a run always evaluates its end)."""

    step: int
    history: list[dict[str, float]]
    interval_losses: list[float]
    ends_off_schedule: bool = False

    def to_continue(self, steps: int) -> Progress:
        """Where a run going on to ``steps`` in all starts.  Past its old end: without the
        old end's evaluation off the schedule (a run never stopped there has no such row);
        the interval's losses it kept go into the next row, so the continued run's
        metrics.csv is the one of a run that was never stopped.  At its old end (nothing to
        train): the progress as saved."""
        if steps <= self.step or not self.ends_off_schedule:
            return self
        return Progress(self.step, self.history[:-1], self.interval_losses)


def read_progress(file: Path, meta: Mapping[str, Any], columns: Sequence[str],
                  eval_every: int) -> Progress:
    """The step, history and interval losses of a train state's metadata (a run on text or a
    task run: ``columns`` are the history's, ``eval_every`` the saved setting);
    CheckpointError naming the first bad value.

    A file written before the interval losses were saved has none: the interval is empty.

    Whether the last row is the evaluation of an end off the schedule is read off the
    interval, not off ``eval_every``, which a resume may have changed since that row was
    made: an evaluation on the schedule empties the interval, the one of an end off it keeps
    at least that step's loss (a file without interval losses: by ``eval_every``)."""
    saved_step = meta.get("step")
    if not is_int(saved_step) or saved_step < 0:
        raise CheckpointError(f"{file} is damaged: its step must be an integer >= 0, got "
                              f"{saved_step!r}")
    step = int(saved_step)  # (JSON's int already: the type a checker can follow)
    history = _read_history(file, meta.get("history"), columns, step)
    losses = meta.get("interval_losses")
    at_end = bool(history) and history[-1]["step"] == step
    if losses is None:
        off_schedule = at_end and step % eval_every != 0
    else:
        off_schedule = at_end and isinstance(losses, list) and len(losses) > 0
    scheduled = history[:-1] if off_schedule else history
    since_eval = step - (int(scheduled[-1]["step"]) if scheduled else 0)  # (int: checked)
    interval = _read_interval(file, [] if losses is None else losses, since_eval)
    return Progress(step, history, interval, off_schedule)


def _read_history(file: Path, history: Any, columns: Sequence[str], step: int
                  ) -> list[dict[str, float]]:
    """Rows of exactly ``columns``, numbers, at increasing steps from 1 to ``step``."""
    if not isinstance(history, list):
        raise CheckpointError(f"{file} is damaged: its history must be a list of rows, got "
                              f"{type(history).__name__}")
    last = 0
    for i, row in enumerate(history):
        if not isinstance(row, dict) or sorted(row) != sorted(columns):
            raise CheckpointError(f"{file} is damaged: history row {i} must have exactly the "
                                  f"columns {', '.join(columns)}, got {row!r}")
        bad = [c for c in columns if not is_number(row[c])]
        if bad:
            raise CheckpointError(f"{file} is damaged: history row {i} has a {bad[0]} that is "
                                  f"not a number: {row[bad[0]]!r}")
        if not is_int(row["step"]) or not last < row["step"] <= step:
            raise CheckpointError(
                f"{file} is damaged: history row {i} is at step {row['step']!r}; the rows' "
                f"steps must be integers that increase, from 1 to the run's step {step}")
        last = int(row["step"])  # (an int already: checked just above)
    return history


def _read_interval(file: Path, losses: Any, since_eval: int) -> list[float]:
    """At most ``since_eval`` finite numbers (the steps after the last history row)."""
    if not isinstance(losses, list) or not all(
            is_finite_number(x) for x in losses):
        raise CheckpointError(f"{file} is damaged: its interval_losses must be a list of "
                              "finite numbers")
    if len(losses) > since_eval:
        raise CheckpointError(
            f"{file} is damaged: it holds {len(losses)} interval losses but only "
            f"{since_eval} steps were trained since the last evaluation")
    return [float(x) for x in losses]


def check_counter(file: Path, what: str, value: Any, step: int) -> None:
    """A count kept beside the run's step (the optimizer's updates, the batches read) must
    equal it: CheckpointError otherwise."""
    if not is_int(value) or value != step:
        raise CheckpointError(f"{file} is damaged: {what} is {value!r} but the run is at step "
                              f"{step}")


@dataclass
class SavedRun:
    """A run on text as its train state holds it, every value checked: all of a
    :class:`Run` but the text (:func:`read_saved_run`; :func:`continue_run` adds the text)."""

    config: TrainConfig
    vocab: Vocab
    params: dict[str, np.ndarray]
    optimizer: optim.Optimizer
    opt_state: dict[str, dict[str, np.ndarray]]
    state: models.State
    rng: np.random.Generator
    corpus: str
    data: dict[str, Any]
    progress: Progress
    files: tuple[str, ...] | None  # None: a train state of before "corpus_files"


def read_saved_run(out_dir: str | os.PathLike, steps: int | None = None,
                   eval_every: int | None = None) -> SavedRun:
    """The run on text saved in ``out_dir``, read and checked whole before anything is
    trained or written: settings, vocabulary, weights (their shapes against the settings),
    optimizer state, carried hidden state, random generator, step, history, interval losses,
    the optimizer's step counter and the batch position (both equal to the step).
    CheckpointError on the first bad value.

    steps / eval_every replace the saved ones (None: keep them)."""
    file, tensors, meta = read_train_state(out_dir)
    with damaged(file):
        config = TrainConfig.from_dict(meta["config"])
        vocab = Vocab.from_list(meta["vocab"])
        optimizer = optim.make_optimizer(config.optimizer, config.lr)
        params, opt_state, shapes = optim.from_checkpoint_tensors(tensors, optimizer,
                                                                   config.cell)
        rng = checkpoint.generator(meta["rng"])
        data, corpus = meta["data"], meta["corpus"]
    if not isinstance(data, dict) or not isinstance(corpus, str):
        raise CheckpointError(f"{file} is damaged: its 'data' must be an object and its "
                              "'corpus' a string")
    files = meta.get("corpus_files")
    if files is not None and not (isinstance(files, list)
                                  and all(isinstance(f, str) for f in files)):
        raise CheckpointError(f"{file} is damaged: its 'corpus_files' must be a list of paths")
    _check_weights(file, shapes, params["Whh"].dtype, config, vocab)
    progress = read_progress(file, meta, HISTORY_COLUMNS, config.eval_every)
    check_counter(file, "the optimizer's step counter", optim.step_count(opt_state),
                  progress.step)
    check_counter(file, "the batch position", data.get("position"), progress.step)
    state = _read_carry(file, tensors, shapes, config, progress.step)
    check_run_model(out_dir, params, progress.step)
    config = dataclasses.replace(
        config,
        steps=config.steps if steps is None else steps,
        eval_every=config.eval_every if eval_every is None else eval_every,
    ).validate()
    return SavedRun(config, vocab, params, optimizer, opt_state, state, rng, corpus,
                    data, progress, None if files is None else tuple(files))


def check_run_model(out_dir: str | os.PathLike, params: Mapping[str, np.ndarray],
                    step: int) -> None:
    """CheckpointError unless DIR/model.safetensors, which the resumed run will overwrite at
    its next checkpoint, is the run's own: none, or the weights of its train state (``params``
    at ``step``), or those of an earlier checkpoint of the same shapes (the train state is
    written first: a kill between the two writes leaves the model one checkpoint behind).
    A model put there from elsewhere would be lost."""
    file = Path(out_dir) / checkpoint.MODEL_FILE
    if not file.exists():
        return
    move = f"move it away (or copy the run without it) to resume {out_dir}"
    try:
        weights, meta = checkpoint.read_safetensors(file)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} The run would overwrite it; {move}.") from exc
    saved_step = meta.get("step")
    same_shapes = weights.keys() == params.keys() and all(
        weights[k].shape == p.shape and weights[k].dtype == p.dtype for k, p in params.items())
    if same_shapes and (
        (saved_step == step and all(np.array_equal(weights[k], p) for k, p in params.items()))
        or (is_int(saved_step) and 0 <= saved_step < step)
    ):
        return
    raise CheckpointError(
        f"{file} is not the model of the run whose train state is beside it (step {step}); "
        f"the run would overwrite it at its next checkpoint: {move}"
    )


@contextlib.contextmanager
def damaged(file: Path) -> Iterator[None]:
    """Turn what code reading a damaged train state raises (a BpttError, or a KeyError,
    TypeError or ValueError) into one CheckpointError that names the file."""
    try:
        yield
    except BpttError as exc:
        raise CheckpointError(f"{file} is damaged: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file} is damaged or incomplete ({exc!r})") from exc


def _check_weights(file: Path, shapes: models.Shapes, dtype: np.dtype, config: TrainConfig,
                   vocab: Vocab) -> None:
    """The weights' sizes (``shapes``, of the checked weights) and ``dtype`` must be those of
    the settings and the vocabulary."""
    pairs = (("hidden size", config.hidden, shapes.H), ("layers", config.layers, shapes.L),
             ("inputs (the vocabulary)", vocab.size, shapes.D),
             ("outputs (the vocabulary)", vocab.size, shapes.V),
             ("dtype", config.dtype, str(dtype)))
    for what, said, have in pairs:
        if said != have:
            raise CheckpointError(f"{file} is damaged: its settings say {what} {said} but "
                                  f"its weights have {have}")


def _read_carry(file: Path, tensors: Mapping[str, np.ndarray], shapes: models.Shapes,
                config: TrainConfig, step: int) -> models.State:
    """The hidden state carried into the next chunk: (L, B, H) per state of the cell (h, or
    h and c), in the run's dtype; none before the first step."""
    names = get_cell(shapes.cell).STATE_NAMES
    parts = [tensors[f"carry.{i}"] for i in range(len(names)) if f"carry.{i}" in tensors]
    if step == 0 and not parts:
        return None
    want = (shapes.L, config.batch, shapes.H)
    if len(parts) != len(names) or any(
            p.shape != want or p.dtype != DTYPES[config.dtype] or not np.isfinite(p).all()
            for p in parts):
        raise CheckpointError(
            f"{file} is damaged: its carried hidden state must be {len(names)} finite "
            f"{config.dtype} array(s) of shape (L, B, H) = {want}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def continue_run(saved: SavedRun, text: str | EncodedCorpus, out_dir: str | os.PathLike
                 ) -> Run:
    """The :class:`Run` of ``saved`` on its ``text`` (a str, or an
    :class:`~bptt.corpus.EncodedCorpus` encoded with the run's saved vocabulary), writing into
    ``out_dir``; the batch fingerprint proves it is the same text (else BpttError)."""
    config = saved.config
    _, train_ids, val_ids = prepare_text(text, config, saved.vocab)
    batches = StreamBatcher(train_ids, config.batch, config.seq_len)
    batches.load_state_dict(saved.data)
    _check_validation(saved.data.get("val_crc32"), val_ids)
    step, history, interval, _ = saved.progress.to_continue(config.steps)
    return Run(config, saved.vocab, saved.params, saved.optimizer, saved.opt_state, batches,
               val_ids, saved.state, saved.rng, Path(out_dir), saved.corpus, step, history,
               interval, files=saved.files or ())


def validation_fingerprint(val_ids: np.ndarray) -> int:
    """CRC-32 of the validation ids an evaluation scores (its first EVAL_MAX_CHARS), saved
    beside the batch state's fingerprint of the training ids, which does not cover them."""
    return fingerprint(val_ids[:EVAL_MAX_CHARS])


def _check_validation(saved: Any, val_ids: np.ndarray) -> None:
    """DataError unless ``val_ids`` are the saved run's (``saved``: its fingerprint; None in a
    train state of before it was saved: not checked)."""
    if saved is None:
        return
    have = validation_fingerprint(val_ids)
    if saved != have:
        raise DataError(
            f"the saved batch state has val_crc32={saved!r} but this run has {have!r}; resume "
            "with the same text: its validation part (the last --val-fraction) differs"
        )


def resume_run(out_dir: str | os.PathLike, text: str | EncodedCorpus, steps: int | None = None,
               eval_every: int | None = None) -> Run:
    """Continue the run saved in ``out_dir`` exactly where it stopped, on the same ``text``
    (:func:`read_saved_run`, then :func:`continue_run`).

    steps / eval_every may be raised or changed; every other setting comes from the checkpoint.
    """
    return continue_run(read_saved_run(out_dir, steps, eval_every), text, out_dir)
