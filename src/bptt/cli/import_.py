"""``bptt import``: read a PyTorch state_dict (safetensors) back into a bptt run directory."""

from __future__ import annotations

import argparse

from bptt import interop, models
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.data import Vocab, read_text


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="read a PyTorch state_dict (safetensors) into a bptt run directory",
        description=(
            "Read TORCH.safetensors (keys rnn.weight_ih_l0, …, head.weight, head.bias, as "
            "written by 'bptt export' or by safetensors.torch.save_file(module.state_dict())) "
            "and write OUT_DIR/model.safetensors, usable by 'bptt sample'. The cell and "
            "vocabulary come from the file's metadata when bptt exported it; otherwise give "
            "--cell and, for a character model, --vocab. Sizes are read off the shapes. "
            "Other names are read too: the recurrent module (nn.RNN/LSTM/GRU), the head "
            "(nn.Linear) and an optional nn.Embedding first (e.g. PyTorch's "
            "word_language_model: encoder, rnn, decoder) are found by their shapes; when "
            "they cannot be told apart, say which with --rnn, --head, --embedding. An "
            "embedding E is folded into the first layer's input weights, W_ih Eᵀ (exact "
            "math; logits agree to float round-off), so 'bptt export' writes it back without "
            "one (one-hot inputs). A tied embedding saved once (safetensors.torch.save_model "
            "keeps decoder.weight) is read with --embedding naming the head."
        ),
    )
    p.add_argument("file", metavar="TORCH.safetensors", type=types.nonempty_path,
                   help="the file to read")
    p.add_argument("out", metavar="OUT_DIR", type=types.nonempty_path,
                   help="run directory to write")
    p.add_argument("--cell", choices=sorted(CELLS),
                   help="the cell, for files without bptt metadata (default: from the shapes)")
    p.add_argument("--vocab", type=types.nonempty_path, metavar="FILE",
                   help="a text file whose sorted distinct characters are the vocabulary")
    p.add_argument("--rnn", metavar="PREFIX", type=types.utf8_text,
                   help="the recurrent module's name, e.g. lstm or model.rnn (default: found "
                        "by the keys)")
    p.add_argument("--head", metavar="PREFIX", type=types.utf8_text,
                   help="the output layer's name, e.g. fc or decoder (default: by the shapes)")
    p.add_argument("--embedding", metavar="PREFIX", type=types.utf8_text,
                   help="the input nn.Embedding's name, e.g. encoder; the head's own name for "
                        "a tied embedding saved once (default: by the shapes; none: one-hot)")
    p.add_argument("--force", action="store_true", help="overwrite OUT_DIR/model.safetensors")
    p.set_defaults(run=run, prints=("what it read, and its notes on using it",
                                    "redirect it to a file, e.g. > import.log"))


def run(args: argparse.Namespace) -> int:
    """Import, then say what was read and how to use it."""
    vocab = None if args.vocab is None else Vocab.from_text(read_text(args.vocab)).to_list()
    layout = {"rnn": args.rnn, "head": args.head, "embedding": args.embedding}
    model = interop.import_file(args.file, args.out, args.cell, vocab, overwrite=args.force,
                                **layout)
    config = interop.model_config(model.params)
    print(f"wrote {args.out / 'model.safetensors'}: {config['cell']} model, "
          f"{config['num_layers']} layer(s), H={config['hidden_size']}, {config['dtype']}, "
          + (f"vocabulary {len(model.vocab)}" if model.vocab is not None else "no vocabulary"))
    read = interop.file_layout(args.file, **layout)
    if read[:2] != interop.BPTT_LAYOUT[:2]:
        print(f"read {read.rnn}.* as the recurrent layers and {read.head}.* as the head")
    if read.embedding is not None:
        print(f"folded the embedding {read.embedding_weight} into the first layer: Wxh = "
              f"{read.key('weight_ih', 0)} @ {read.embedding_weight}ᵀ "
              f"{tuple(model.params['Wxh'].shape)} (exact math; logits agree to float "
              "round-off; 'bptt export' writes it one-hot, without an embedding)")
    elif interop.maybe_tied(read, models.check_params(model.params)) \
            and not interop.has_bptt_metadata(args.file):
        print(f"note: if {read.head_weight} is also the input embedding (tied weights, saved "
              f"once), import again with --embedding {read.head} --force")
    if config["cell"] == "rnn" and not interop.has_bptt_metadata(args.file):
        print("note: the file does not say its nn.RNN's nonlinearity; it was read as tanh, "
              "bptt's RNN: a model trained with nonlinearity='relu' gives other outputs here")
    if model.vocab is None and config["input_size"] == config["output_size"]:  # a character model
        print("note: without a vocabulary 'bptt sample' cannot use it; import again with "
              "--vocab FILE --force")
    return 0
