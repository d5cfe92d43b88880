"""Plotly figures of the two lessons: the algorithms' race to one accuracy target (what a round
costs), and what the server read off an update beside what the character typed (what the server
sees). Pure functions of plain data, like fedtext.service.plots."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from fedtext.learning.records import Leak, Race
from fedtext.service.plots import HEIGHT, X_AXES, layout, x_values
from fedtext.text.vocab import decode

_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")
LEAK_CHARACTERS = 30  # the most frequent characters the leak figure shows


def races_figure(races: Sequence[Race], x_axis: str = "bytes") -> go.Figure:
    """Each contender's held-out accuracy along `x_axis` (rounds, MB sent or CPU seconds), and
    the target they race to."""
    fig = go.Figure()
    for race, colour in zip(races, _COLOURS, strict=False):
        if not race.history:
            continue
        reached = f", target in {race.rounds} rounds" if race.rounds else ""
        fig.add_trace(
            go.Scatter(
                x=x_values(race.history, x_axis),
                y=[r.eval_accuracy for r in race.history],
                name=f"{race.label}{reached}",
                mode="lines+markers",
                line={"color": colour, "dash": "dot" if race.reference else "solid"},
                marker={"size": 5},
            )
        )
    if races:
        fig.add_hline(
            y=races[0].target,
            line={"color": "#9aa0a6", "dash": "dash", "width": 1},
            annotation_text=f"target {races[0].target:.1%}",
            annotation_position="bottom right",
        )
    fig.update_xaxes(title_text=X_AXES[x_axis], rangemode="tozero")
    fig.update_yaxes(title_text="held-out accuracy", tickformat=".1%")
    return layout(fig, "The same target: what each algorithm spent to get there", HEIGHT + 40)


def leak_figure(leak: Leak, names: dict[str, str] | None = None) -> go.Figure:
    """The character's true count of each of its most frequent characters against the count the
    server estimated from the update; a mark on each the update shows was typed."""
    ids = sorted(leak.moved | leak.true_set, key=lambda i: (-leak.true_counts[i], i))
    ids = ids[:LEAK_CHARACTERS]
    labels = [_shown(decode([i])) for i in ids]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[leak.true_counts[i] for i in ids],
            name=f"what {_name(leak.client_id, names)} typed",
            marker={"color": "#1f77b4"},
        )
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[leak.recovered[i] for i in ids],
            name="what the server read off the " + ("sum" if len(leak.seen) > 1 else "update"),
            marker={"color": "#d62728"},
            text=["" if i in leak.moved else "missed" for i in ids],
            textposition="outside",
        )
    )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(title_text="character", type="category")
    fig.update_yaxes(title_text="times in this round's batches")
    return layout(fig, "Characters typed against characters read off what the server got")


def _shown(char: str) -> str:
    return {" ": "␣", "\n": "⏎"}.get(char, char)


def _name(client_id: str, names: dict[str, str] | None) -> str:
    return (names or {}).get(client_id, client_id)
