"""The ``bptt`` command: the only part of bptt that talks to the terminal.

Each subcommand lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; its parser's defaults give ``run``
and ``prints`` (what it writes to standard output, what to do instead when that is
closed).  A mistake a user can make (a :class:`bptt.errors.BpttError`, a bad flag, a
missing file) becomes ONE line on stderr, ``bptt: error: …``, and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from bptt import __version__

# subcommand name -> module in this package
COMMANDS = {
    "train": "train",
    "sample": "sample",
    "gradcheck": "gradcheck",
    "terms": "terms",
    "flow": "flow",
    "export": "export",
    "import": "import_",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``bptt: error: …`` and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (see '{self.prog} --help')")


def fail(message: str) -> None:
    """Print the one-line error and exit with code 2."""
    from bptt.cli import progress

    progress.say(f"bptt: error: {message}")
    raise SystemExit(2)


SIZE_FLAGS = ("hidden", "layers", "batch", "seq_len")


def _out_of_memory(args: argparse.Namespace) -> str:
    """The one line for a MemoryError, naming the size flags this command has."""
    flags = [f"--{name.replace('_', '-')}" for name in SIZE_FLAGS if hasattr(args, name)]
    if getattr(args, "task", None) is not None or getattr(args, "task_length", None) is not None:
        # a task run refuses --seq-len: its sequences are --task-length long
        flags = ["--task-length" if flag == "--seq-len" else flag for flag in flags]
    if not flags:
        return "not enough memory for a model of this size"
    listed = " or ".join([", ".join(flags[:-1]), flags[-1]] if len(flags) > 1 else flags)
    if getattr(args, "resume", None) is not None:  # its sizes are the run's: --resume refuses them
        return (f"not enough memory to resume {args.resume}: a resumed run keeps its sizes; "
                f"free memory, or start a new run with a lower {listed}")
    return f"not enough memory for a model and data of these sizes; lower {listed}"


def build_parser() -> Parser:
    """The top-level parser with every subcommand registered."""
    parser = Parser(
        prog="bptt",
        description="Recurrent networks with hand-derived backpropagation through time.",
    )
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"bptt.cli.{module_name}")
        module.add_parser(sub, name)
    parser.set_defaults(command_parsers=sub.choices)
    return parser


def _parse_args(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but a flag the subcommand does not know is refused by the
    subcommand's parser, so that the line points at its help ('bptt train --help', which
    lists its flags), not at 'bptt --help'."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = args.command_parsers.get(args.command, parser) if args.command else parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bptt`` console script; returns the exit code."""
    try:  # numpy and bptt's modules load from here on (about 0.2 s)
        from bptt.cli import progress
        from bptt.errors import BpttError

        progress.utf8_stdout()
        parser = build_parser()
        args = _parse_args(parser, argv)
    except KeyboardInterrupt:  # Ctrl-C while they load: the line of a Ctrl-C, exit 130
        return _interrupted_before_the_command()
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with progress.stop_signals_end_the_command():
            _require_stdout(args)
            return int(args.run(args) or 0)
    except BpttError as exc:
        fail(str(exc))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        reason = exc.strerror or str(exc)
        fail(f"{reason}: {exc.filename}" if exc.filename else reason)
    except MemoryError:
        fail(_out_of_memory(args))
    except KeyboardInterrupt as exc:  # Ctrl-C, or progress.Stopped (SIGTERM, SIGHUP)
        signum = getattr(exc, "signum", signal.SIGINT)
        progress.say(f"bptt: {progress.stopped_how(signum)}")
        return 128 + signum
    except BrokenPipeError:  # the reader went away (bptt sample | head): not an error
        progress.drop_stdout()
        return 0
    except OSError as exc:  # the system refused a write: a full disk, or a full stdout
        _flush_or_drop_stdout()
        reason = exc.strerror or str(exc)
        fail(f"{reason}: {exc.filename}" if exc.filename else f"cannot write the output: {reason}")
    return 0


def _interrupted_before_the_command() -> int:
    """Say "bptt: interrupted" as a Ctrl-C in a command does (progress.say), written here
    directly: the module that would say it may be the one whose loading was interrupted."""
    if sys.stderr is not None:
        try:
            sys.stderr.write("bptt: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a full or closed standard error: nothing to say it on
            pass
    return 128 + signal.SIGINT


def _require_stdout(args: argparse.Namespace) -> None:
    """Refuse a closed standard output (``>&-``) before the command does anything, for every
    command that prints (all but ``train --quiet``): print() writes nothing to one, so terms
    and gradcheck exited 0 having shown nothing, and gradcheck's exit code said PASS."""
    from bptt.cli import progress

    if not getattr(args, "quiet", False):
        progress.require_stdout(*args.prints)


def _flush_or_drop_stdout() -> None:
    """Flush what is buffered for standard output; if it cannot take it (/dev/full), drop it,
    so that Python's flush at exit does not fail again with a traceback.  (A closed one,
    None, holds nothing.)"""
    from bptt.cli import progress

    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        progress.drop_stdout()
