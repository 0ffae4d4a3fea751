"""``bptt flow``: the picture of gradient flow, ‖∂J_t/∂h_k‖ over (t, k), as PNG and CSV.

    bptt flow                                   fresh rnn on a built-in sentence
    bptt flow --compare --hidden 64             rnn vs lstm vs gru on the same sequence
    bptt flow --file notes.txt --cell lstm --out pictures
    bptt flow --checkpoint runs/shakespeare     a trained model (its vocabulary and sizes)

Writes DIR/flow.png (heatmap), DIR/flow.csv (the numbers: cell,t,k,distance,norm with
t, k counted from 1) and DIR/flow_distance.png (mean norm against t − k).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bptt import checkpoint, flow
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.errors import BpttError


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="draw gradient flow ‖∂J_t/∂h_k‖ over (t, k) as a heatmap (PNG) and CSV",
        description=(
            "Computes ‖∂J_t/∂h_k‖ — how much of the error of the loss J_t reaches the hidden "
            "state h_k, k ≤ t — for a fresh model on a text (characters become the vocabulary; "
            "inputs are the text, targets the next characters) or for a trained checkpoint. "
            "Writes flow.png (t vs k, log colour scale), flow.csv (cell,t,k,distance,norm; "
            "t and k count from 1) and flow_distance.png (mean norm against the distance "
            "t − k). --compare draws rnn, lstm and gru side by side on one colour scale. "
            "h_k is the top layer's; for the LSTM the error carried by the cell state c_k "
            "(∂J_t/∂c_k) is not shown."
        ),
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="STRING", type=types.utf8_text,
                        help="the sequence to read (default: a built-in sentence)")
    source.add_argument("--file", metavar="PATH", type=types.nonempty_path,
                        help="read the sequence from a UTF-8 file")
    p.add_argument("--checkpoint", metavar="PATH", type=types.nonempty_path,
                   help="a trained model (checkpoint directory or .safetensors file) instead "
                        "of a fresh one")
    p.add_argument("--compare", action="store_true",
                   help="rnn vs lstm vs gru side by side (fresh models, same sequence and seed)")
    p.add_argument("--cell", choices=sorted(CELLS), help="cell of the fresh model (rnn)")
    p.add_argument("--hidden", type=types.positive_int, help="hidden size H (32)")
    p.add_argument("--seq-len", type=types.positive_int,
                   help=f"time steps T, at most {flow.MAX_SEQ_LEN} (default: the text's "
                        f"length − 1, at most {flow.DEFAULT_SEQ_LEN})")
    p.add_argument("--seed", type=types.seed, help="seed of the fresh model (0)")
    p.add_argument("--forget-bias", type=float,
                   help="initial forget-gate bias of a fresh LSTM "
                        f"({flow.DEFAULT_FORGET_BIAS:g}, the common choice; a negative one in "
                        "e-notation with '=', e.g. --forget-bias=-1e3)")
    p.add_argument("--torch-init", action="store_true",
                   help="fresh LSTM with PyTorch's random forget bias instead of --forget-bias")
    p.add_argument("--out", metavar="DIR", type=types.nonempty_path, default=Path("."),
                   help="directory for flow.png, flow.csv, flow_distance.png (current)")
    p.set_defaults(run=run, prints=("its summary of the flow",
                                    "redirect it to a file, e.g. > flow.log"))


def _forget_bias(args: argparse.Namespace) -> float | None:
    """The fresh LSTM's forget bias (None: PyTorch's init); refuses the two flags where
    no fresh LSTM is drawn (another cell alone) or together."""
    if args.forget_bias is None and not args.torch_init:
        return flow.DEFAULT_FORGET_BIAS
    if args.forget_bias is not None and args.torch_init:
        raise BpttError("--torch-init draws PyTorch's forget bias: leave out --forget-bias")
    if args.checkpoint is None and not args.compare and (args.cell or "rnn") != "lstm":
        flag = "--torch-init" if args.torch_init else "--forget-bias"
        raise BpttError(f"{flag} sets up a fresh LSTM: give it with --cell lstm or --compare")
    if args.forget_bias is not None and not math.isfinite(args.forget_bias):
        raise BpttError(f"--forget-bias must be a finite number, got {args.forget_bias}")
    return None if args.torch_init else args.forget_bias


OUTPUTS = ("flow.png", "flow_distance.png", "flow.csv")


def _check_out(out: Path) -> None:
    """Refuse, before anything is computed or written, an --out that is not a directory or
    that holds one of OUTPUTS as something a file cannot replace (a directory; a FIFO, which
    would block the write until a reader comes)."""
    if out.exists() and not out.is_dir():
        raise BpttError(f"--out {out} is a file, not a directory")
    for name in OUTPUTS:
        if (out / name).exists() and not (out / name).is_file():
            raise BpttError(f"--out {out} holds {name}, which is not a regular file (a "
                            "directory or a named pipe?); move it away or choose another --out")


def _write(out: Path, files: dict, csv_text: str) -> None:
    """Each output written whole to a temporary file, then renamed over the old one: a stop
    or a failed write never leaves half a picture or half a table, nor an --out it made
    empty (checkpoint.made_dir)."""
    with checkpoint.made_dir(out):
        for name, fig in files.items():
            checkpoint.replace_atomic(out / name,
                                      lambda temp, fig=fig: fig.savefig(temp, format="png",
                                                                        dpi=flow.DPI))
        checkpoint.replace_atomic(out / "flow.csv",
                                  lambda temp: temp.write_text(csv_text, encoding="utf-8"))


def run(args: argparse.Namespace) -> int:
    """Compute, write the three files, print a short summary."""
    if args.seq_len is not None and args.seq_len > flow.MAX_SEQ_LEN:
        raise BpttError(f"--seq-len must be from 1 to {flow.MAX_SEQ_LEN}, got {args.seq_len}")
    out = Path(args.out)
    _check_out(out)
    text = args.text
    if args.file is not None:
        from bptt.data import SHORT_TEXT_BYTES, read_text

        text = read_text(args.file, max_bytes=SHORT_TEXT_BYTES)
    if text is not None and text == "":
        raise BpttError("--text is empty: give at least 2 characters")
    forget_bias = _forget_bias(args)
    seed = 0 if args.seed is None else args.seed
    if args.checkpoint is not None:
        if args.compare:
            raise BpttError("--compare draws fresh rnn, lstm and gru models: not with --checkpoint")
        for flag, value in (("--cell", args.cell), ("--hidden", args.hidden),
                            ("--seed", args.seed), ("--forget-bias", args.forget_bias),
                            ("--torch-init", args.torch_init or None)):
            if value is not None:
                raise BpttError(f"{flag} does not apply with --checkpoint (the model fixes it)")
        reports = [flow.flow_for_checkpoint(args.checkpoint, text, args.seq_len)]
    elif args.compare:
        if args.cell is not None:
            raise BpttError("--compare draws every cell: leave out --cell")
        cells = [c for c in flow.CELL_ORDER if c in CELLS]
        reports = flow.compare_cells(text or flow.DEFAULT_TEXT, cells, args.hidden or 32,
                                     args.seq_len, seed, forget_bias)
    else:
        reports = [flow.flow_on_text(text or flow.DEFAULT_TEXT, args.cell or "rnn",
                                     args.hidden or 32, args.seq_len, seed, 1,
                                     forget_bias)]
    heatmap = flow.plot_compare(reports) if args.compare else flow.plot_flow(reports[0])
    distance = flow.plot_distance(reports)
    files = {"flow.png": heatmap, "flow_distance.png": distance}
    _write(out, files, flow.to_csv(reports))
    _summary(reports, out, files)
    return 0


def _summary(reports: list[flow.FlowReport], out: Path, files: dict) -> None:
    first = reports[0]
    T = first.T
    shown = first.text if len(first.text) <= 40 else first.text[:39] + "…"
    print(f"Gradient flow ‖∂J_t/∂h_k‖ on {shown!r} (T = {T}; t, k = 1 … {T}), "
          f"{first.source}")
    distances = [d for d in (0, 1, 5, 10, 20, 40, 80) if d < T]
    print("mean ‖∂J_t/∂h_k‖ at distance t − k:")
    print(f"  {'':<22}" + "".join(f"{'d = ' + str(d):>10}" for d in distances)
          + f"   J_{T} → h_1 keeps, of its size at h_{T}")
    for r in reports:
        means = r.by_distance
        print(f"  {r.cell:<4} H = {r.hidden:<4d} L = {r.layers:<4d}"
              + "".join(f"{means[d]:>10.1e}" for d in distances) + f"   {r.decay():.1e}")
    sizes = {name: fig.get_size_inches() * flow.DPI for name, fig in files.items()}
    rows = sum(r.T * (r.T + 1) // 2 for r in reports)
    print("wrote " + ", ".join(
        f"{out / name} ({w:.0f}×{h:.0f})" for name, (w, h) in sizes.items())
        + f", {out / 'flow.csv'} ({rows} rows)")
