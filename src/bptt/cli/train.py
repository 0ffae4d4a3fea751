"""``bptt train``: train a character language model, with a progress bar, evals and checkpoints."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from bptt import data, train
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.errors import BpttError
from bptt.optim import OPTIMIZERS

DEFAULT_OUT = Path("runs") / "train"
FILE_SEPARATOR = "\n"


def add_parser(sub, name: str) -> None:
    """Register the subcommand.  Every setting defaults to None here so that the order of
    precedence is: built-in defaults < --config file < flags given on the command line."""
    d = train.TrainConfig()
    p = sub.add_parser(
        name,
        help="train a character language model (default: on Python's own help text)",
        description=(
            "Train a character-level language model on FILE(s) (UTF-8 text; several files are "
            "joined with a newline) or, with no FILE, on the built-in corpus: the text of "
            f"CPython's {data.BUILTIN_CORPUS_NAME} module (about 465k characters, ships with "
            "Python). Writes model.safetensors, train_state.safetensors, metrics.csv and "
            "loss.png to --out. --steps is the run's total: a resumed run continues to it."
        ),
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="UTF-8 text file(s) to train on")
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
    p.add_argument("--clip-norm", type=types.positive_float,
                   help=f"clip the global gradient norm ({d.clip_norm:g})")
    p.add_argument("--no-clip-norm", action="store_true", help="do not clip the global norm")
    p.add_argument("--dtype", choices=sorted(train.DTYPES), help=f"float type ({d.dtype})")
    p.add_argument("--seed", type=types.seed, help=f"random seed ({d.seed})")
    p.add_argument("--eval-every", type=types.positive_int,
                   help=f"steps between validation + sample + checkpoint ({d.eval_every})")
    p.add_argument("--checkpoint-every", type=types.positive_int,
                   help="steps between checkpoints (default: --eval-every)")
    p.add_argument("--sample-length", type=types.nonnegative_int,
                   help=f"characters sampled at each eval ({d.sample_length})")
    p.add_argument("--temperature", type=types.positive_float,
                   help=f"sampling temperature at each eval ({d.temperature:g})")
    p.add_argument("--config", type=Path, help="JSON file of settings (flags override it)")
    p.add_argument("--out", type=Path,
                   help=f"run directory (default {DEFAULT_OUT}, or {DEFAULT_OUT}-2, … if taken)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run saved in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or samples")
    p.set_defaults(run=run)


SETTINGS = ("cell", "hidden", "layers", "seq_len", "batch", "steps", "lr", "optimizer", "clip",
            "clip_norm", "dtype", "seed", "eval_every", "checkpoint_every", "sample_length",
            "temperature")


def load_config(args: argparse.Namespace) -> train.TrainConfig:
    """Built-in defaults, then the --config file, then the flags given."""
    values = {}
    if args.config is not None:
        values = _read_json(args.config)
    config = train.TrainConfig.from_dict(values)
    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if args.no_clip_norm:
        given["clip_norm"] = None
    return train.TrainConfig.from_dict(given, base=config)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BpttError(f"config file {path} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BpttError(f"cannot read config file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BpttError(f"config file {path} is not valid JSON: {exc}") from None


def read_corpus(files: list[Path]) -> tuple[str, str]:
    """(text, description): the files joined by a newline, or the built-in corpus."""
    if not files:
        return data.builtin_corpus(), data.BUILTIN_CORPUS_NAME
    texts = [data.read_text(f) for f in files]
    return FILE_SEPARATOR.join(texts), " + ".join(str(f) for f in files)


def free_out_dir(base: Path) -> Path:
    """base, or base-2, base-3, … : the first that holds no checkpoint."""
    candidate, n = base, 1
    while (candidate / train.STATE_FILE).exists() or (candidate / "model.safetensors").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when done, 130 when interrupted (after saving a checkpoint)."""
    if args.resume is not None:
        run_ = _resume(args)
    else:
        config = load_config(args)
        text, corpus = read_corpus(args.files)
        out = args.out if args.out is not None else free_out_dir(DEFAULT_OUT)
        run_ = train.new_run(config, text, corpus, out)
    return _loop(run_, args.quiet)


def _resume(args: argparse.Namespace) -> train.Run:
    fixed = [k for k in SETTINGS if k not in ("steps", "eval_every")
             and getattr(args, k) is not None]
    if fixed or args.config is not None or args.out is not None:
        names = ", ".join("--" + k.replace("_", "-") for k in fixed) or "--config/--out"
        raise BpttError(f"{names} cannot change on --resume (only --steps and --eval-every can)")
    meta_corpus = _saved_corpus(args.resume)
    files = args.files or ([] if meta_corpus == data.BUILTIN_CORPUS_NAME
                           else [Path(p) for p in meta_corpus.split(" + ")])
    text, _ = read_corpus(files)
    return train.resume_run(args.resume, text, args.steps, args.eval_every)


def _saved_corpus(directory: Path) -> str:
    from bptt import checkpoint

    file = directory / train.STATE_FILE
    if not file.exists():
        raise BpttError(f"{directory} holds no {train.STATE_FILE} to resume from")
    return str(checkpoint.read_safetensors(file)[1].get("corpus", data.BUILTIN_CORPUS_NAME))


def _loop(run_: train.Run, quiet: bool) -> int:
    from tqdm import tqdm

    c = run_.config
    n_params = sum(v.size for v in run_.params.values())
    if not quiet:
        print(f"corpus: {run_.corpus} ({run_.batches.num_tokens + len(run_.val_ids):,} chars, "
              f"vocabulary {run_.vocab.size}); model: {c.cell}, H={c.hidden}, L={c.layers}, "
              f"{n_params:,} parameters, {c.dtype}; run dir: {run_.out_dir}", flush=True)
    bar = tqdm(total=c.steps, initial=run_.step, disable=quiet, unit="step",
               dynamic_ncols=True, file=sys.stderr)
    stop = {"asked": False}

    def on_sigint(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        finished = train.train(run_, lambda e: _show(e, bar, quiet), lambda: stop["asked"])
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if not finished:
        print(f"interrupted: checkpoint of step {run_.step} saved in {run_.out_dir}",
              file=sys.stderr)
        return 130
    if not quiet:
        last = run_.history[-1]
        print(f"done: step {run_.step}, validation {last['val_bpc']:.3f} bits per character; "
              f"checkpoint, metrics.csv and loss.png in {run_.out_dir}")
    return 0


def _show(event: train.Event, bar, quiet: bool) -> None:
    if event.kind == "step":
        bar.update(1)
        bar.set_postfix(loss=f"{event.stats.loss:.3f}", bpc=f"{event.stats.bpc:.3f}",
                        chars_s=f"{event.chars_per_sec:,.0f}", refresh=False)
    elif event.kind == "eval" and not quiet:
        bar.write(f"step {event.step}: validation {event.val_bpc:.3f} bits per character")
        if event.sample:
            bar.write("  | " + event.sample.replace("\n", "\n  | "))
