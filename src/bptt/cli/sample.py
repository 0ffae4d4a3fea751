"""``bptt sample``: stream text from a trained character model to stdout."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bptt import checkpoint
from bptt.cli import args as types
from bptt.errors import BpttError
from bptt.sample import generate


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(name, help="generate text from a trained model",
                       description="Sample characters from a checkpoint written by bptt train.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="run directory (or its model.safetensors)")
    p.add_argument("--length", type=types.nonnegative_int, default=500,
                   help="characters to generate (500)")
    p.add_argument("--temperature", type=types.positive_float, default=1.0,
                   help="> 0; lower is more conservative (1.0)")
    p.add_argument("--prime", default="", help="text to start from (printed first)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely character")
    p.add_argument("--seed", type=types.seed, default=None, help="random seed (default: fresh)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the prime, then the sampled characters as they come."""
    model = checkpoint.load_model(args.checkpoint)
    if model.vocab is None:
        raise BpttError(f"{args.checkpoint} is not a character model (it has no vocabulary)")
    rng = np.random.default_rng(args.seed)
    chars = generate(model.params, model.vocab, args.length, args.temperature, args.prime, rng,
                     args.greedy)
    out = sys.stdout
    out.write(args.prime)
    for ch in chars:
        out.write(ch)
    out.write("\n")
    out.flush()
    return 0
