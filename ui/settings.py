"""Section 2, the settings: a preset to start from and each training setting, within the
server's bounds; and the strip that explains a round with these numbers."""

from __future__ import annotations

import streamlit as st

from fedtext import server, sharing

# Settings laid out in two columns, then full width: the rates read better on a long slider.
PAIRED = (
    "rounds",
    "clients_per_round",
    "batches_per_client",
    "batch_size",
    "client_optimizer",
    "clip_norm",
)
WIDE = ("client_learning_rate", "server_optimizer", "server_learning_rate", "seed")


def apply_preset() -> None:
    """Set the widgets to the chosen preset; the tutorial's brings its two clients too."""
    setup = sharing.preset_setup(st.session_state.preset)
    if st.session_state.preset != "tutorial":
        setup.pop("client_ids")
    st.session_state.update(setup)


def settings_ui() -> dict:
    """The training settings, each with its bounds and a one-line help; returns their values."""
    st.selectbox(
        "Start from",
        list(sharing.PRESET_LABELS),
        format_func=sharing.PRESET_LABELS.get,
        key="preset",
        on_change=apply_preset,
        help="Named settings: the measured defaults, TFF's tutorial as published (its "
        "client rate of 0.5 wrecks this model), or Reddi et al. 2021's Shakespeare "
        "settings, made for an LSTM trained from scratch",
    )
    columns = st.columns(2)
    values = {field: setting_ui(columns[i % 2], field) for i, field in enumerate(PAIRED)}
    values.update({field: setting_ui(st, field) for field in WIDE})
    return values


def setting_ui(box, field: str):
    """One setting's widget: a number within its bounds, or one of its choices."""
    label, why = sharing.SETTING_TEXT[field]
    if field in sharing.BOUNDS:
        bound = sharing.BOUNDS[field]
        return box.number_input(label, bound.low, bound.high, key=field, help=why)
    choices = sharing.CHOICES[field]
    if isinstance(choices[0], str):
        return box.radio(label, choices, key=field, horizontal=True, help=why)
    return box.select_slider(label, choices, key=field, help=why, format_func=_number)


def _number(value: float) -> str:
    return "off" if value == 0 else f"{value:g}"  # 0 is only offered where it means off


def explain_ui(setup: dict, shares: dict[str, float]) -> None:
    """What one round does, with this setup's numbers."""
    steps = server.round_steps(setup, shares)
    for column, (title, text) in zip(st.columns(len(steps)), steps, strict=True):
        with column.container(border=True):
            st.markdown(f"**{title}**  \n<small>{text}</small>", unsafe_allow_html=True)
