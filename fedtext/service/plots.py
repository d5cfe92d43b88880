"""Plotly figures for the page, as pure functions of plain data that tests can call."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from string import ascii_lowercase

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fedtext.learning.records import ClientFigures, PersonalGain, RoundResult
from fedtext.text.plays import ClientInfo
from fedtext.text.vocab import CHARS

RANDOM_ACCURACY = 1 / len(CHARS)  # a uniform guess over the 86 characters
# Federated Averaging trained to convergence on TFF's Shakespeare: Reddi et al., "Adaptive
# Federated Optimization", ICLR 2021, Table 1.
PUBLISHED_ACCURACY = 0.569
PUBLISHED_SOURCE = "FedAvg to convergence (Reddi et al., ICLR 2021)"
HEIGHT = 290
_BLUE, _ORANGE, _GREY, _RED = "#1f77b4", "#ff7f0e", "#9aa0a6", "#d62728"
_LABELS = {"loss": "loss per character", "accuracy": "next-character accuracy"}
# What the learning charts can put along x: rounds, what the rounds sent (down and up, from
# fedtext.learning.communication), or the CPU time they took.
X_AXES = {"round": "round", "bytes": "MB sent (down and up)", "cpu": "CPU seconds"}


def x_values(history: Sequence[RoundResult], axis: str = "round") -> list[float]:
    """Each round's place along `axis`: its number, or the MB or CPU seconds spent so far."""
    if axis == "round":
        return [r.round_num for r in history]
    per_round = {
        "bytes": lambda r: (r.bytes_down + r.bytes_up) / 1e6,
        "cpu": lambda r: r.cpu_seconds,
    }[axis]
    totals, total = [], 0.0
    for r in history:
        total += per_round(r) if r.round_num else 0.0
        totals.append(total)
    return totals


def layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 36, "b": 10},
        legend={"orientation": "h", "y": -0.22, "x": 0, "font": {"size": 11}},
        template="plotly_white",
        hovermode="x unified",
    )
    return fig


def figure(
    history: Sequence[RoundResult],
    metric: str = "accuracy",
    rounds: int | None = None,
    earlier: Sequence[tuple[str, Sequence[RoundResult]]] = (),
    x_axis: str = "round",
) -> go.Figure:
    """Held-out and training `metric` ("loss" or "accuracy") by round (or by X_AXES' other
    measures); round 0 is the base model.

    The x axis spans `rounds` from the start, so each finished round visibly adds a point.
    Earlier runs come in grey for comparison; the accuracy chart carries reference lines.
    """
    if metric not in _LABELS:
        raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
    percent = metric == "accuracy"
    fig = go.Figure()
    for i, (label, past) in enumerate(earlier):
        fig.add_trace(
            go.Scatter(
                x=x_values(past, x_axis),
                y=[getattr(r, f"eval_{metric}") for r in past],
                name=f"{label} (held-out)",
                mode="lines",
                line={"color": _GREY, "dash": "dot", "width": 1.5},
                opacity=0.5 + 0.5 * i / max(1, len(earlier)),
            )
        )
    trained = [r for r in history if r.round_num > 0]
    fig.add_trace(
        go.Scatter(
            x=x_values(history, x_axis)[1:],
            y=[getattr(r, f"train_{metric}") for r in trained],
            name="training (clients' own lines)",
            mode="lines+markers",
            line={"color": _ORANGE, "dash": "dash"},
            marker={"size": 6},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x_values(history, x_axis),
            y=[getattr(r, f"eval_{metric}") for r in history],
            name="held-out speeches",
            mode="lines+markers",
            line={"color": _BLUE, "width": 3},
            marker={"size": 8},
        )
    )
    if percent:
        _reference(fig, RANDOM_ACCURACY, f"random guess ({RANDOM_ACCURACY:.1%})", _GREY)
        _reference(fig, PUBLISHED_ACCURACY, f"{PUBLISHED_SOURCE}: {PUBLISHED_ACCURACY:.1%}", _RED)
    if history:
        base = getattr(history[0], f"eval_{metric}")
        _reference(
            fig,
            base,
            f"Dickens base model ({base:.1%})" if percent else f"Dickens base model ({base:.2f})",
            _BLUE,
        )
    last = max(
        [
            rounds or 0,
            *(r.round_num for r in history),
            *(r.round_num for _, past in earlier for r in past),
            1,
        ]
    )
    if x_axis == "round":
        fig.update_xaxes(
            title_text="round", range=[-0.3, last + 0.3], dtick=max(1, math.ceil(last / 10))
        )
    else:
        fig.update_xaxes(title_text=X_AXES[x_axis], rangemode="tozero")
    # Accuracy from just below the lowest point up to the published figure, so that a gain of a
    # point or two shows and so does how far there is to go; loss scaled to the data.
    seen = _values(history, earlier, "eval_accuracy") + _values(history, (), "train_accuracy")
    low = min(seen, default=0.0)
    fig.update_yaxes(
        title_text=_LABELS[metric],
        tickformat=".0%" if percent else ".2f",
        range=[max(0.0, low - 0.02), PUBLISHED_ACCURACY + 0.02] if percent else None,
    )
    if not history:
        fig.add_annotation(
            text="Press Train: round 0 is the base model",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"color": _GREY},
        )
    title = "Accuracy" if percent else "Loss (lower is better)"
    return layout(fig, title)


def _values(history, earlier, field: str) -> list[float]:
    runs = [history, *(past for _, past in earlier)]
    values = [getattr(r, field) for run in runs for r in run]
    return [v for v in values if v is not None and not math.isnan(v)]


def _reference(fig: go.Figure, y: float, label: str, color: str) -> None:
    fig.add_hline(
        y=y,
        line={"color": color, "dash": "dot", "width": 1},
        annotation={"text": label, "font": {"size": 10, "color": color}},
        annotation_position="top left",
    )


def letter_shares(texts: Sequence[str]) -> dict[str, float]:
    """How often each letter a-z occurs among all letters of `texts`, upper and lower case alike."""
    counts = Counter(c for text in texts for c in text.lower() if c in ascii_lowercase)
    total = sum(counts.values()) or 1
    return {letter: counts[letter] / total for letter in ascii_lowercase}


def data_figure(
    clients: Sequence[ClientInfo],
    shares: Mapping[str, float],
    letters: Mapping[str, Mapping[str, float]],
    limit: int = 20,
) -> go.Figure:
    """Non-IID data at a glance: text per client (and its averaging weight), and how each
    client's letter use differs from all chosen clients together.

    Shows the `limit` biggest clients; `letters` maps client ids to `letter_shares`.
    """
    shown = sorted(clients, key=lambda c: -c.train_chars)[:limit][::-1]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.3, 0.7],
        horizontal_spacing=0.03,
        shared_yaxes=True,
        subplot_titles=("text per client", "letter use vs. all chosen"),
    )
    names = _labels(shown)
    fig.add_trace(
        go.Bar(
            x=[c.train_chars for c in shown],
            y=names,
            orientation="h",
            marker={"color": [_RED if c.tutorial_would_drop else _BLUE for c in shown]},
            text=[f"{shares.get(c.client_id, 0):.0%}" for c in shown],
            textposition="auto",
            customdata=[[c.play, shares.get(c.client_id, 0)] for c in shown],
            hovertemplate="%{y} (%{customdata[0]})<br>%{x:,} characters<br>"
            "averaging weight %{customdata[1]:.1%}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    pooled = {
        letter: sum(letters.get(c.client_id, {}).get(letter, 0.0) for c in shown)
        / max(1, len(shown))
        for letter in ascii_lowercase
    }
    z = [
        [
            _log_ratio(letters.get(c.client_id, {}).get(letter, 0.0), pooled[letter])
            for letter in ascii_lowercase
        ]
        for c in shown
    ]
    fig.add_trace(
        go.Heatmap(
            z=z,
            x=list(ascii_lowercase),
            y=names,
            zmid=0,
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            showscale=False,
            hovertemplate="%{y}: '%{x}' used %{customdata:.2f}x as often as by all<extra></extra>",
            customdata=[[2**v for v in row] for row in z],
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(row=1, col=1, tickformat="~s", nticks=3)
    fig.update_xaxes(row=1, col=2, tickfont={"size": 9}, dtick=1, side="bottom")
    fig.update_annotations(font={"size": 11})
    fig = layout(fig, "", height=data_figure_height(len(shown)))
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="closest")
    return fig


def data_figure_height(n_clients: int, limit: int = 20) -> int:
    """Pixels: a row per client shown (the `limit` biggest)."""
    return max(170, 90 + 22 * min(n_clients, limit))


def _log_ratio(share: float, pooled: float) -> float:
    """log2 of share / pooled, clipped to [-1, 1] (half as often .. twice as often)."""
    if pooled <= 0:
        return 0.0
    return max(-1.0, min(1.0, math.log2(max(share, 1e-6) / pooled)))


def _labels(clients: Sequence[ClientInfo]) -> list[str]:
    """Short unique axis labels: the character's name, with its play where names repeat."""
    short = [c.character.title()[:16] for c in clients]
    return [
        s if short.count(s) == 1 else f"{s} ({c.play[:12]})"
        for s, c in zip(short, clients, strict=True)
    ]


def baseline_figure(history: Sequence[RoundResult], baseline: Sequence[RoundResult]) -> go.Figure:
    """Held-out accuracy by CPU time: the federated rounds and the centralised baseline trained
    on the same clients' pooled text."""
    fig = go.Figure()
    for name, points, color in (
        ("federated (lines stay with each character)", history, _BLUE),
        ("centralised (all lines pooled in one place)", baseline, _ORANGE),
    ):
        evaluated = [
            (sum(r.cpu_seconds for r in points[1 : i + 1]), r.eval_accuracy)
            for i, r in enumerate(points)
            if not math.isnan(r.eval_accuracy)
        ]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in evaluated],
                y=[y for _, y in evaluated],
                name=name,
                mode="lines+markers",
                line={"color": color, "width": 3},
                marker={"size": 6},
            )
        )
    fig.update_xaxes(title_text="CPU seconds (training and evaluation)")
    fig.update_yaxes(title_text=_LABELS["accuracy"], tickformat=".1%")
    return layout(fig, "Federated versus centralised, at equal compute")


# Per-client figures a class can read off a heatmap: (title, colour scale, its middle).
CLIENT_METRICS = {
    "share": ("share of the average", "Blues", None),
    "update_norm": ("size of its update (L2 norm)", "Oranges", None),
    "cosine": ("agreement with the average (cosine)", "RdBu", 0.0),
    "loss_drop": ("own loss before - after local training", "RdBu", 0.0),
}


def client_value(figures: ClientFigures, metric: str) -> float:
    if metric == "loss_drop":
        return figures.loss_before - figures.loss_after
    return getattr(figures, metric)


def clients_figure(
    figures: Sequence[ClientFigures], metric: str, names: Mapping[str, str] | None = None
) -> go.Figure:
    """Rounds x clients, coloured by one of CLIENT_METRICS; a client absent from a round (not
    sampled) is left blank."""
    title, scale, middle = CLIENT_METRICS[metric]
    names = names or {}
    client_ids = list(dict.fromkeys(f.client_id for f in figures))
    rounds = sorted({f.round_num for f in figures})
    cells = {(f.client_id, f.round_num): client_value(f, metric) for f in figures}
    z = [[cells.get((cid, r), math.nan) for r in rounds] for cid in client_ids]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=rounds,
            y=[names.get(cid, cid) for cid in client_ids],
            colorscale=scale,
            zmid=middle,
            hovertemplate="round %{x}<br>%{y}<br>" + title + ": %{z:.3g}<extra></extra>",
            colorbar={"thickness": 10},
        )
    )
    fig.update_xaxes(title_text="round", dtick=1 if len(rounds) <= 20 else None)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(hovermode="closest")
    height = clients_figure_height(len(client_ids))
    return layout(fig, f"Who moved the model: {title}", height).update_layout(hovermode="closest")


def clients_figure_height(n_clients: int) -> int:
    return max(HEIGHT, 60 + 22 * n_clients)  # pixels: a row per client


def gains_figure(
    gains: Sequence[PersonalGain], names: Mapping[str, str] | None = None
) -> go.Figure:
    """Each character's held-out accuracy gain from a model of its own, from TFF's
    personalization evaluation: the distribution a class reads as "who is unlike the rest"."""
    names = names or {}
    ordered = sorted(gains, key=lambda g: g.gain)
    fig = go.Figure(
        go.Bar(
            x=[g.gain for g in ordered],
            y=[names.get(g.client_id, g.client_id) for g in ordered],
            orientation="h",
            marker={"color": [_BLUE if g.gain >= 0 else _RED for g in ordered]},
            hovertemplate="%{y}: %{x:+.1f} points<extra></extra>",
        )
    )
    steps = max((g.steps for g in gains), default=0)
    fig.update_xaxes(title_text=f"held-out accuracy gained after {steps} local steps (points)")
    height = gains_figure_height(len(ordered))
    return layout(fig, "A model per character: each one's gain over the global model", height)


def gains_figure_height(n_clients: int) -> int:
    return max(HEIGHT - 60, 80 + 24 * n_clients)  # pixels: a bar per client
