"""Section 2, the settings: a preset to start from and each training setting, within the
server's bounds; and the strip that explains a round with these numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import streamlit as st

from fedtext.config import ConfigError, FederatedConfig
from fedtext.learning import privacy
from fedtext.presets import PRESETS
from fedtext.service import links
from ui import first_paint, words
from ui.kept import kept, restore

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
PRIVATE = ("dp_clipping", "dp_clip")  # only matter with noise
COSTS = ("compression_bits", "dropout_chance", "straggler_chance")  # what a round costs
# The folded "Averaging, privacy, what the server sees" settings.
MORE = ("weighting", "noise_multiplier", *PRIVATE, "aggregator", "update_clip", "client_figures")
ALGORITHM = ("algorithm", "proximal_strength")
NOBODY = ""  # the attacker's choice when no character cheats
# The attack's values when nobody cheats: a trigger typed before is left out.
NO_ATTACK = dict(attack_client=NOBODY, attack_trigger="", attack_target="", attack_boost=1.0)


def apply_preset() -> None:
    """Set the widgets to the chosen preset; one that names its clients brings them too."""
    name = st.session_state.preset
    setup = links.preset_setup(name)
    if "client_ids" not in PRESETS.get(name, {}):
        setup.pop("client_ids")
    st.session_state.update(setup)


def settings_ui(names: Mapping[str, str]) -> dict:
    """The training settings, each with its bounds and a one-line help; returns their values."""
    st.selectbox(
        "Start from",
        list(words.PRESET_LABELS),
        format_func=words.PRESET_LABELS.get,
        key=kept("preset"),
        on_change=apply_preset,
        help="Named settings: the measured defaults, TFF's tutorial as published (its "
        "client rate of 0.5 wrecks this model), Reddi et al. 2021's Shakespeare "
        "settings (made for an LSTM trained from scratch), or a lesson's",
    )
    lesson = words.PRESET_LESSONS.get(st.session_state.preset)
    if lesson:
        st.caption(f":material/school: {lesson}")
    columns = st.columns(2)
    values = {field: setting_ui(columns[i % 2], field) for i, field in enumerate(PAIRED)}
    values.update({field: setting_ui(st, field) for field in WIDE})
    expanded = st.session_state.noise_multiplier > 0 or st.session_state.client_figures
    with st.expander("Averaging, privacy, what the server sees", expanded=expanded):
        values.update(held(MORE) if first_paint.folded(expanded) else more_settings_ui())
    values.update(costs_ui())
    values.update(attack_ui(names))
    return values


def more_settings_ui() -> dict:
    """Averaging, the privacy dial, the aggregator and the per-client figures; their values."""
    values = {"weighting": setting_ui(st, "weighting", on_change=_weighting_changed)}
    values["noise_multiplier"] = setting_ui(st, "noise_multiplier", on_change=_noise_changed)
    private = values["noise_multiplier"] > 0
    columns = st.columns(2)
    values["dp_clipping"] = setting_ui(columns[0], "dp_clipping", disabled=not private)
    values["dp_clip"] = setting_ui(
        columns[1], "dp_clip", disabled=not private or values["dp_clipping"] != "fixed"
    )
    columns = st.columns(2)
    values["aggregator"] = setting_ui(columns[0], "aggregator")
    values["update_clip"] = setting_ui(columns[1], "update_clip")
    values["client_figures"] = st.toggle(
        "Measure each client",
        key=kept("client_figures"),
        disabled=private,
        help="Each round, every client's share of the average, the size of its update, "
        "its agreement with the average and its own loss before and after, computed inside "
        "TFF (rounds take about a third longer). Not with differential privacy, whose "
        "guarantee covers the model, not what each client sends",
    )
    return values


def costs_ui() -> dict:
    """What a round costs: FedSGD, FedAvg or FedProx, compressed updates, drop-outs, stragglers."""
    state = st.session_state
    expanded = state.algorithm != "fedavg" or any(state[field] for field in COSTS)
    with st.expander("Algorithm, compression, drop-outs", expanded=expanded):
        if first_paint.folded(expanded):
            return held((*ALGORITHM, *COSTS))
        values = {"algorithm": setting_ui(st, "algorithm")}
        values["proximal_strength"] = setting_ui(
            st, "proximal_strength", disabled=values["algorithm"] != "fedprox"
        )
        values.update({field: setting_ui(st, field) for field in COSTS})
    return values


def attack_ui(names: Mapping[str, str]) -> dict:
    """An attacker among the chosen characters, its trigger, target and boost; their values,
    the attack's left out when nobody cheats."""
    state = st.session_state
    chosen = [NOBODY, *state.get("client_ids", [])]
    if state.get("attack_client", NOBODY) not in chosen:
        state.attack_client = NOBODY  # the attacker was taken off the clients
    with st.expander("An attacker among the clients", expanded=bool(state.attack_client)):
        if first_paint.folded(bool(state.attack_client)):
            return dict(NO_ATTACK)
        label, why = words.SETTING_TEXT["attack_client"]
        attacker = st.selectbox(
            label,
            chosen,
            key=kept("attack_client"),
            format_func=lambda cid: names.get(cid, "nobody"),
            help=why,
        )
        columns = st.columns(2)
        texts = {}
        for column, field in zip(columns, links.ATTACK_TEXTS, strict=True):
            label, why = words.SETTING_TEXT[field]
            texts[field] = column.text_input(
                label,
                key=kept(field),
                max_chars=links.MAX_ATTACK_TEXT,
                disabled=attacker == NOBODY,
                help=why,
            )
        boost = setting_ui(st, "attack_boost", disabled=attacker == NOBODY)
    if attacker == NOBODY:
        return dict(NO_ATTACK)
    return {"attack_client": attacker, **texts, "attack_boost": boost}


def held(fields: tuple[str, ...]) -> dict:
    """The values of settings whose widgets are not drawn in this run, as the session holds them."""
    for field in fields:
        restore(field)
    return {field: st.session_state[field] for field in fields}


def setting_ui(box, field: str, **options):
    """One setting's widget: a number within its bounds, or one of its choices."""
    label, why = words.SETTING_TEXT[field]
    if field in links.BOUNDS:
        bound = links.BOUNDS[field]
        return box.number_input(label, bound.low, bound.high, key=kept(field), help=why, **options)
    choices = links.CHOICES[field]
    if isinstance(choices[0], str):
        return box.radio(label, choices, key=kept(field), horizontal=True, help=why, **options)
    return box.select_slider(
        label, choices, key=kept(field), help=why, format_func=_number, **options
    )


def _noise_changed() -> None:
    if st.session_state.noise_multiplier > 0 and st.session_state.weighting != "uniform":
        st.session_state.weighting = "uniform"
        st.toast("Differential privacy gives every character one vote: averaging is uniform.")


def _weighting_changed() -> None:
    if st.session_state.weighting == "weighted" and st.session_state.noise_multiplier > 0:
        st.session_state.noise_multiplier = 0.0
        st.toast("Weighted averaging lets big talkers dominate, which DP cannot allow: noise off.")


def privacy_ui(box, setup: dict) -> None:
    """What the run will cost in privacy, before it starts: epsilon, and what it covers."""
    if not setup["noise_multiplier"]:
        return
    try:
        config = FederatedConfig(**{**setup, "client_ids": tuple(setup["client_ids"])})
    except ConfigError:
        return  # the Train button says why
    cost = privacy.epsilon_after(config)
    shown = "∞" if math.isinf(cost.epsilon) else f"{cost.epsilon:.2f}"
    with box.container(border=True):
        st.markdown(
            f"**Privacy budget: ε = {shown}** at δ = {cost.delta:.1e} after {cost.rounds} rounds"
        )
        st.caption(f"{privacy.guarantee(config)} {privacy.approximation(config)}")


def _number(value: float) -> str:
    return "off" if value == 0 else f"{value:g}"  # 0 is only offered where it means off


def explain_ui(setup: dict, shares: dict[str, float]) -> None:
    """What one round does, with this setup's numbers."""
    steps = words.round_steps(setup, shares)
    for column, (title, text) in zip(st.columns(len(steps)), steps, strict=True):
        with column.container(border=True):
            st.markdown(f"**{title}**  \n<small>{text}</small>", unsafe_allow_html=True)
