"""``bptt export``: write a trained model as a PyTorch state_dict in a safetensors file."""

from __future__ import annotations

import argparse

from bptt import interop
from bptt.cli import args as types


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="write a model as a PyTorch state_dict (safetensors)",
        description=(
            "Write the model of CHECKPOINT as a PyTorch state_dict in OUT (safetensors, no "
            "pickle): rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, …, "
            "head.weight, head.bias, with the cell, sizes and vocabulary as JSON metadata. "
            "Token ids are one-hot inputs: column j of rnn.weight_ih_l0 is token j. Load it "
            "with bptt.interop.torch_module(meta['model']).load_state_dict("
            "safetensors.torch.load_file(OUT)). See docs/scaling.md."
        ),
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", type=types.nonempty_path,
                   help="run directory (or its model.safetensors)")
    p.add_argument("out", metavar="OUT.safetensors", type=types.nonempty_path,
                   help="the file to write")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(run=run, prints=("the list of what it wrote",
                                    "redirect it to a file, e.g. > export.log"))


def run(args: argparse.Namespace) -> int:
    """Export, then list what was written."""
    target, meta = interop.export_checkpoint(args.checkpoint, args.out, overwrite=args.force)
    model = meta["model"]
    vocab = meta["vocab"]
    print(f"wrote {target}: {model['cell']} model, {model['num_layers']} layer(s), "
          f"H={model['hidden_size']}, {model['dtype']}, "
          + (f"vocabulary {len(vocab)}" if vocab is not None else "no vocabulary"))
    tensors, _ = interop.read_torch_safetensors(target)  # what is on disk, read back
    for key, value in tensors.items():
        print(f"  {key:<22} {tuple(value.shape)}")
    return 0
