"""Gradient flow over (t, k): how much of each loss J_t reaches each earlier hidden state h_k.

Legend: T time, B batch, D input size, H hidden size, V output size, L layers,
S state size of one layer (H; the LSTM's [h; c] has S = 2H), G pre-activation rows.

The matrix of the picture is

    F[t, k] = ‖∂J_t/∂h_k‖     (Frobenius norm over batch rows and units; k ≤ t)

the size of the error of ONE loss J_t after it has been carried back t − k
steps.  For a vanilla RNN each step back multiplies by ∂h_k/∂h_{k−1} =
diag(1 − h_k²) W^hh, whose norm is usually below 1: F falls off geometrically
with the distance t − k (the vanishing gradient).  The LSTM's cell path
multiplies by diag(f_k) instead and keeps more of it.

What F holds.  ∂J_t/∂h_k is the partial with the rest of the state at step k held
fixed: for the LSTM, the error that step k's cell state c_k carries (∂J_t/∂c_k) is
not in F, though it reaches h_k's past through c (it enters F again at the steps
before k, through h_{k−1}).  With several layers F is of one layer's h, the top one
(the one the head reads) unless asked.

:func:`dJt_dh_norms` computes F with a dedicated walk: the same explicit local
Jacobians as :mod:`bptt.reference` (``reference.STEPS``), but each formed once, in
the forward (O(T·L·B·S·G·H), where the reference forms ∂s_k/∂s_{k−1} anew for every
(t, k)), and every J_t walked back at once (a stack of T error vectors), one step k
at a time: O(T²·L·B·S²) arithmetic in O(T·L) Python steps, so T = 100, H = 64 takes
a fraction of a second.  Without the weight terms it is exactly the reference's
``dJt_dh`` (the tests hold the two equal).

Plotting uses matplotlib's object API only (``matplotlib.figure.Figure``), so
the functions work in notebooks and scripts alike and never touch pyplot state.
Arrays are 0-based; the plots and the CSV label steps 1 … T as the derivation does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt import models, ops, reference
from bptt.errors import BpttError, check_int, is_int, printable

if TYPE_CHECKING:
    from matplotlib.colors import Normalize

DEFAULT_TEXT = (
    "the quick brown fox jumps over the lazy dog while the cat sleeps "
    "in the warm sun by the door of the old house."
)
DEFAULT_SEQ_LEN = 60
MAX_SEQ_LEN = 500
CELL_ORDER = ("rnn", "lstm", "gru")
DEFAULT_FORGET_BIAS = 1.0


# ----------------------------------------------------------------------------
# the numbers
# ----------------------------------------------------------------------------


def dJt_dh_norms(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: models.State = None,
    layer: int | None = None,
) -> np.ndarray:
    """F[t, k] = ‖∂J_t/∂h^l_k‖_F (over batch and units) for every k ≤ t; NaN for k > t.

    The partial with c^l_k held fixed for the LSTM (see the module's "What F holds").

    params: any bptt model (rnn, lstm, gru; any number of layers; computed in float64).
    inputs (T, B) ids or (T, B, D); targets (T, B); h0 public state (None = zeros).
    layer: which layer's h (default: the top one, the one the head reads).
    Returns (T, T).  Equal to the norms of :attr:`bptt.reference.Terms.dJt_dh`.
    """
    params = {key: np.asarray(value, dtype=np.float64) for key, value in params.items()}
    shapes = models.check_params(params)
    x = models.check_inputs(inputs, shapes, np.float64)
    labels = models.check_targets(targets, x.shape[0], x.shape[1], shapes.V)
    layer = shapes.L - 1 if layer is None else layer
    if not is_int(layer) or not 0 <= layer < shapes.L:
        raise BpttError(f"layer must be in [0, {shapes.L}), got {layer!r}")
    T, B = labels.shape
    H = shapes.H
    step = reference.STEPS[shapes.cell]
    names = _param_names(shapes.cell)
    if x.ndim == 2:  # token ids stand for one-hot vectors x_t
        x = np.eye(shapes.D)[x]
    state_layers, _ = models.state_to_layers(h0, shapes, B, np.float64)

    # forward, keeping per layer and step the local Jacobians the walk needs
    ds_ds_prev: list[np.ndarray] = []  # per layer (T, B, S, S): ∂s_k/∂s_{k−1}
    ds_dx: list[np.ndarray] = []  # per layer (T, B, S, Din): ∂s_k/∂x_k (the layer's input)
    layer_input = x
    for l in range(shapes.L):
        p = models.layer_params(params, l, names)
        s = np.concatenate(state_layers[l], axis=-1)
        S = s.shape[-1]
        jac_prev = np.empty((T, B, S, S))
        jac_input = np.empty((T, B, S, layer_input.shape[-1]))
        outputs = np.empty((T, B, H))
        for k in range(T):
            local = step(p, layer_input[k], s)
            # ∂s_k/∂s_{k−1} = ∂s_k/∂a^hh_k · [W^hh 0] + (the direct paths, e.g. the LSTM's c)
            jac_prev[k] = local.ds_ds_direct
            jac_prev[k][:, :, :H] += local.ds_da_hh @ p["Whh"]
            # ∂s_k/∂x_k = ∂s_k/∂a^ih_k · W^xh
            jac_input[k] = local.ds_da_ih @ p["Wxh"]
            s = local.s
            outputs[k] = s[:, :H]
        ds_ds_prev.append(jac_prev)
        ds_dx.append(jac_input)
        layer_input = outputs

    # ∂J_t/∂y_t = p_t − onehot, and ∂J_t/∂h^L_t = W^hyᵀ ∂J_t/∂y_t
    logits = ops.linear_forward(layer_input, params["Why"], params.get("by"))
    _, p_all = ops.cross_entropy_forward(logits, labels)
    dJt_dh_top = ops.cross_entropy_backward(p_all, labels) @ params["Why"]  # (T, B, H)

    # the walk: row t of each stack is ∂J_t/∂s^l_k; all t at once, k from T−1 down to 0
    S_of = [m.shape[-1] for m in ds_ds_prev]
    from_later = [np.zeros((T, B, S)) for S in S_of]
    norms = np.full((T, T), np.nan)
    for k in range(T - 1, -1, -1):
        rows = slice(k, T)  # only J_t with t ≥ k reach step k
        from_above = np.zeros((T - k, B, S_of[-1]))
        from_above[0, :, :H] = dJt_dh_top[k]  # J_k enters at the top layer at step k
        for l in range(shapes.L - 1, -1, -1):
            # ∂J_t/∂s^l_k = (via the layer above at step k) + (via s^l_{k+1})
            dJt_ds = from_above + from_later[l][rows]
            if l == layer:
                norms[rows, k] = np.sqrt((dJt_ds[..., :H] ** 2).sum(axis=(1, 2)))
            # one step back along the layer: ∂J_t/∂s^l_{k−1} = ∂J_t/∂s^l_k · ∂s_k/∂s_{k−1}
            from_later[l][rows] = np.einsum("tbm,bmn->tbn", dJt_ds, ds_ds_prev[l][k])
            if l > 0:
                # into the layer below at the same step: its h part is this layer's input
                from_above = np.zeros((T - k, B, S_of[l - 1]))
                from_above[..., :H] = np.einsum("tbm,bmn->tbn", dJt_ds, ds_dx[l][k])
    return norms


def _param_names(cell: str) -> tuple[str, ...]:
    from bptt.cells import get_cell

    return get_cell(cell).PARAM_NAMES


def mean_by_distance(norms: np.ndarray) -> np.ndarray:
    """(T,): entry d is the mean of F[t, t − d] over t (the mean norm at distance t − k = d).

    norms: F, (T, T) with F[t, k] = ‖∂J_t/∂h_k‖ for k ≤ t."""
    norms = np.asarray(norms, dtype=np.float64)
    if norms.ndim != 2 or norms.shape[0] != norms.shape[1]:
        raise BpttError(f"norms must be a square (T, T) array, got shape {norms.shape}")
    T = norms.shape[0]
    return np.array([np.mean(np.diagonal(norms, offset=-d)) for d in range(T)])


@dataclass
class FlowReport:
    """The gradient-flow matrix of one model on one sequence.

    cell, hidden, layers: the model.  text: the characters read (inputs text[:T],
    targets text[1:T+1]).  norms: (T, T), [t, k] = ‖∂J_t/∂h_k‖ (0-based), NaN for k > t.
    source: "fresh (seed N)" or the checkpoint path.
    """

    cell: str
    hidden: int
    layers: int
    text: str
    norms: np.ndarray
    source: str

    @property
    def T(self) -> int:
        """Time steps (the norms are T × T, losses by row, steps by column)."""
        return int(self.norms.shape[0])

    @property
    def by_distance(self) -> np.ndarray:
        """(T,): the mean norm at each distance t − k = 0 … T−1."""
        return mean_by_distance(self.norms)

    def decay(self) -> float:
        """F[T−1, 0] / F[T−1, T−1]: how much of the last loss's error reaches the first step;
        nan when F[T−1, T−1] = 0 (no error of the last loss reaches even its own step: a head
        that reads nothing of h), without numpy's warning."""
        last = self.norms[-1, -1]
        return float(self.norms[-1, 0] / last) if last != 0 else math.nan


def _check_text(text: object) -> None:
    """BpttError unless ``text`` is a str (bytes, a list of characters or None are no text
    here: they failed deep inside with an AttributeError or a TypeError)."""
    if not isinstance(text, str):
        raise BpttError(f"text must be a str, got {type(text).__name__}")


def _ids(text: str, vocab: Sequence[str], seq_len: int | None, unk: str | None = None
         ) -> tuple[np.ndarray, int]:
    """Encode text with vocab (characters outside it read as ``unk``, the model's
    unknown-character token, if it has one); return (ids, T) with T = seq_len or as much as
    fits (≤ default)."""
    from bptt.data import Vocab

    ids = Vocab(list(vocab)).encode(text, unk)
    if ids.size < 2:
        raise BpttError("the text needs at least 2 characters (an input and its next-character "
                        "target)")
    if seq_len is None:
        seq_len = min(ids.size - 1, DEFAULT_SEQ_LEN)
    if not is_int(seq_len):  # (2.5 and "3" were TypeErrors, True one step)
        raise BpttError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise BpttError(f"seq_len must be from 1 to {MAX_SEQ_LEN}, got {seq_len}")
    if seq_len > ids.size - 1:
        raise BpttError(
            f"the text has {ids.size} characters, enough for a sequence of at most "
            f"{ids.size - 1} steps (each step's target is the next character); "
            f"got seq_len {seq_len}: give a longer text or a smaller --seq-len"
        )
    return ids, int(seq_len)


def flow_for_model(
    params: dict[str, np.ndarray],
    vocab: Sequence[str],
    text: str,
    seq_len: int | None = None,
    source: str = "model",
    unk: str | None = None,
) -> FlowReport:
    """F for a character model on ``text``: inputs text[:T], targets text[1:T+1], h0 = 0.

    vocab: the model's characters in id order (V = len(vocab), input and output).
    seq_len: T (default: min(len(text) − 1, DEFAULT_SEQ_LEN)).  unk: the model's
    unknown-character token (a character of vocab), which characters of ``text`` outside
    the vocabulary are read as (as ``bptt sample`` reads a prime); None: they are an error.
    """
    shapes = models.check_params(params)
    _check_text(text)
    if unk is not None and (not isinstance(unk, str) or unk not in vocab):
        raise BpttError(f"the unknown-character token {unk!r} is not in the model's vocabulary")
    ids, T = _ids(text, vocab, seq_len, unk)
    if shapes.D != len(vocab) or shapes.V != len(vocab):
        raise BpttError(f"the model reads {shapes.D} and predicts {shapes.V} symbols, but its "
                        f"vocabulary has {len(vocab)}")
    norms = dJt_dh_norms(params, ids[:T, None], ids[1 : T + 1, None])
    return FlowReport(shapes.cell, shapes.H, shapes.L, text[: T + 1], norms, source)


def flow_on_text(
    text: str = DEFAULT_TEXT,
    cell: str = "rnn",
    hidden: int = 32,
    seq_len: int | None = None,
    seed: int = 0,
    layers: int = 1,
    forget_bias: float | None = DEFAULT_FORGET_BIAS,
) -> FlowReport:
    """F for a FRESH (untrained) model whose vocabulary is the characters of ``text``.

    forget_bias (LSTM only): the initial forget-gate bias, 1.0 by default as is common
    practice (Jozefowicz et al., 2015; None keeps PyTorch's small random init, under which
    a fresh LSTM forgets about half its cell per step).
    """
    from bptt.data import Vocab

    _check_text(text)
    seed = check_int("seed", seed, 0)
    if seq_len is not None:
        seq_len = check_int("seq_len", seq_len, 1)
    vocab = Vocab.from_text(text).to_list()
    V = len(vocab)
    fb = forget_bias if cell == "lstm" else None
    params = models.init_params(cell, V, hidden, V, True, np.random.default_rng(seed),
                                np.float64, layers, forget_bias=fb)
    source = f"fresh model, seed {seed}"
    if fb is not None:
        source += f", LSTM forget bias {fb:g}"
    return flow_for_model(params, vocab, text, seq_len, source=source)


def flow_for_checkpoint(
    path: str | os.PathLike[str], text: str | None = None, seq_len: int | None = None
) -> FlowReport:
    """F for a trained checkpoint (:func:`bptt.checkpoint.load_model`).

    text: None uses DEFAULT_TEXT with the characters the model does not know dropped.
    A model trained with an unknown-character token (``bptt train --unk``) reads the
    characters of ``text`` outside its vocabulary as it, as ``bptt sample`` reads a prime.
    """
    from bptt import checkpoint

    if not isinstance(path, (str, os.PathLike)):
        raise BpttError(f"path must be a checkpoint's path, got {type(path).__name__}")
    if text is not None:
        _check_text(text)
    model = checkpoint.load_model(path)
    if not model.vocab:
        raise BpttError(f"{path} has no character vocabulary: bptt flow needs a character model")
    if text is None:
        known = set(model.vocab)
        text = "".join(c for c in DEFAULT_TEXT if c in known)
    unk = model.config.get("unk")
    return flow_for_model(model.params, model.vocab, text, seq_len, source=str(path),
                          unk=unk if isinstance(unk, str) else None)


def compare_cells(
    text: str = DEFAULT_TEXT,
    cells: Sequence[str] = CELL_ORDER,
    hidden: int = 32,
    seq_len: int | None = None,
    seed: int = 0,
    forget_bias: float | None = DEFAULT_FORGET_BIAS,
) -> list[FlowReport]:
    """:func:`flow_on_text` for each cell, on the same text, size and seed (cells: names,
    or one name)."""
    cells = [cells] if isinstance(cells, str) else list(cells)
    reports = [flow_on_text(text, cell, hidden, seq_len, seed, 1, forget_bias) for cell in cells]
    source = f"fresh models, seed {seed}"
    if "lstm" in cells and forget_bias is not None:
        source += f", LSTM forget bias {forget_bias:g}"
    for report in reports:
        report.source = source
    return reports


def to_csv(reports: Sequence[FlowReport]) -> str:
    """The numbers as CSV text: ``cell,t,k,distance,norm`` with t, k 1-based and k ≤ t."""
    lines = ["cell,t,k,distance,norm"]
    for r in _reports(reports):
        for t in range(r.T):
            for k in range(t + 1):
                lines.append(f"{r.cell},{t + 1},{k + 1},{t - k},{float(r.norms[t, k])!r}")
    return "\n".join(lines) + "\n"


def _reports(reports: Any) -> list[FlowReport]:
    """A non-empty list of FlowReports (one report alone is a list of one)."""
    if isinstance(reports, FlowReport):
        return [reports]
    listed = list(reports) if isinstance(reports, (list, tuple)) else []
    if not listed or not all(isinstance(r, FlowReport) for r in listed):
        raise BpttError(f"give a non-empty list of FlowReports, got {reports!r:.60}")
    return listed


# ----------------------------------------------------------------------------
# the pictures (matplotlib Figure API: no pyplot)
# ----------------------------------------------------------------------------


def _figure(fig: Any, inches: tuple[float, float]) -> Any:
    """``fig``, or a new Figure of ``inches`` at DPI; what is not a Figure is refused."""
    from matplotlib.figure import Figure, FigureBase

    if fig is None:
        return Figure(figsize=inches, dpi=DPI)
    if not isinstance(fig, FigureBase):
        raise BpttError(f"fig must be a matplotlib Figure (matplotlib.figure.Figure()), got "
                        f"{type(fig).__name__}")
    return fig


PANEL_INCHES = (5.0, 4.4)  # one heatmap (or the distance plot): 500×440 pixels at DPI
COLORBAR_INCHES = 1.0  # the shared colour bar of plot_compare, right of the panels
DPI = 100
# a fixed layout (fractions of one panel), so sizes are exact and drawing is quick
_LEFT, _BOTTOM, _WIDTH, _HEIGHT = 0.15, 0.11, 0.60, 0.76


def _color_range(reports: Sequence[FlowReport]) -> tuple[float, float]:
    values = np.concatenate([r.norms[np.isfinite(r.norms) & (r.norms > 0)] for r in reports])
    if values.size == 0:
        return 1e-12, 1.0
    return float(values.min()), float(values.max())


def _heatmap(ax, report: FlowReport, norm) -> Any:
    """Draw F on ax: t down the rows, k along the columns, upper triangle masked."""
    F = report.norms
    masked = np.ma.masked_where(~np.isfinite(F) | (F <= 0), F)
    T = report.T
    image = ax.imshow(masked, norm=norm, cmap="viridis", origin="upper", interpolation="nearest",
                      extent=(0.5, T + 0.5, T + 0.5, 0.5), aspect="auto")
    ax.set_xlabel("k  (hidden state h_k reached)")
    ax.set_ylabel("t  (loss J_t the error comes from)")
    _integer_ticks(ax.xaxis, ax.yaxis)
    ax.set_title(f"{report.cell}, H = {report.hidden}, L = {report.layers}", fontsize=10)
    ax.set_facecolor("white")
    return image


def _integer_ticks(*axes: Any) -> None:
    """Ticks at whole steps only: t, k and t − k count steps (a short sequence drew 0.5, 1.25)."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))


def _short_minor_labels(axis: Any, low: float, high: float) -> None:
    """A log axis spanning less than a decade labels its minor ticks, as 5.75×10⁻¹ by
    default: too wide for the fixed layout (the labels ran off the figure).  Say 0.57."""
    from matplotlib.ticker import FuncFormatter

    if low > 0 and high / low < 10:
        axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:.2g}"))


def _scaled_range(norm: Normalize) -> tuple[float, float]:
    """(vmin, vmax) of a norm its colour bar has scaled (both numbers then)."""
    low, high = norm.vmin, norm.vmax
    assert low is not None and high is not None  # (the colour bar set any that was None)
    return low, high


def plot_flow(report: FlowReport, fig: Any | None = None) -> Any:
    """Heatmap of ‖∂J_t/∂h_k‖ (log colour scale, masked upper triangle, colour bar).

    Returns the Figure (a new one, 500×440 pixels at DPI, unless ``fig`` is given).
    """
    from matplotlib.colors import LogNorm

    if not isinstance(report, FlowReport):
        raise BpttError(f"report must be one FlowReport, got {type(report).__name__}")
    fig = _figure(fig, PANEL_INCHES)
    ax = fig.add_axes((_LEFT, _BOTTOM, _WIDTH, _HEIGHT))
    cax = fig.add_axes((_LEFT + _WIDTH + 0.03, _BOTTOM, 0.03, _HEIGHT))
    norm = LogNorm(*_color_range([report]))
    image = _heatmap(ax, report, norm)
    fig.colorbar(image, cax=cax, label="‖∂J_t/∂h_k‖ (log scale)")
    _short_minor_labels(cax.yaxis, *_scaled_range(norm))
    # (the source may be a path: printable, as a byte of it that is not UTF-8 is no text)
    fig.suptitle(f"‖∂J_t/∂h_k‖ over (t, k), T = {report.T} — {printable(report.source)}",
                 fontsize=9)
    return fig


def plot_compare(reports: Sequence[FlowReport], fig: Any | None = None) -> Any:
    """The heatmaps of several cells side by side on ONE colour scale (vanishing gradient).

    Returns the Figure (a new one, (500·n + 100)×440 pixels at DPI for n reports, unless
    ``fig`` is given).
    """
    from matplotlib.colors import LogNorm

    reports = _reports(reports)
    n = len(reports)
    width = PANEL_INCHES[0] * n + COLORBAR_INCHES
    fig = _figure(fig, (width, PANEL_INCHES[1]))
    panel = PANEL_INCHES[0] / width  # one panel's share of the figure width
    norm = LogNorm(*_color_range(reports))
    image = None
    for i, report in enumerate(reports):
        ax = fig.add_axes((panel * (i + _LEFT), _BOTTOM, panel * (_WIDTH + 0.18), _HEIGHT))
        image = _heatmap(ax, report, norm)
    # the colour bar starts in the margin right of the last panel, leaving the strip of
    # COLORBAR_INCHES to its tick labels and its label (which ran off the figure's edge)
    bar = 0.15 / width  # its width, 0.15 inch
    cax = fig.add_axes((panel * n - bar, _BOTTOM, bar, _HEIGHT))
    fig.colorbar(image, cax=cax, label="‖∂J_t/∂h_k‖ (log scale, shared)")
    _short_minor_labels(cax.yaxis, *_scaled_range(norm))
    fig.suptitle(f"‖∂J_t/∂h_k‖ over (t, k), T = {reports[0].T}, same sequence — "
                 f"{printable(reports[0].source)}", fontsize=10)
    return fig


def plot_distance(reports: Sequence[FlowReport], fig: Any | None = None) -> Any:
    """Mean ‖∂J_t/∂h_k‖ against the distance t − k, one line per report (log y).

    Returns the Figure (a new one, 500×440 pixels at DPI, unless ``fig`` is given).
    """
    fig = _figure(fig, PANEL_INCHES)
    ax = fig.add_axes((0.19, _BOTTOM, 0.76, _HEIGHT + 0.02))
    for report in _reports(reports):
        mean = report.by_distance
        keep = mean > 0
        ax.plot(np.arange(report.T)[keep], mean[keep], marker=".", markersize=3,
                label=f"{report.cell} (H = {report.hidden})")
    ax.set_yscale("log")
    _integer_ticks(ax.xaxis)
    _short_minor_labels(ax.yaxis, *ax.get_ylim())
    ax.set_xlabel("distance t − k (steps the error is carried back)")
    ax.set_ylabel("mean over t of ‖∂J_t/∂h_k‖ (log)")
    ax.set_title("How far back the error of a loss reaches", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig
