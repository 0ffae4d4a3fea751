"""Training throughput of bptt against its peers, in one command.

    python -m benchmarks            # the full grid, about 6–9 minutes on 2 cores
    python -m benchmarks --quick    # a smaller grid, under 2 minutes

Every contender does the same work per training step on the same data: a forward pass
over T characters of B streams, the loss J = Σ_t Σ_b −log p_t[label] (the total), the
gradient of every parameter by BPTT through all T steps, and one optimizer step.
Throughput is characters per second (T·B per step), the median of several timed rounds
after warm-up, the contenders' rounds interleaved so that a change in the machine's load
hits all of them alike; a ratio is the median over rounds of the rates of the same round.
Results: a markdown table on stdout and in benchmarks/results.md, and one JSON object per
measurement in benchmarks/results.jsonl.

Contenders (see contenders.py):

* bptt         this package: ``models.backprop`` with a :class:`bptt.models.Workspace`
               and the optimizer on flat buffers, exactly what ``bptt train`` runs;
* torch        PyTorch CPU eager: nn.RNN / nn.LSTM / nn.GRU + nn.Linear +
               cross_entropy(reduction="sum") + torch.optim.Adam, the same threads;
* jax          jax.jit of loss, gradient (lax.scan over time) and the Adam update, one
               compiled function per step (skipped with a note when jax is missing);
* naive        the textbook per-step loop of min-char-rnn, written here (naive.py): one
               sequence, per-step matrix-vector products, Adagrad, clipping to ±5.

Modules: config (problems, FLOPs), machine (BLAS, GEMM peak), contenders, naive, timing,
scaling (time and memory against T), report (tables, ratios, files), run (the command).
"""
