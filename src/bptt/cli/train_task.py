"""``bptt train --task NAME``: train on a built-in sequence task, with the char-LM's progress
bar, metrics.csv, loss.png and checkpoint (model.safetensors with metadata, and
train_state.safetensors, from which ``bptt train --resume DIR`` continues exactly).

The tasks and the loop live in :mod:`bptt.tasks`; this module reads the flags and prints.
Flags that only make sense for text (FILEs, --seq-len, --init-from, …) are refused in one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bptt import tasks, train
from bptt.cli import progress
from bptt.errors import BpttError

DEFAULT_OUT = Path("runs")
# flags of `bptt train` the task trainer reads, under their TaskConfig names
SHARED = {"cell": "cell", "hidden": "hidden", "layers": "layers", "steps": "steps",
          "batch": "batch", "lr": "lr", "optimizer": "optimizer", "clip_norm": "clip_norm",
          "dtype": "dtype", "seed": "seed", "eval_every": "eval_every"}
# flags of `bptt train` that belong to the character model only
TEXT_ONLY = ("seq_len", "clip", "checkpoint_every", "sample_length", "temperature",
             "val_fraction", "errors", "unk", "init_from", "cache_dir", "config")
# what a resumed task run may be given again: how long to go on, how often to evaluate
RESUME_SETTINGS = ("steps", "eval_every")


def run(args: argparse.Namespace, saved: dict | None = None) -> int:
    """Train on ``args.task``, or go on with the task run of ``--resume DIR`` (``saved``: the
    metadata of its train state); exit 0 when done, 128 + the signal's number when Ctrl-C
    (130), SIGTERM or SIGHUP stopped it (after a checkpoint)."""
    if args.resume is not None:
        return _loop(_resume(args, saved or {}), args.quiet)
    config = _config(args)
    out = args.out if args.out is not None else train.free_out_dir(
        DEFAULT_OUT / f"task-{config.task}-{config.cell}")
    with progress.new_run_dir(out):  # (new_task_run checks, locked, that out is fresh)
        return _loop(tasks.new_task_run(config, out), args.quiet)


def _refuse_text_flags(args: argparse.Namespace) -> None:
    """FILEs and the flags of the character model do not apply to a task run."""
    if getattr(args, "files", None):
        what = f"--task {args.task}" if args.task is not None else "a task run"
        raise BpttError(f"{what} trains on generated data: give no FILE")
    given = [name for name in TEXT_ONLY if getattr(args, name, None) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise BpttError(f"{flag} does not apply to --task (only to training on text)")


def _resume(args: argparse.Namespace, saved: dict) -> tasks.TaskRun:
    """The task run saved in --resume DIR; only --steps and --eval-every may change."""
    if saved.get("kind") != tasks.STATE_KIND:
        raise BpttError(f"{args.resume} holds a run on text, not a task run: resume it "
                        "without --task/--task-length")
    _refuse_text_flags(args)
    task_config = saved.get("task_config")
    task_config = task_config if isinstance(task_config, dict) else {}
    given = {key: getattr(args, flag) for flag, key in SHARED.items()
             if flag not in RESUME_SETTINGS and getattr(args, flag, None) is not None}
    if getattr(args, "no_clip_norm", False):
        given["clip_norm"] = None
    if args.task_length is not None:
        given["length"] = args.task_length
    # a setting given again with its saved value changes nothing: only a change is refused
    fixed = [key for key, value in given.items()
             if key not in task_config or value != task_config[key]]
    fixed = ["task_length" if key == "length" else key for key in fixed]
    fixed += ["out"] if args.out is not None else []
    saved_task = task_config.get("task")
    if args.task is not None and saved_task is not None and args.task != saved_task:
        raise BpttError(f"--task {args.task}, but {args.resume} holds a run of the "
                        f"{saved_task} task")
    if fixed:
        names = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise BpttError(f"{names} cannot change on --resume (only --steps and --eval-every can)")
    return tasks.resume_task_run(args.resume, args.steps, args.eval_every)


def _config(args: argparse.Namespace) -> tasks.TaskConfig:
    """The TaskConfig of the flags; flags of the character model are refused."""
    if args.task is None:
        raise BpttError("--task-length needs --task NAME (one of "
                        f"{', '.join(tasks.TASKS)})")
    _refuse_text_flags(args)
    values = {key: getattr(args, flag) for flag, key in SHARED.items()
              if getattr(args, flag, None) is not None}
    if getattr(args, "no_clip_norm", False):
        values["clip_norm"] = None
    return tasks.TaskConfig(task=args.task, length=args.task_length, **values).resolved()


def _loop(run_: tasks.TaskRun, quiet: bool) -> int:
    c = run_.config
    steps = c.steps
    assert steps is not None  # resolved() filled it in
    if run_.step >= steps:  # (a resumed run: nothing to train)
        return progress.nothing_to_do(run_.step, run_.out_dir,
                                      tasks.complete_checkpoint(run_.out_dir))
    if not quiet:
        print(f"task: {run_.data.describe()}; model: {c.cell}, H={c.hidden}, L={c.layers}, "
              f"{tasks.num_parameters(run_):,} parameters, {c.dtype}; run dir: {run_.out_dir}",
              flush=True)
    with progress.explain_divergence(run_.out_dir, fine_tune=False):
        stopped_by = progress.run_with_progress(
            steps, run_.step, quiet, lambda show, stop: tasks.train_task(run_, show, stop),
            _show,
        )
    if stopped_by is not None:
        return progress.interrupted(run_.step, run_.out_dir, stopped_by)
    if quiet:
        return 0
    summary = f", {_summary(run_.history[-1])}" if run_.history else ""
    return progress.finished(f"done: step {run_.step}{summary}; checkpoint, metrics.csv and "
                             f"loss.png in {run_.out_dir}")


def _summary(row: dict[str, float]) -> str:
    if "val_accuracy" in row:
        return (f"validation accuracy {row['val_accuracy']:.3f}, cross-entropy "
                f"{row['val_loss']:.4f}")
    return f"validation MSE {row['val_mse']:.5f}, R² {row['val_r2']:.4f}"


def _show(event: tasks.TaskEvent, bar: Any, quiet: bool) -> None:
    if event.kind == "step":
        bar.update(1)
        bar.set_postfix(loss=f"{event.loss:.4f}", seqs_s=f"{event.seqs_per_sec:,.0f}",
                        refresh=False)
    elif event.kind == "eval" and not quiet and event.metrics is not None:
        progress.write_line(bar, f"step {event.step}: {_summary(event.metrics)}")
