"""Train an exported bptt model with PyTorch DistributedDataParallel (CPU, gloo backend).

    bptt export runs/train model.safetensors
    torchrun --standalone --nproc_per_node 2 examples/ddp_train.py \\
        model.safetensors corpus.txt trained.safetensors --steps 100
    bptt import trained.safetensors runs/trained
    bptt sample runs/trained

Each process (rank) builds the same module from the exported weights
(``bptt.interop.torch_module`` + ``load_state_dict(strict=True)``); DDP keeps the
replicas identical by averaging gradients across ranks after every backward.
Every rank draws its own random windows of the text, so the world sees
world_size × --batch windows per step.  The loss is the MEAN cross-entropy per
character (nats), as is usual in PyTorch; bptt's own trainer uses the total
over the chunk, so learning rates do not carry over one to one.

Rank 0 prints the loss per step (averaged over the ranks) and at the end writes
the trained weights with ``safetensors.torch.save_file`` under the same
state_dict names, carrying over the bptt metadata (cell, sizes, vocabulary),
so ``bptt import`` reads them back without --cell or --vocab.  No pickle.  Every rank
then ends through ``leave()`` (os._exit once everything is written and flushed;
its docstring says why).

On several machines run the same command on each with ``--nnodes N
--node_rank R --rdzv_endpoint HOST:PORT`` instead of ``--standalone`` (see
docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from bptt import interop
from bptt.data import Vocab, read_text


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="safetensors file written by 'bptt export'")
    p.add_argument("text", help="UTF-8 text to train on (characters of the model's vocabulary)")
    p.add_argument("out", help="safetensors file to write (rank 0)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (100)")
    p.add_argument("--seq-len", type=int, default=50, help="characters per window T (50)")
    p.add_argument("--batch", type=int, default=16, help="windows per rank per step B (16)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (3e-3)")
    p.add_argument("--clip-norm", type=float, default=5.0, help="gradient norm clipping (5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the windows drawn (0)")
    return p.parse_args()


def read_model(path: str) -> tuple[torch.nn.Module, dict]:
    """The module holding the exported weights, and the file's bptt metadata."""
    with safe_open(path, framework="pt") as handle:
        meta = json.loads(handle.metadata()["bptt"])
    module = interop.torch_module(meta["model"])
    module.load_state_dict(load_file(path), strict=True)
    return module, meta


def main() -> None:
    """Set up the process group, train, save on rank 0."""
    args = parse_args()
    dist.init_process_group("gloo")  # CPU; torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, …
    rank, world = dist.get_rank(), dist.get_world_size()
    module, meta = read_model(args.model)
    ids = torch.from_numpy(Vocab(meta["vocab"]).encode(read_text(args.text)))
    if len(ids) <= args.seq_len + 1:
        raise SystemExit(f"{args.text} is shorter than one window of {args.seq_len + 1} characters")
    model = DistributedDataParallel(module)  # broadcasts rank 0's weights to every rank
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.lr)
    windows = torch.Generator().manual_seed(args.seed * 1_000_003 + rank)
    V = meta["model"]["output_size"]
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(ids) - args.seq_len - 1, (args.batch,), generator=windows)
        chunk = torch.stack([ids[s : s + args.seq_len + 1] for s in starts.tolist()], dim=1)
        inputs, targets = chunk[:-1], chunk[1:]  # (T, B) token ids, time-major
        logits, _ = model(inputs)  # (T, B, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces (averages) the gradients here
        torch.nn.utils.clip_grad_norm_(trainable, args.clip_norm)
        optimizer.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        if rank == 0:
            print(f"step {step} loss {mean.item() / world:.4f}", flush=True)
    if rank == 0:
        meta["step"] = int(meta.get("step", 0)) + args.steps
        meta["trained_with"] = {"script": "examples/ddp_train.py", "world_size": world,
                                "steps": args.steps, "lr": args.lr, "seq_len": args.seq_len,
                                "batch_per_rank": args.batch}
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(state, args.out, metadata={"bptt": json.dumps(meta)})
        print(f"saved {args.out} ({time.perf_counter() - started:.1f} s, world size {world})",
              flush=True)
    dist.barrier()
    dist.destroy_process_group()


def leave() -> None:
    """End the process at once, everything written and flushed, without Python's teardown.

    A gloo worker thread lets go of a finished collective (and the tensors it holds) a
    moment after the caller has its result.  If that moment falls after Python has begun
    to shut down, letting go of a tensor Python once held needs the interpreter, and
    torch 2.13 aborts the process ("terminate called without an active exception",
    SIGABRT) although the run is complete: here about 1 run in 40 to 80 on a busy 2-core
    machine.  Nothing is left to do but exit, so exit without the teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    leave()
