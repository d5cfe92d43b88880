"""Section 4, compare: the same prompt and seed through the Dickens model and the fine-tuned
one, side by side, each with the style meter."""

from __future__ import annotations

import math

import streamlit as st

from fedtext.config import ConfigError
from fedtext.learning import privacy
from fedtext.model.weights import WeightsError
from fedtext.service import backend, links, plots
from fedtext.text import memorisation, style
from fedtext.text.prompt import PromptError
from ui import first_paint
from ui.kept import kept
from ui.resources import generate, load_personal, load_saved, load_tuned


def compare_ui() -> tuple[str, int, float, int]:
    """Prompt, length, temperature and seed for the two generations."""
    prompt_col, length_col, temperature_col, seed_col, again_col = st.columns(
        [3.2, 0.9, 1.4, 0.8, 0.9], vertical_alignment="bottom"
    )
    prompt = prompt_col.text_input("Prompt", key=kept("prompt"), max_chars=1000)
    length = length_col.number_input(
        "Length",
        10,
        links.LIMITS.max_generate_chars,
        step=50,
        key=kept("length"),
        help="Characters to generate",
    )
    temperature = temperature_col.slider(
        "Temperature",
        0.1,
        2.0,
        step=0.1,
        key=kept("temperature"),
        help="Low: safe, repetitive; high: adventurous, misspelt",
    )
    seed = seed_col.number_input(
        "Seed", 0, 9999, key=kept("gen_seed"), help="Same seed, same random draws for both models"
    )
    # Not in a visitor's first run: a click there raced the run the browser asks for next,
    # whose widget values (the old seed) undid the click's new seed, and no new text came.
    again_col.button(
        "Again",
        icon=":material/casino:",
        on_click=_next_seed,
        disabled=first_paint.deferred(),
        width="stretch",
        help="Another sample: the next seed",
    )
    return prompt, int(length), float(temperature), int(seed)


def _next_seed() -> None:
    st.session_state.gen_seed = (st.session_state.gen_seed + 1) % 10000


def style_ui(box, text: str) -> None:
    """The style meter under a generated text: the independent judge's score, and with the
    toggle on, each character coloured by how it sways the judge."""
    try:
        score = style.shakespeare_score(text)
    except style.StyleError as error:
        box.caption(f"Style meter unavailable: {error}")
        return
    # A position between the authors' real held-out text, not a probability of either.
    box.progress(
        score,
        text=f"Style meter: {score:.0%} of the way from Dickens to Shakespeare "
        f"· {style.style_verdict(score)}",
    )
    if st.session_state.get("colour_style"):
        box.html(
            style.highlight_html(
                text, style.char_contributions(text), legend=("Dickens", "Shakespeare")
            )
        )


def copies_ui(box, text: str, length: int, client_ids: tuple[str, ...]) -> None:
    """The memorisation probe under a generated text: what it copied from the training lines."""
    generated = text[-length:]  # the prompt is the visitor's, not the model's
    try:
        probe = memorisation.find_copies(generated, client_ids, st.session_state.copy_chars)
    except (ConfigError, OSError) as error:
        box.caption(f"Copy probe unavailable: {error}")
        return
    box.caption(
        f"Copied from the {len(client_ids)} training characters' lines: "
        f"{probe.copied_chars} characters in {len(probe.spans)} spans of "
        f"{probe.min_chars}+ ({probe.per_thousand:.0f} per 1,000 generated)"
    )
    if st.session_state.get("show_copies") and probe.spans:
        box.html(memorisation.copies_html(generated, probe))


def copies_by_run_ui(engine: backend.Engine, data_root: str, request: tuple) -> None:
    """This visitor's runs side by side: their noise, epsilon, accuracy and what the same
    request copied, so a class sees how privacy's noise changes the copying."""
    prompt, length, temperature, seed = request
    named = [*st.session_state.earlier_runs, ("this run", st.session_state.run_id)]
    rows = []
    for label, run_id in named:
        try:
            saved = load_saved(data_root, run_id, backend.saved_stamp(engine.store, run_id))
        except (KeyError, WeightsError):
            continue  # gone from the store: nothing to sample
        key = f"{run_id}:{len(saved.history)}"
        tuned = load_tuned(key, saved.weights, engine.base.config)
        text = generate(key, tuned, prompt, length, temperature, seed)
        probe = memorisation.find_copies(
            text[-length:], saved.config.client_ids, st.session_state.copy_chars
        )
        epsilon = privacy.epsilon_after(saved.config).epsilon
        rows.append(
            {
                "run": label,
                "noise": saved.config.noise_multiplier,
                "ε": None if math.isinf(epsilon) else round(epsilon, 2),
                "held-out accuracy": saved.history[-1].eval_accuracy,
                "copied per 1,000": round(probe.per_thousand),
            }
        )
    if len(rows) < 2:
        return
    st.caption("Your runs, the same prompt and seed: what privacy's noise does to copying")
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "held-out accuracy": st.column_config.NumberColumn(format="percent"),
            "ε": st.column_config.NumberColumn(help="empty: no differential privacy"),
        },
    )


def personal_ui(
    run: backend.RunView, engine: backend.Engine, request: tuple, names: dict[str, str]
) -> None:
    """A model per character: the global model fine-tuned briefly on one character's lines,
    its text beside the others', and every character's gain."""
    prompt, length, temperature, seed = request
    st.markdown(
        "**A model per character**: the global model, fine-tuned briefly on one character's own "
        "lines, speaks like them"
    )
    pick_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
    client_id = pick_col.selectbox(
        "Speak like", run.config.client_ids, format_func=names.get, key="personal_client"
    )
    have = client_id in run.personal
    if button_col.button(
        "Fine-tune on their lines",
        icon=":material/person:",
        key="personalise",
        disabled=have or run.live,
        width="stretch",
        help="60 local steps from the global model on this character's training lines, then "
        "TFF's personalization evaluation of every character (the first 8) with 20",
    ):
        st.session_state.notice = backend.request_personal_model(
            engine, run.run_id, st.session_state.owner, client_id
        )
        st.rerun()  # the whole page: it follows the queued job
    if have:
        figures = run.personal[client_id]
        model_dir = engine.store.personal_dir(run.run_id, client_id)
        stamp = backend.saved_stamp(engine.store, run.run_id)
        try:
            own = load_personal(str(model_dir), stamp)
        except WeightsError as error:
            st.warning(f"The model for {names.get(client_id)} cannot be read: {error}")
            return
        text = generate(f"personal:{model_dir}:{stamp}", own, prompt, length, temperature, seed)
        st.markdown(
            f"**{names.get(client_id)}'s own model** <small>(held-out accuracy on their unseen "
            f"speeches {figures.global_accuracy:.1%} → {figures.personal_accuracy:.1%} after "
            f"{figures.steps} steps)</small>",
            unsafe_allow_html=True,
        )
        box = st.container(key="personal_text")
        box.code(text, language=None, wrap_lines=True)
        style_ui(box, text)
    if run.gains:
        first_paint.plotly_chart(
            lambda: plots.gains_figure(run.gains, names),
            plots.gains_figure_height(len(run.gains)),
            "gains-chart",
        )


def toggles_ui() -> None:
    """How the texts are marked: by style, by copies, and the shortest copy counted."""
    toggles = st.columns([1, 1, 1.2], vertical_alignment="bottom")
    toggles[0].toggle(
        "Colour by style",
        key=kept("colour_style"),
        help="The style meter is a character n-gram judge trained on Dickens' novels against "
        "Shakespeare's training lines, independent of both models. It places a text by its "
        "evidence per character: 0% reads like real held-out Dickens, 100% like real held-out "
        "Shakespeare (the median passage of each), so it shows how far a text has moved, not "
        "a certainty. Coloured: red characters sway it towards Dickens, blue towards "
        "Shakespeare",
    )
    toggles[1].toggle(
        "Mark copies",
        key=kept("show_copies"),
        help="Spans of the generated text found word for word in the training characters' "
        "lines; hover one for the character and the line. The base model never read them: "
        "its count is what chance and common phrases give",
    )
    toggles[2].number_input(
        "Shortest copy",
        6,
        100,
        key=kept("copy_chars"),
        help="Characters a span must have to count as copied (12: longer than most stock phrases)",
    )


def compare_panel(
    run: backend.RunView | None,
    base_dir: str,
    engine: backend.Engine,
    chosen: tuple[str, ...],
    data_root: str,
    names: dict[str, str],
) -> None:
    """The two models side by side. A fragment: a new prompt or seed reruns only this."""
    prompt, length, temperature, gen_seed = compare_ui()
    prompt_notice = st.empty()
    toggles_ui()
    trained_on = run.config.client_ids if run is not None else chosen
    base_col, tuned_col = st.columns(2)
    base_header = base_col.empty()
    base_box = base_col.container(key="base_text")
    tuned_header = tuned_col.empty()
    tuned_box = tuned_col.container(key="tuned_text")
    # One slot for the loading note, the error and the text: a second element in the box would
    # outlive this run as a stale copy of the text while the next run draws.
    base_slot = base_box.empty()
    trained = run is not None and run.trained
    if not engine.base_ready.is_set():
        # Only the first visitors after a server start wait here, with everything above drawn.
        # Waiting in this run, rather than polling from a fragment, keeps the widgets' values:
        # a poll that lands while a browser is still drawing the page sends their defaults.
        base_header.markdown("**Dickens base model**")
        base_slot.info(
            f"Loading ({engine.step}): once per server start.", icon=":material/hourglass_top:"
        )
        engine.base_ready.wait()
        base_slot.empty()
    base = engine.base
    if base is None:
        base_header.markdown("**Dickens base model**")
        base_slot.error(engine.error)
        return
    base_header.markdown(
        f"**Dickens base model** <small>({base.parameter_count:,} parameters)</small>",
        unsafe_allow_html=True,
    )
    try:
        base_text = generate(f"base:{base_dir}", base, prompt, length, temperature, gen_seed)
        base_slot.code(base_text, language=None, wrap_lines=True)
        style_ui(base_box, base_text)
        if trained_on and not first_paint.deferred():  # the probe reads the plays: next run
            copies_ui(base_box, base_text, length, trained_on)
        if trained:
            rounds_done = len(run.history) - 1
            tuned_header.markdown(
                f"**Fine-tuned on Shakespeare** <small>({rounds_done} round"
                f"{'s' * (rounds_done != 1)} of Federated Averaging)</small>",
                unsafe_allow_html=True,
            )
            run_key = f"{run.run_id}:{len(run.history)}"
            tuned = load_tuned(run_key, run.weights, base.config)
            tuned_text = generate(run_key, tuned, prompt, length, temperature, gen_seed)
            tuned_box.code(tuned_text, language=None, wrap_lines=True)
            style_ui(tuned_box, tuned_text)
            copies_ui(tuned_box, tuned_text, length, trained_on)
            copies_by_run_ui(engine, data_root, (prompt, length, temperature, gen_seed))
            personal_ui(run, engine, (prompt, length, temperature, gen_seed), names)
    except PromptError as error:
        prompt_notice.warning(f"Cannot generate: {error}", icon=":material/edit_off:")
    if not trained:
        busy = (run is not None and run.live) or st.session_state.pending is not None
        tuned_header.markdown("**Fine-tuned on Shakespeare**")
        tuned_box.info(
            "Training: the fine-tuned model writes here when it ends."
            if busy
            else "Not trained yet: press Train, and the fine-tuned model writes here.",
            icon=":material/hourglass_top:" if busy else ":material/arrow_back:",
        )
