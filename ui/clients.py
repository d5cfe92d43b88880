"""Section 1, the clients: quick picks, the searchable list, and who the chosen ones are."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fedtext.config import TUTORIAL_CLIENTS
from fedtext.service import links, plots
from fedtext.text import plays
from ui import first_paint
from ui.kept import kept
from ui.resources import load_letters, load_preview

LETTER_CLIENTS = 40  # the letters chart reads each client's lines: bounded for a big choice
PICK_N_WIDTH = 110  # pixels: two digits and the input's - and + buttons


def choose(ids: list[str]) -> None:
    st.session_state.client_ids = ids


def clients_ui(clients: dict[str, plays.ClientInfo]) -> list[str]:
    """Quick picks and a searchable list; returns the chosen client ids."""
    n = st.session_state.get("pick_n", 10)
    everyone = list(clients.values())
    quick = (
        ("Tutorial's 2", list(TUTORIAL_CLIENTS), "The two characters TFF's tutorial trained on"),
        ("Random", links.pick_random(everyone, n), f"{n} characters drawn at random"),
        ("Top N", links.pick_biggest(everyone, n), f"The {n} characters with the most lines"),
    )
    # Rows that size each button to its label and move a whole button to the next line when the
    # column is narrow: columns of fixed shares broke "Random" and "Whole play" mid-word.
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        for label, ids, why in quick:
            st.button(label, on_click=choose, args=(ids,), help=why)
        st.number_input(
            "N",
            1,
            links.LIMITS.max_clients,
            10,
            key=kept("pick_n"),
            help="How many Random and Top N pick",
            width=PICK_N_WIDTH,
        )
    plays = sorted({c.play for c in everyone})
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        play = st.selectbox(
            "Play",
            plays,
            label_visibility="collapsed",
            index=plays.index("Hamlet") if "Hamlet" in plays else 0,
        )
        st.button(
            "Whole play",
            on_click=choose,
            args=(links.pick_play(everyone, play),),
            help="Every character of this play",
        )
    return st.multiselect(
        "Clients: type a character or a play",
        list(clients),
        key=kept("client_ids"),
        format_func=lambda cid: links.client_label(clients[cid]),
        max_selections=links.LIMITS.max_clients,
        placeholder="Search: hamlet, lear, juliet…",
        help="Each Shakespeare character is one client holding its own lines. "
        "Numbers: speeches, and characters of training text.",
    )


def chosen_ui(chosen: list[plays.ClientInfo], shares: dict[str, float]) -> None:
    """The chosen clients: their text and weight, how their letters differ, a few real lines."""
    if not chosen:
        st.warning("No client chosen: pick at least one character, or a quick pick above.")
        return
    if first_paint.deferred():  # the table, the chart and the lines come in the next run
        first_paint.placeholder(chosen_height(len(chosen)), "chosen")
        return
    chosen_table_ui(chosen, shares)
    letters = {c.client_id: load_letters(c.client_id) for c in chosen[:LETTER_CLIENTS]}
    st.plotly_chart(
        plots.data_figure(chosen, shares, letters),
        width="stretch",
        config={"displayModeBar": False},
        key="data-figure",
    )
    st.caption(
        "Non-IID data: characters hold very different amounts of text and use letters "
        "differently (red: more often than the chosen ones together, blue: less). "
        "Bars: averaging weight."
    )
    preview_ui(chosen)


def chosen_table_ui(chosen: list[plays.ClientInfo], shares: dict[str, float]) -> None:
    table = pd.DataFrame(
        {  # the play last: the column most worth cutting short
            "character": [c.character.title() for c in chosen],
            "text": [c.train_chars for c in chosen],
            "weight": [shares[c.client_id] for c in chosen],
            "tutorial": ["dropped" if c.tutorial_would_drop else "kept" for c in chosen],
            "play": [c.play for c in chosen],
        }
    )
    columns = st.column_config
    st.dataframe(
        table,
        hide_index=True,
        height=table_height(len(chosen)),
        width="stretch",
        column_config={
            "character": columns.TextColumn("character", width="small"),
            "text": columns.NumberColumn(
                "text", help="Characters of training text", format="compact", width="small"
            ),
            "weight": columns.ProgressColumn(
                "weight",
                format="percent",
                min_value=0.0,
                max_value=1.0,
                width="small",
                help="Share of the server's weighted average when every chosen client takes "
                "part: sequences trained per round, capped by batches per client",
            ),
            "tutorial": columns.TextColumn(
                "tutorial",
                width="small",
                help="'dropped': the tutorial's pipeline gave this client no batch (less than "
                "8 x 101 characters); fedtext pads its text and keeps it",
            ),
            "play": columns.TextColumn("play"),
        },
    )


def table_height(rows: int) -> int:
    return min(38 + 35 * rows, 220)  # pixels: a header and a row per client, then it scrolls


def chosen_height(n_clients: int) -> int:
    """Pixels that chosen_ui takes: the table, the chart, its caption (about 50) and the lines
    (about 230), with the gaps between them."""
    return table_height(n_clients) + plots.data_figure_height(n_clients) + 340


def preview_ui(chosen: list[plays.ClientInfo]) -> None:
    ids = [c.client_id for c in chosen]
    names = {c.client_id: f"{c.character.title()} ({c.play})" for c in chosen}
    client_id = st.selectbox(
        "A few of their real lines", ids, format_func=names.get, key="preview_id"
    )
    with st.container(height=150, key="preview"):
        for speech in load_preview(client_id or ids[0]):
            st.text(speech)
