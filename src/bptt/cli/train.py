"""``bptt train``: train a character language model, with a progress bar, evals and checkpoints.

Text FILEs are encoded once into a cache of token ids (:mod:`bptt.corpus`, progress bar
while encoding) and read back memory-mapped; the built-in corpus is small and stays in
memory.  ``--init-from`` fine-tunes a trained model on new text; ``--resume`` continues
a run exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bptt import checkpoint, corpus, data, train
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.cli import progress, train_task
from bptt.errors import BpttError, parse_json
from bptt.optim import OPTIMIZERS
from bptt.tasks import STATE_KIND, TASK_DEFAULTS, TASKS, TaskConfig

if TYPE_CHECKING:
    from tqdm import tqdm

DEFAULT_OUT = Path("runs") / "train"
FILE_SEPARATOR = corpus.SEPARATOR  # "\n" between the texts of several FILEs
CACHE_SUBDIR = "cache"
ENCODING_LABELS = {"scan": "encoding 1/2: scan", "encode": "encoding 2/2: write"}


def add_parser(sub, name: str) -> None:
    """Register the subcommand.  Every setting defaults to None here so that the order of
    precedence is: built-in defaults < --config file < flags given on the command line."""
    d = train.TrainConfig()
    p = sub.add_parser(
        name,
        help="train a character language model (default: on Python's own help text)",
        description=(
            "Train a character-level language model on FILE(s) (UTF-8 text of any size; the "
            "vocabulary is the Unicode characters of the text; several files are joined with "
            "a newline between them) or, with no FILE, on the built-in corpus: the text of "
            f"CPython's {data.BUILTIN_CORPUS_NAME} module (about half a million characters: "
            "465k on Python 3.11, 511k on 3.13; ships with Python). The FILEs are encoded "
            "once into token ids (uint8 for up to 256 "
            "distinct characters, else uint16/uint32) cached in --cache-dir and read back "
            "memory-mapped, so memory does not grow with the corpus; the cache is reused "
            "while the files keep their size, mtime and ctime (a file whose times changed is "
            "hashed again and re-encoded if its content changed). Writes "
            "model.safetensors, train_state.safetensors, metrics.csv and loss.png to --out. "
            "--steps is the run's total: a resumed run continues to it."
        ),
    )
    p.add_argument("files", nargs="*", metavar="FILE", type=types.nonempty_path,
                   help="UTF-8 text file(s) to train on")
    p.add_argument("--cell", choices=sorted(CELLS), help=f"recurrent cell ({d.cell})")
    p.add_argument("--hidden", type=types.positive_int, help=f"hidden size H ({d.hidden})")
    p.add_argument("--layers", type=types.positive_int, help=f"stacked layers L ({d.layers})")
    p.add_argument("--seq-len", type=types.positive_int, help=f"BPTT length T ({d.seq_len})")
    p.add_argument("--batch", type=types.positive_int, help=f"parallel streams B ({d.batch})")
    p.add_argument("--steps", type=types.positive_int, help=f"total training steps ({d.steps})")
    p.add_argument("--lr", type=types.positive_float, help=f"learning rate ({d.lr:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer ({d.optimizer})")
    p.add_argument("--clip", type=types.positive_float,
                   help="clip each gradient entry to [-CLIP, CLIP] (min-char-rnn: 5; off)")
    clip_norm = p.add_mutually_exclusive_group()
    clip_norm.add_argument("--clip-norm", type=types.positive_float,
                           help=f"clip the global gradient norm ({d.clip_norm:g})")
    clip_norm.add_argument("--no-clip-norm", action="store_true",
                           help="do not clip the global norm")
    p.add_argument("--dtype", choices=sorted(train.DTYPES), help=f"float type ({d.dtype})")
    p.add_argument("--seed", type=types.seed, help=f"random seed ({d.seed})")
    p.add_argument("--eval-every", type=types.positive_int,
                   help=f"steps between validation + sample + checkpoint ({d.eval_every})")
    p.add_argument("--checkpoint-every", type=types.positive_int,
                   help="steps between checkpoints (default: --eval-every)")
    p.add_argument("--sample-length", type=types.nonnegative_int,
                   help=f"characters sampled at each eval and shown ({d.sample_length}; "
                        f"none under --quiet)")
    p.add_argument("--temperature", type=types.positive_float,
                   help=f"sampling temperature at each eval ({d.temperature:g})")
    p.add_argument("--val-fraction", type=_fraction,
                   help=f"the last fraction of the text held out for validation "
                        f"({d.val_fraction:g}); each evaluation scores at most its first "
                        f"{train.EVAL_MAX_CHARS:,} characters and the rest is not trained on "
                        f"either, so take a smaller one for a large corpus")
    p.add_argument("--errors", choices=data.ERRORS,
                   help="bytes that are not valid UTF-8: 'strict' stops with an error naming "
                        "the file and byte offset (default); 'replace' reads each as U+FFFD "
                        "(\N{REPLACEMENT CHARACTER}), which then is a character of the "
                        "vocabulary")
    p.add_argument("--unk", metavar="CHAR", type=_one_char,
                   help="add CHAR to the vocabulary as the unknown-character token: when the "
                        "model is later fine-tuned (--init-from) on text with characters "
                        "outside its vocabulary, or primed with them (bptt sample), they are "
                        "read as CHAR instead of being an error (default: none)")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="fine-tune: start from this model's weights and vocabulary (a run "
                        "directory or model.safetensors), with a fresh optimizer at step 0; "
                        "--cell/--hidden/--layers (and --unk) come from the model and may "
                        "not be changed, and --dtype defaults to the model's; characters of "
                        "FILE outside its vocabulary are an error unless it was trained "
                        "with --unk")
    p.add_argument("--cache-dir", type=types.nonempty_path, metavar="DIR",
                   help=f"where the encoded FILEs (token ids and a JSON manifest with the "
                        f"vocabulary) are cached (default: {CACHE_SUBDIR}/ inside the run "
                        f"directory); share one between runs to encode a corpus once")
    p.add_argument("--config", type=types.nonempty_path,
                   help="JSON file of settings: an object keyed by the flags' names with _ "
                        "for - (e.g. {\"hidden\": 256, \"seq_len\": 100, \"clip_norm\": "
                        "null}); a flag given on the command line overrides it")
    p.add_argument("--out", type=types.nonempty_path,
                   help=f"run directory (default {DEFAULT_OUT}, or {DEFAULT_OUT}-2, … if taken)")
    p.add_argument("--resume", type=types.nonempty_path, metavar="DIR",
                   help="continue the run saved in DIR up to --steps in all (a run already "
                        "there is left untouched: one line says so, exit 0; only the files "
                        "of a last checkpoint a stop cut short are written again)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and nothing on standard output: no evaluations, "
                        "no samples (none are generated: the samples are shown, never "
                        "saved), no summary; errors and the line of a stop still go to "
                        "standard error")
    p.add_argument("--task", choices=TASKS, help=_task_help())
    p.add_argument("--task-length", type=types.positive_int, metavar="N",
                   help="sequence length of --task adding/parity (max length for tweets; "
                        + ", ".join(f"{name} {d['length']}" for name, d in TASK_DEFAULTS.items()
                                    if d["length"] is not None) + ")")
    # (--quiet writes nothing there: see cli._require_stdout)
    p.set_defaults(run=run, prints=("the run's progress lines",
                                    "give --quiet, or redirect it to a file, e.g. > train.log"))


def _task_help() -> str:
    """--task's help, with the defaults a task run has in place of the ones above."""
    c = TaskConfig()
    each = "; ".join(f"{name} --hidden {d['hidden']} --steps {d['steps']} --lr {d['lr']:g}"
                     for name, d in TASK_DEFAULTS.items())
    return ("train on a built-in sequence task instead of text (docs/tasks.md), whose "
            f"defaults differ from those above: {each}; every task --clip-norm {c.clip_norm:g} "
            f"--eval-every {c.eval_every} (--cell {c.cell}, --layers {c.layers}, --batch "
            f"{c.batch} as above); the text-only flags are refused")


def _fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") \
            from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


def _one_char(text: str) -> str:
    """Exactly one Unicode character (read as UTF-8 under any locale, as types.utf8_text)."""
    text = types.utf8_text(text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected exactly one character, got {text!r}")
    return text


SETTINGS = ("cell", "hidden", "layers", "seq_len", "batch", "steps", "lr", "optimizer", "clip",
            "clip_norm", "dtype", "seed", "eval_every", "checkpoint_every", "sample_length",
            "temperature", "val_fraction", "errors", "unk", "cache_dir", "init_from")
# may be given again with --resume: how long to go on, and where the encoded text is cached
RESUME_SETTINGS = ("steps", "eval_every", "cache_dir")


def _given(args: argparse.Namespace) -> dict:
    """The settings given as flags (paths as strings)."""
    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if args.no_clip_norm:
        given["clip_norm"] = None
    return {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}


def _explicit(args: argparse.Namespace) -> dict:
    """The settings given in the --config file or as flags (not the built-in defaults)."""
    values = _read_json(args.config) if args.config is not None else {}
    return (values if isinstance(values, dict) else {}) | _given(args)


def load_config(args: argparse.Namespace) -> train.TrainConfig:
    """Built-in defaults, then the --config file, then the flags given."""
    values = {}
    if args.config is not None:
        values = _read_json(args.config)
    config = train.TrainConfig.from_dict(values)
    return train.TrainConfig.from_dict(_given(args), base=config)


def _read_json(path: Path) -> dict:
    """The --config file: UTF-8 JSON, a byte-order mark at its start dropped (as of a FILE)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BpttError(f"config file {path} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BpttError(f"cannot read config file {path}: {exc}") from None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise BpttError(f"config file {path} is not valid JSON: {exc}") from None


def read_corpus(files: list[Path], config: train.TrainConfig, cache_dir: Path,
                vocab: data.Vocab | None = None, quiet: bool = False,
                written: list | None = None) -> tuple[str | corpus.EncodedCorpus, str]:
    """(text, description): the FILEs encoded into the cache (joined by FILE_SEPARATOR), or
    the built-in corpus (in memory).  vocab: a fixed vocabulary (fine-tuning, resume).
    written: where a new run lists what it wrote (to be undone if it fails, even while this
    says what it encoded)."""
    if not files:
        return data.builtin_corpus(), data.BUILTIN_CORPUS_NAME
    description = " + ".join(str(f) for f in files)
    bar = _EncodingBar(quiet)
    try:
        encoded = corpus.encode_files(files, cache_dir, vocab=vocab, unk=config.unk,
                                      errors=config.errors, separator=FILE_SEPARATOR,
                                      progress=bar)
    finally:
        bar.close()
    if written is not None:
        written.append(encoded)
    if not quiet:
        verb = "reusing the encoded corpus" if encoded.reused else "encoded the corpus into"
        print(f"{verb} {encoded.ids_file} ({encoded.num_tokens:,} characters, vocabulary "
              f"{encoded.vocab.size}, {encoded.ids.dtype.name}, {_size(encoded.nbytes)})",
              flush=True)
    return encoded, description


def _size(nbytes: int) -> str:
    """A byte count for people: 812 B, 20.4 KiB, 190.7 MiB, 1.9 GiB."""
    value, unit = float(nbytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:,.0f} B" if unit == "B" else f"{value:,.1f} {unit}"


class _EncodingBar:
    """tqdm bars for the two passes of :func:`bptt.corpus.encode_files` (none when quiet;
    shown only once a pass has taken half a second, so small files encode silently)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.phase: str | None = None  # the pass self.bar shows (None: no bar)

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if phase != self.phase:
            from tqdm import tqdm

            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=ENCODING_LABELS.get(phase, phase), file=sys.stderr,
                            dynamic_ncols=True, leave=False, delay=0.5)
        assert self.bar is not None  # a pass has its bar (close() drops both)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.phase = None, None


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when done (or a resumed run is already at --steps: nothing to do),
    128 + the signal's number when Ctrl-C (130), SIGTERM or SIGHUP stopped it (after saving a
    checkpoint), or when its standard output was closed (141, as SIGPIPE: ``| head``)."""
    try:
        return _run(args)
    except BrokenPipeError:  # a print outside the loop (which stops itself, after a save)
        progress.drop_stdout()  # (a new run without a checkpoint is undone on the way here)
        raise progress.Stopped(progress.BROKEN_PIPE) from None


def _run(args: argparse.Namespace) -> int:
    # a run directory says what it holds: a run on text or a task run (STATE_KIND)
    if args.resume is None:
        if args.task is not None or args.task_length is not None:
            return train_task.run(args)
        return _start(args)
    saved = _saved_meta(args.resume)
    # before anything of the run is read or removed
    with train.run_dir_lock(args.resume, "wait for it to end (or stop it), then resume"):
        train.check_writable(args.resume)
        if args.task is not None or args.task_length is not None \
                or saved.get("kind") == STATE_KIND:
            return train_task.run(args, saved)
        return _continue(args)


def _continue(args: argparse.Namespace) -> int:
    """Go on with the run on text saved in --resume DIR (its lock held)."""
    resumed = _read_resumed(args)
    for file in args.files:  # a FILE mistyped is a mistake, with or without steps to train
        data.check_text_path(file)
    if resumed.progress.step >= resumed.config.steps:  # before the text is read or encoded
        return progress.nothing_to_do(resumed.progress.step, args.resume,
                                      train.complete_checkpoint(args.resume))
    return _loop(_resume(args, resumed), args.quiet)


def _start(args: argparse.Namespace) -> int:
    """A new run (or a fine-tuning run, with --init-from) on the FILEs; one that fails before
    its first checkpoint leaves nothing behind (see :func:`progress.new_run_dir`)."""
    config = load_config(args)
    init = None
    if config.init_from is not None:
        init = checkpoint.load_model(config.init_from)
        config = _fit_to_model(config, init, _explicit(args))
    out = args.out if args.out is not None else train.free_out_dir(DEFAULT_OUT)
    train.check_fresh_out(out)
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / CACHE_SUBDIR
    vocab = data.Vocab.from_list(init.vocab) if init is not None and init.vocab else None
    with progress.new_run_dir(out, cache_dir) as written:
        train.check_fresh_out(out)  # again, locked: a run started beside this one
        text, description = read_corpus(args.files, config, cache_dir, vocab, args.quiet,
                                        written)
        return _loop(train.new_run(config, text, description, out, init,
                                   files=[str(f) for f in args.files]), args.quiet)


def _fit_to_model(config: train.TrainConfig, init: checkpoint.LoadedModel,
                  explicit: dict) -> train.TrainConfig:
    """The settings of a fine-tuning run: the model's shape, dtype and --unk come from it."""
    from bptt import models

    shapes = models.check_params(init.params)
    have = {"cell": shapes.cell, "hidden": shapes.H, "layers": shapes.L,
            "unk": init.config.get("unk")}
    for key, value in have.items():
        if key in explicit and explicit[key] != value:
            flag = "--" + key.replace("_", "-")
            raise BpttError(
                f"{flag} {explicit[key]} conflicts with the model of --init-from, which has "
                f"{key}={value!r}; leave out {flag}: the model's shape and vocabulary come "
                "from the checkpoint."
            )
    if "dtype" not in explicit:
        have["dtype"] = str(init.params["Whh"].dtype)
    values = config.to_dict() | have
    return train.TrainConfig.from_dict(values)


def _read_resumed(args: argparse.Namespace) -> train.SavedRun:
    """The run on text saved in --resume DIR, checked whole before its text is read; a flag
    that would change a setting that cannot change on --resume is refused (given again with
    the saved value, it is accepted)."""
    if args.config is not None or args.out is not None:
        raise BpttError("--config/--out cannot change on --resume (the run's directory and "
                        "settings are saved in it)")
    saved = train.read_saved_run(args.resume, args.steps, args.eval_every)
    saved_settings = saved.config.to_dict()
    changed = [k for k, v in _given(args).items()
               if k not in RESUME_SETTINGS and v != saved_settings[k]]
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise BpttError(
            f"{names} cannot change on --resume (only --steps, --eval-every and --cache-dir can)"
        )
    return saved


def _resume(args: argparse.Namespace, saved: train.SavedRun) -> train.Run:
    """Continue ``saved`` (the run in --resume DIR) on its text."""
    if args.files:
        files = args.files
    elif saved.files is not None:
        files = [Path(p) for p in saved.files]
    else:  # a train state of before "corpus_files": its description, " + " between the files
        files = ([] if saved.corpus == data.BUILTIN_CORPUS_NAME
                 else [Path(p) for p in saved.corpus.split(" + ")])
    missing = [f for f in files if not f.exists()]
    if missing and not args.files:
        raise BpttError(
            f"the run in {args.resume} trained on {saved.corpus}, and {missing[0]} is not "
            f"there from the current directory; give the FILE(s) again: bptt train --resume "
            f"{args.resume} FILE ..."
        )
    config = saved.config
    cache_dir = args.cache_dir or (Path(config.cache_dir) if config.cache_dir
                                   else args.resume / CACHE_SUBDIR)
    text, description = read_corpus(files, config, cache_dir, saved.vocab, args.quiet)
    if args.files:  # where the text is now (continue_run checks that it is the same text):
        saved = dataclasses.replace(saved, corpus=description,  # the next resume reads it there
                                    files=tuple(str(f) for f in args.files))
    return train.continue_run(saved, text, args.resume)


def _saved_meta(directory: Path) -> dict:
    if not directory.exists():
        raise BpttError(f"{directory} does not exist; --resume takes the directory of a run "
                        "(the --out it wrote to)")
    if not directory.is_dir():
        parent = (f": --resume {directory.parent}"
                  if directory.name in (train.STATE_FILE, checkpoint.MODEL_FILE) else "")
        raise BpttError(f"{directory} is a file; --resume takes the directory of a run (the "
                        f"--out it wrote to){parent}")
    file = directory / train.STATE_FILE
    if not file.exists():
        raise BpttError(f"{directory} holds no {train.STATE_FILE} to resume from")
    return checkpoint.read_metadata(file)  # the tensors are read once, by the resume itself


def _loop(run_: train.Run, quiet: bool) -> int:
    c = run_.config
    n_params = sum(v.size for v in run_.params.values())
    if not quiet:
        print(f"corpus: {run_.corpus} ({run_.batches.num_tokens + len(run_.val_ids):,} chars, "
              f"vocabulary {run_.vocab.size}); model: {c.cell}, H={c.hidden}, L={c.layers}, "
              f"{n_params:,} parameters, {c.dtype}; run dir: {run_.out_dir}", flush=True)
    with progress.explain_divergence(run_.out_dir, fine_tune=True):
        stopped_by = progress.run_with_progress(
            c.steps, run_.step, quiet,
            # under --quiet nothing shows the evaluation samples (never saved): none are made
            lambda show, stop: train.train(run_, show, stop, sample_length=0 if quiet else None),
            _show,
        )
    if stopped_by is not None:
        return progress.interrupted(run_.step, run_.out_dir, stopped_by)
    if quiet:
        return 0
    last = run_.history[-1]
    return progress.finished(
        f"done: step {run_.step}, validation {last['val_bpc']:.3f} bits per character; "
        f"checkpoint, metrics.csv and loss.png in {run_.out_dir}")


def _show(event: train.Event, bar, quiet: bool) -> None:
    if event.kind == "step":
        assert event.stats is not None  # a "step" event carries its step's stats
        bar.update(1)
        bar.set_postfix(loss=f"{event.stats.loss:.3f}", bpc=f"{event.stats.bpc:.3f}",
                        chars_s=f"{event.chars_per_sec:,.0f}", refresh=False)
    elif event.kind == "eval" and not quiet:
        text = f"step {event.step}: validation {event.val_bpc:.3f} bits per character"
        if event.sample:
            text += "\n  | " + event.sample.replace("\n", "\n  | ")
        progress.write_line(bar, text)
