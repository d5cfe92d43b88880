"""The page, driven by Streamlit's AppTest: real clients, real TFF rounds on a tiny model."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fedtext.config import FederatedConfig
from fedtext.learning import training
from fedtext.learning.records import RoundResult
from fedtext.service import links, plots
from fedtext.text.plays import ClientInfo
from fedtext.text.prompt import TUTORIAL_PROMPT
from tests.conftest import KillingProcess

APP = Path(__file__).resolve().parent.parent / "app.py"
CLIENTS = ["KING_LEAR_FOOL", "KING_LEAR_KING_LEAR"]  # small, so a round takes seconds


def open_page(query: dict[str, str] | None = None) -> AppTest:
    """The page as a browser shows it: its first run, which waits for the engine's base model
    and leaves the charts and tables for the next, then that next run, which the browser asks
    for once it has drawn the first (ui/first_paint.py; AppTest has no browser to ask)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    assert not at.get("plotly_chart") and not at.dataframe  # they come in the next run
    at.run()
    assert not at.exception, at.exception
    return at


def train(at: AppTest, **settings) -> AppTest:
    """Set the clients and settings (one short round unless told), press Train, wait for it."""
    at.multiselect(key="client_ids").set_value(CLIENTS)
    for key, value in {"rounds": 1, "batches_per_client": 1, **settings}.items():
        if key in links.BOUNDS:
            at.number_input(key=key).set_value(value)
        elif isinstance(links.CHOICES[key][0], str):
            at.radio(key=key).set_value(value)
        else:
            at.select_slider(key=key).set_value(value)
    at.button(key="train").click().run(timeout=240)
    return wait_for_run(at)


def wait_for_run(at: AppTest, timeout: float = 300) -> AppTest:
    """Rerun the page, as the browser's polling would, until its run has ended."""
    deadline = time.monotonic() + timeout
    while True:
        assert not at.exception, at.exception
        if at.session_state["pending"] is None and at.button(key="stop").disabled:
            return at
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.5)
        at.run()


def chart_traces(at: AppTest) -> dict[str, dict[str, list]]:
    """The page's Plotly figures by title: each trace's name and x values."""
    figures = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = spec["layout"].get("title", {}).get("text", "")
        figures[title] = {t.get("name", ""): list(t.get("x", [])) for t in spec["data"]}
    return figures


def test_a_visitors_first_run_leaves_the_charts_and_tables_for_the_next(page_env):
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert not at.button(key="train").disabled and len(at.code) == 1  # usable: Train, base text
    assert not at.get("plotly_chart") and not at.dataframe
    again = lambda: next(b for b in at.button if b.label == "Again")  # noqa: E731
    assert again().disabled  # a click would race the next run, which undid its new seed
    at.run()  # what the browser asks for once it has drawn the first run
    assert not at.exception, at.exception
    assert not again().disabled
    assert set(chart_traces(at)) >= {"Loss (lower is better)", "Accuracy", ""}
    assert len(at.dataframe) == 1  # the clients' table
    assert at.text_input(key="prompt").value == TUTORIAL_PROMPT
    assert at.radio(key="weighting").value == "weighted"


def test_folded_settings_wait_for_the_next_run_and_keep_the_links_values(page_env):
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(weighting="uniform")
    at.run()
    assert not at.exception, at.exception
    drawn = {widget.key for widget in at.radio} | {widget.key for widget in at.select_slider}
    assert drawn.isdisjoint({"weighting", "aggregator", "algorithm"})  # both expanders folded
    # Their values set the run all the same: the link, and step 4's sentence, follow them.
    assert at.query_params["weighting"] == ["uniform"]
    assert any("one vote each" in block.value for block in at.markdown)
    at.run()
    assert at.radio(key="weighting").value == "uniform"
    # Drawn first in this run, each sends the browser its value: without, the browser showed a
    # slider's first choice (dp_clip 0.01 for 0.1) and sent that back with the next click.
    for key in ("dp_clip", "proximal_strength", "weighting", "update_clip"):
        widget = at.select_slider(key=key) if key != "weighting" else at.radio(key=key)
        assert widget.proto.set_value, key
    dp_clip = at.select_slider(key="dp_clip")
    assert list(dp_clip.proto.value) == [links.DP_CLIPS.index(0.1)], dp_clip.proto.value
    at.run()  # once the browser has them, no more: a value sent every run undoes typing
    assert not at.select_slider(key="dp_clip").proto.set_value
    assert not at.text_input(key="prompt").proto.set_value
    at.radio(key="weighting").set_value("weighted").run()
    assert "weighting" not in at.query_params  # the default, which a link leaves out

    opened = AppTest.from_file(str(APP), default_timeout=120)
    opened.query_params.update(noise="0.3", dropout="0.2")  # both expanders open: drawn at once
    opened.run()
    assert opened.select_slider(key="noise_multiplier").value == 0.3
    assert opened.select_slider(key="dropout_chance").value == 0.2


def test_a_one_round_training_shows_metrics_both_generations_and_keeps_the_run(page_env):
    at = open_page()
    assert any("Not trained yet" in i.value for i in at.info)
    assert len(at.code) == 1  # the base model writes; the fine-tuned column says why not

    at = train(at, client_learning_rate=1.0)  # a step big enough to change the samples
    assert len(at.success) == 1, [m.value for m in (*at.error, *at.warning, *at.info)]
    [done] = at.success
    assert done.value.startswith("Trained 1 round in")
    assert "held-out accuracy" in done.value
    charts = chart_traces(at)
    assert charts["Accuracy"]["held-out speeches"] == [0, 1]  # base model, then round 1
    assert charts["Loss (lower is better)"]["training (clients' own lines)"] == [1]
    base, tuned = (c.value for c in at.code)
    prompt = at.text_input(key="prompt").value
    assert base.startswith(prompt) and tuned.startswith(prompt)
    # One round moved the weights, and the same seeds show it (the tiny model's near-uniform
    # guesses can give one seed the same draws from both).
    texts = [(base, tuned)]
    for seed in (1, 2):
        at.number_input(key="gen_seed").set_value(seed).run()
        texts.append(tuple(c.value for c in at.code))
    assert any(b != t for b, t in texts), texts
    at.number_input(key="gen_seed").set_value(0).run()

    run_id = at.query_params["run"][0]
    store = page_env / "runs" / run_id
    assert (store / "weights.npz").exists()
    assert (store / "metrics.csv").read_text().splitlines()[0].startswith("round,eval_loss")
    assert at.query_params["rounds"] == ["1"]
    assert at.query_params["clients"] == [",".join(CLIENTS)]

    # A reload after a server restart: the run comes back from disk, with its text.
    copy_id = "restored-run-abcdefghijklmnop"
    shutil.copytree(store, store.parent / copy_id)
    again = open_page({"run": copy_id, "clients": ",".join(CLIENTS), "rounds": "1"})
    assert [s.value for s in again.success] == [done.value]
    assert [c.value for c in again.code] == [base, tuned]

    # The style meter reads both texts, with the independent judge.
    meters = [p.proto.text for p in at.get("progress")]
    assert sum("Style meter:" in text for text in meters) == 2, meters

    # The centralised baseline, for the CPU time the round took, lands beside it.
    at.button(key="baseline").click().run()
    at = wait_for_run(at)
    lines = chart_traces(at)["Federated versus centralised, at equal compute"]
    assert len(lines["centralised (all lines pooled in one place)"]) >= 2
    assert any("(ratio" in c.value for c in at.caption)
    assert json.loads((store / "run.json").read_text())["baseline"]

    # The next run keeps this one on the charts for comparison.
    at = train(at, seed=1)
    assert "run 1 (held-out)" in chart_traces(at)["Accuracy"]


def test_the_tutorial_preset_sets_its_clients_and_settings_in_one_click(page_env):
    at = open_page()
    at.selectbox(key="preset").set_value("tutorial").run()
    assert not at.exception
    assert at.multiselect(key="client_ids").value == list(
        links.preset_setup("tutorial")["client_ids"]
    )
    assert at.select_slider(key="client_learning_rate").value == 0.5
    assert at.select_slider(key="batch_size").value == 8
    assert at.select_slider(key="clip_norm").value == 0.0
    assert at.radio(key="server_optimizer").value == "sgd"
    # The link names the preset, not its settings; opened, it is the same page.
    assert at.query_params["preset"] == ["tutorial"] and "client_lr" not in at.query_params
    reopened = open_page({"preset": "tutorial"})
    assert reopened.select_slider(key="client_learning_rate").value == 0.5
    assert reopened.multiselect(key="client_ids").value == at.multiselect(key="client_ids").value


def test_the_privacy_dial_prices_the_run_and_a_private_run_says_what_it_spent(page_env):
    at = open_page()
    at.multiselect(key="client_ids").set_value(CLIENTS)
    at.select_slider(key="noise_multiplier").set_value(0.1).run()
    assert at.radio(key="weighting").value == "uniform"  # DP gives every character one vote
    budget = [m.value for m in at.markdown if m.value.startswith("**Privacy budget")]
    assert budget and "ε = " in budget[0], [m.value for m in at.markdown]
    assert any("User-level differential privacy over the 2" in c.value for c in at.caption)

    at = train(at, noise_multiplier=0.1, weighting="uniform")
    done = at.success[0].value
    assert "held-out accuracy" in done and "ε = " in done and "after 1 round" in done
    copies = [c.value for c in at.caption if c.value.startswith("Copied from the 2")]
    assert len(copies) == 2, copies  # under the base text and the fine-tuned text
    # A second run without noise: the Compare panel sets the two runs' copying side by side.
    at = train(at, noise_multiplier=0.0)
    [table] = [t for t in at.dataframe if "copied per 1,000" in t.value.columns]
    assert list(table.value["run"]) == ["run 1 (DP, noise 0.1)", "this run"]
    assert list(table.value["noise"]) == [0.1, 0.0]
    assert table.value["ε"].iloc[0] > 0 and table.value["ε"].isna().iloc[1]
    # Weighted averaging again turns the noise off: DP cannot let big talkers dominate.
    at.select_slider(key="noise_multiplier").set_value(0.3).run()
    at.radio(key="weighting").set_value("weighted").run()
    assert at.select_slider(key="noise_multiplier").value == 0.0


def test_measuring_each_client_draws_who_moved_the_model(page_env):
    at = open_page()
    at.toggle(key="client_figures").set_value(True)
    at = train(at, batches_per_client=20)  # past the Fool's text: unequal shares
    [heatmap] = [
        json.loads(e.proto.spec)["data"][0]
        for e in at.get("plotly_chart")
        if json.loads(e.proto.spec)["layout"]["title"]["text"].startswith("Who moved the model")
    ]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == [1]
    assert heatmap["y"] == ["Fool (King Lear)", "King Lear (King Lear)"]  # named, in order
    shares = [row[0] for row in heatmap["z"]]
    assert sum(shares) == pytest.approx(1.0) and shares[0] != shares[1]  # weighted by text
    assert at.selectbox(key="panel_client").value == "KING_LEAR_FOOL"
    store = page_env / "runs" / at.query_params["run"][0]
    assert (store / "clients.csv").read_text().startswith("round,client_id,share")

    # A model per character: the Fool's own, its text beside the others', every one's gain.
    at.selectbox(key="personal_client").set_value("KING_LEAR_FOOL")
    at.button(key="personalise").click().run()
    at = wait_for_run(at)
    made = at.button(key="personalise").disabled  # made once
    assert made, [e.value for e in (*at.error, *at.warning)] or at.session_state["run_id"]
    assert len(at.code) == 3, [c.value for c in at.code]  # base, global, the Fool's own
    assert any("Fool (King Lear)'s own model" in m.value for m in at.markdown)
    titles = [json.loads(e.proto.spec)["layout"]["title"]["text"] for e in at.get("plotly_chart")]
    assert "A model per character: each one's gain over the global model" in titles


def test_no_client_chosen_gives_a_message(page_env):
    at = open_page()
    at.multiselect(key="client_ids").set_value([]).run()
    assert not at.exception
    assert any("No client chosen" in w.value for w in at.warning)
    at.button(key="train").click().run()
    assert not at.exception
    assert any("choose at least one client" in e.value for e in at.error)


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("Wherefore art thou 🙂 “Romeo”?", "characters the model does not know: '🙂'"),
        ("", "the prompt is empty"),
    ],
)
def test_an_odd_prompt_gives_a_message_not_an_exception(page_env, prompt, message):
    at = open_page()
    at.text_input(key="prompt").set_value(prompt).run()
    assert not at.exception
    assert [message in w.value for w in at.warning] == [True]


def test_typographic_quotes_in_a_prompt_are_mapped_and_generate(page_env):
    at = open_page()
    at.text_input(key="prompt").set_value("“O Romeo” — ").run()
    assert not at.exception and not at.warning
    assert at.code[0].value.startswith('"O Romeo" -- ')


def test_training_that_diverges_says_so_and_keeps_the_base_model(page_env):
    at = train(
        open_page(),
        server_optimizer="adam",
        server_learning_rate=3.0,
        client_learning_rate=3.0,
        batches_per_client=2,
    )
    [error] = at.error
    assert "training diverged in round 1" in error.value
    assert "lower learning rate" in error.value
    assert any("Not trained yet" in i.value for i in at.info)


def test_a_run_whose_worker_died_says_so_and_resumes_from_its_last_round(page_env, monkeypatch):
    real_build = training.build_process
    killing = {}

    def build_killing(*args):  # the real round, with the TFF worker killed while it runs
        return killing.setdefault("process", KillingProcess(real_build(*args)))

    monkeypatch.setattr(training, "build_process", build_killing)
    at = train(open_page(), rounds=2)
    [error] = at.error
    assert "round 1 failed in the TFF worker" in error.value
    assert killing["process"].kills >= 1

    monkeypatch.setattr(training, "build_process", real_build)
    at.button(key="resume").click().run()
    wait_for_run(at)
    [done] = at.success
    assert done.value.startswith("Trained 2 rounds in")
    assert chart_traces(at)["Accuracy"]["held-out speeches"] == [0, 1, 2]
    assert len(at.code) == 2  # the fine-tuned model writes now


def test_an_unreadable_base_model_is_named_and_the_page_still_draws(
    page_env, tmp_path, monkeypatch
):
    from fedtext.model.weights import base_model_dir

    broken = tmp_path / "broken-model"
    shutil.copytree(base_model_dir(), broken)
    (broken / "weights.npz").write_bytes(b"not a zip file")
    monkeypatch.setenv("FEDTEXT_BASE_MODEL", str(broken))
    at = open_page()
    [error] = at.error
    assert error.value.startswith("The base model cannot be loaded: unreadable weights file")
    assert "\n" not in error.value and "Traceback" not in error.value
    assert not at.code  # no text from a model that is not there
    assert at.multiselect(key="client_ids").value  # the clients' side works as ever
    at.button(key="train").click().run()
    deadline = time.monotonic() + 60
    while not any("cannot be loaded" in e.value for e in at.error[1:]):
        assert time.monotonic() < deadline, [e.value for e in at.error]
        time.sleep(0.5)
        at.run()
    assert not at.exception


def test_a_link_opens_its_setup_and_names_what_it_ignored(page_env):
    at = open_page(
        {
            "clients": "HAMLET_HAMLET,NOT_A_CLIENT",
            "rounds": "500",
            "server": "adam",
            "client_lr": "0.05",
            "batches": "x",
        }
    )
    assert at.multiselect(key="client_ids").value == ["HAMLET_HAMLET"]
    assert at.number_input(key="rounds").value == links.LIMITS.max_rounds
    assert at.radio(key="server_optimizer").value == "adam"
    assert at.select_slider(key="client_learning_rate").value == 0.03
    warnings = " ".join(w.value for w in at.warning)
    assert "NOT_A_CLIENT" in warnings and "batches='x'" in warnings
    at.number_input(key="rounds").set_value(3).run()
    assert at.query_params["rounds"] == ["3"]
    assert at.query_params["clients"] == ["HAMLET_HAMLET"]


# ---------------------------------------------------------------- the pure helpers behind it


def test_setup_round_trips_through_a_link():
    setup = {
        **links.DEFAULT_SETUP,
        "client_ids": ["A", "B"],
        "rounds": 3,
        "server_optimizer": "adam",
        "server_learning_rate": 0.01,
        "seed": 7,
        "client_optimizer": "adam",
        "clip_norm": 0.0,
        "batch_size": 32,
        "weighting": "uniform",
        "noise_multiplier": 0.3,
        "dp_clipping": "fixed",
        "dp_clip": 0.03,
    }
    params = links.setup_to_params(setup)
    assert params == {
        "clients": "A,B",
        "rounds": "3",
        "server": "adam",
        "server_lr": "0.01",
        "seed": "7",
        "client": "adam",
        "clip": "0",
        "batch": "32",
        "weighting": "uniform",
        "noise": "0.3",
        "dp_clipping": "fixed",
        "dp_clip": "0.03",
    }
    assert links.setup_from_params(params, {"A", "B"}) == (setup, [])
    assert links.setup_to_params(links.DEFAULT_SETUP) == {}  # the default link is bare
    # A hand-made link asking for noise with weighted averaging gets the uniform weighting
    # that differential privacy needs; a negative noise is refused.
    setup, problems = links.setup_from_params({"noise": "1", "weighting": "weighted"}, {"A"})
    assert setup["noise_multiplier"] == 1.0 and setup["weighting"] == "uniform" and not problems
    setup, problems = links.setup_from_params({"noise": "-1"}, {"A"})
    assert setup["noise_multiplier"] == 0.0 and problems == [
        "the link's noise='-1' is not a positive number"
    ]


def client(cid: str, chars: int, speeches: int = 10) -> ClientInfo:
    return ClientInfo(cid, "Play", cid, speeches, 1, chars, 100)


def test_averaging_shares_follow_sequences_trained_capped_by_batches():
    small, big = client("small", 2 * 101 - 10), client("big", 100_000)
    assert links.sequences_per_round(small, batches_per_client=1, batch_size=8) == 2
    assert links.sequences_per_round(big, batches_per_client=1, batch_size=8) == 8
    assert links.averaging_shares([small, big], 1, 8) == {"small": 0.2, "big": 0.8}
    assert links.averaging_shares([small, big], 5, 8)["big"] == 40 / 42
    assert links.averaging_shares([small, big], 1, 64)["big"] == 64 / 66


def test_averaging_shares_count_what_the_engine_trains_on(client_data, tiny_model_dir):
    from fedtext.learning.training import FederatedTrainer
    from fedtext.text.plays import load_clients

    ids = ("KING_LEAR_FOOL", "HAMLET_HAMLET", "ALL_S_WELL_THAT_ENDS_WELL_BOTH")
    known = {c.client_id: c for c in load_clients()}
    trainer = FederatedTrainer(
        FederatedConfig(client_ids=ids, batches_per_client=60, batch_size=16),
        *client_data,
        tiny_model_dir,
    )
    for cid, batches in zip(ids, trainer.client_datasets(1, ids), strict=True):
        rows = sum(int(x.shape[0]) for x, _ in batches)
        assert links.sequences_per_round(known[cid], batches_per_client=60, batch_size=16) == rows


def test_quick_picks():
    clients = [client("a", 10), client("b", 30), client("c", 20)]
    assert links.pick_biggest(clients, 2) == ["b", "c"]
    assert links.pick_random(clients, 5, seed=0) == ["a", "b", "c"]  # all there are
    many = [client(f"c{i:02d}", i) for i in range(30)]
    draws = [links.pick_random(many, 3, seed=seed) for seed in range(5)]
    assert all(
        len(d) == 3 and d == sorted(d) and set(d) <= {c.client_id for c in many} for d in draws
    )
    assert len({tuple(d) for d in draws}) > 1  # random, not the first three
    assert draws[0] == links.pick_random(many, 3, seed=0)
    assert links.pick_play(clients, "Play") == ["b", "c", "a"]


def test_accuracy_figure_has_its_reference_lines_and_earlier_runs():
    history = [RoundResult(0, 3.0, 0.25), RoundResult(1, 2.5, 0.3, 2.6, 0.28)]
    fig = plots.figure(history, "accuracy", rounds=5, earlier=[("run 1", history)])
    lines = sorted(round(shape.y0, 4) for shape in fig.layout.shapes)
    assert lines == [round(1 / 86, 4), 0.25, 0.569]
    assert [t.name for t in fig.data] == [
        "run 1 (held-out)",
        "training (clients' own lines)",
        "held-out speeches",
    ]
    assert fig.layout.xaxis.range == (-0.3, 5.3)
    with pytest.raises(ValueError):
        plots.figure(history, "perplexity")


def test_data_figure_marks_clients_the_tutorial_would_drop():
    clients = [client("tiny", 50), client("big", 5000)]
    letters = {"tiny": plots.letter_shares(["aaab"]), "big": plots.letter_shares(["abc"])}
    fig = plots.data_figure(clients, {"tiny": 0.1, "big": 0.9}, letters)
    bars, heat = fig.data
    assert list(bars.x) == [50, 5000]  # biggest at the top of the chart
    assert bars.marker.color[0] != bars.marker.color[1]  # tiny is under one tutorial batch
    assert len(heat.z) == 2 and len(heat.z[0]) == 26


def test_the_pages_modules_import_no_tensorflow():
    """The page draws while TensorFlow loads: every module app.py and its ui/ parts import at
    their top must leave TensorFlow unloaded."""
    import ast
    import contextlib
    import importlib.util
    import subprocess
    import sys

    modules = set()
    for path in (APP, *sorted((APP.parent / "ui").glob("*.py"))):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module in ("fedtext", "ui"):
                modules |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module.startswith(("fedtext.", "ui.")):
                modules.add(node.module)
                for alias in node.names:  # `from fedtext.text import style`: a module too
                    with contextlib.suppress(ModuleNotFoundError):
                        if importlib.util.find_spec(f"{node.module}.{alias.name}"):
                            modules.add(f"{node.module}.{alias.name}")
    assert {"fedtext.service.backend", "fedtext.text.style", "ui.compare", "ui.train"} <= modules
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {sorted(modules)!r}]; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_federated') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=APP.parent, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("run_id", ["abcdefghijklmnopqrstuvwx", "../../etc/passwd", "x" * 300])
def test_a_missing_or_malformed_run_link_gives_a_message(page_env, run_id):
    at = open_page({"run": run_id})
    assert not at.exception
    assert any("not stored here" in w.value for w in at.warning), [w.value for w in at.warning]
    assert "run" not in at.query_params  # the link no longer names it


def test_the_same_settings_are_one_run_and_come_back_stored_or_afresh(page_env):
    same = dict(rounds=2, seed=7)
    first = train_pressed(open_page(), **same)
    second = train_pressed(open_page(), **same)  # while the first run trains: it joins
    deadline = time.monotonic() + 240
    while not (first.session_state["run_id"] and second.session_state["run_id"]):
        assert time.monotonic() < deadline, "no run for the pages"  # the engine still loads
        time.sleep(0.5)
        first.run()
        second.run()
    run_id = first.session_state["run_id"]
    assert second.session_state["run_id"] == run_id
    wait_for_run(first)
    [done] = wait_for_run(second).success
    assert done.value.startswith("Trained 2 rounds in")

    late = train_pressed(open_page(), **same)  # trained before: at once, labelled as stored
    assert late.session_state["run_id"] == run_id and late.session_state["pending"] is None
    assert any(i.value.startswith("Stored run: these clients") for i in late.info)
    assert late.success[0].value == done.value and len(late.code) == 2
    late.button(key="afresh").click().run(timeout=240)
    [again] = wait_for_run(late).success
    assert late.session_state["run_id"] not in ("", run_id)  # trained anew
    assert not any(i.value.startswith("Stored run") for i in late.info)
    assert again.value.startswith("Trained 2 rounds in")


def train_pressed(at: AppTest, **settings) -> AppTest:
    """Set the clients and settings, press Train; returns without waiting for the run."""
    at.multiselect(key="client_ids").set_value(CLIENTS)
    for key, value in {"batches_per_client": 1, **settings}.items():
        at.number_input(key=key).set_value(value)
    at.button(key="train").click().run(timeout=240)
    assert not at.exception, at.exception
    return at
