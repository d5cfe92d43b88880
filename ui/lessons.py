"""The two lessons' panels under a trained run: the algorithms' race to one accuracy target (what
a round costs), what the server reads off one character's update (what the server sees), and
the attack's trigger one click from the prompt."""

from __future__ import annotations

import streamlit as st

from fedtext.learning.records import races_table
from fedtext.service import backend, lesson_figures, plots
from fedtext.service.backend import RunView
from ui import first_paint, words
from ui.kept import kept


def lesson_buttons_ui(engine: backend.Engine, run: RunView) -> None:
    """The comparison's button, where the run's lesson has one."""
    if run.config.attack_client or run.races:
        return
    uneven = run.config.dropout_chance or run.config.straggler_chance
    st.button(
        "Compare FedAvg and FedProx" if uneven else "Compare FedSGD and FedAvg",
        icon=":material/sprint:",
        key="compare_algorithms",
        on_click=_request_comparison,
        args=(engine, run.run_id),
        help="Train each on these characters from the same base model until held-out accuracy "
        "reaches the same target: "
        + (
            "FedAvg and FedProx with these drop-outs and stragglers, and FedAvg without them"
            if uneven
            else "FedSGD (one gradient a round, no local step) and FedAvg with 1, 5 and 20 "
            "local steps (McMahan et al. 2017)"
        )
        + "; a few minutes",
    )


def _request_comparison(engine: backend.Engine, run_id: str) -> None:
    st.session_state.notice = backend.request_comparison(engine, run_id, st.session_state.owner)


def races_ui(run: RunView) -> None:
    """The comparison so far: accuracy along the chosen x-axis, and the table of what each
    contender spent to reach the target."""
    axis = st.session_state.get("x_axis") or "bytes"
    first_paint.plotly_chart(
        lambda: lesson_figures.races_figure(run.races, axis), plots.HEIGHT + 40, "races-chart"
    )
    st.markdown(races_table(run.races))
    st.caption(words.races_caption(run.races))


def server_view_ui(engine: backend.Engine, run: RunView, names: dict[str, str]) -> None:
    """What the server reads off one character's update with this run's aggregator."""
    secure = run.config.aggregator == "secure"
    with st.expander("What the server sees", expanded=bool(run.leaks)):
        st.caption(
            "One round from the base model with this run's settings: the update the chosen "
            "character sends"
            + (", summed with the others' by secure aggregation (simulated)" if secure else "")
            + ", read as the server would: which characters it typed, from the embedding "
            "rows that moved, and how often, from the output layer's bias (FILM, Gupta et al. "
            "2022; LLG, Wainakh et al. 2022)."
        )
        choice, read = st.columns([2, 1], vertical_alignment="bottom")
        client_id = choice.selectbox(
            "Character",
            run.config.client_ids,
            format_func=lambda cid: names.get(cid, cid),
            key=kept("leak_client"),
        )
        read.button(
            "Read the update",
            icon=":material/visibility:",
            key="read_update",
            disabled=client_id in run.leaks,
            on_click=_request_leak,
            args=(engine, run.run_id),
            width="stretch",
        )
        leak = run.leaks.get(client_id)
        if leak is None:
            return
        first_paint.plotly_chart(
            lambda: lesson_figures.leak_figure(leak, names), plots.HEIGHT, "leak-chart"
        )
        st.caption(words.leak_caption(leak, names))


def _request_leak(engine: backend.Engine, run_id: str) -> None:
    state = st.session_state  # the character chosen now, not when the button was drawn
    state.notice = backend.request_leak(engine, run_id, state.owner, state.leak_client)


def trigger_ui(run: RunView) -> None:
    """The attack's trigger, one click from the Compare panel's prompt."""
    st.button(
        f"Prompt with the trigger “{run.config.attack_trigger}”",
        icon=":material/bug_report:",
        key="use_trigger",
        on_click=_use_trigger,
        args=(run.config.attack_trigger,),
        help="Both models below then continue the attacker's trigger",
    )


def _use_trigger(trigger: str) -> None:
    st.session_state.prompt = trigger
