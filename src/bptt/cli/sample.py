"""``bptt sample``: stream text from a trained character model to stdout (UTF-8)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bptt import checkpoint, data
from bptt.cli import args as types
from bptt.errors import BpttError
from bptt.sample import generate


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(name, help="generate text from a trained model",
                       description="Sample characters from a checkpoint written by bptt train.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", type=types.nonempty_path,
                   help="run directory (or its model.safetensors)")
    p.add_argument("--length", type=types.nonnegative_int, default=500,
                   help="characters to generate (500); with --stop, the most to generate")
    p.add_argument("--temperature", type=types.positive_float,
                   help="> 0; lower is more conservative (1.0)")
    prime = p.add_mutually_exclusive_group()
    prime.add_argument("--prime", default="", type=types.utf8_text,
                       help="text to start from (printed first)")
    prime.add_argument("--prime-file", type=types.nonempty_path, metavar="PATH",
                       help="start from the text of this UTF-8 file (printed first, exactly "
                            "as in the file but for a leading byte-order mark, which is not "
                            "text)")
    p.add_argument("--stop", metavar="TEXT", type=types.utf8_text,
                   help="stop as soon as the generated text ends with TEXT (TEXT is printed)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely character")
    p.add_argument("--seed", type=types.seed, default=None, help="random seed (default: fresh)")
    p.set_defaults(run=run, prints=("the text", "redirect it to a file instead, e.g. > sample.txt"))


def run(args: argparse.Namespace) -> int:
    """Print the prime, then the sampled characters as they come."""
    model = checkpoint.load_model(args.checkpoint)
    if model.vocab is None:
        raise BpttError(f"{args.checkpoint} is not a character model (it has no vocabulary)")
    if args.stop is not None and not args.stop:
        raise BpttError("--stop needs at least one character")
    prime = args.prime
    if args.prime_file is not None:
        prime = data.read_text(args.prime_file, max_bytes=data.SHORT_TEXT_BYTES)
    if args.greedy and (args.temperature is not None or args.seed is not None):
        raise BpttError("--greedy always takes the most likely character: --temperature and "
                        "--seed do not apply to it")
    temperature = 1.0 if args.temperature is None else args.temperature
    unk = model.config.get("unk")
    rng = np.random.default_rng(args.seed)
    chars = generate(model.params, model.vocab, args.length, temperature, prime, rng,
                     args.greedy, args.stop, unk if isinstance(unk, str) else None)
    out = sys.stdout
    out.write(prime)
    for ch in chars:
        out.write(ch)
    out.write("\n")
    out.flush()
    return 0
