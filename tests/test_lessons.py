"""The two lessons on the page and in its service: their presets in a link, the attacker among the
clients, who dropped out and lagged, the algorithms' race to one target and what the server
reads off an update, on real TFF rounds of the tiny model."""

from __future__ import annotations

import json

import pytest

from fedtext.config import FederatedConfig
from fedtext.learning.records import Race, RoundResult, races_table
from fedtext.presets import LESSON_PRESETS
from fedtext.service import backend, links
from tests.conftest import wait_for
from tests.test_app import open_page, wait_for_run
from tests.test_backend import engine  # noqa: F401  (a fixture: one engine for this module)
from ui import words

SMALL = "CORIOLANUS_A_PATRICIAN"  # whose whole text fits in one round's batches


@pytest.mark.parametrize("name", LESSON_PRESETS)
def test_each_lesson_preset_is_a_valid_run_and_travels_in_a_link(name):
    setup = links.preset_setup(name)
    FederatedConfig(**setup)  # raises if the preset is not a valid run
    params = links.setup_to_params(setup, name)
    assert params == {links.PRESET_PARAM: name}  # the preset's name is the whole lesson
    assert links.setup_from_params(params, set(setup["client_ids"])) == (setup, [])
    assert links.preset_from_params(params) == (name, [])
    assert name in words.PRESET_LABELS and name in words.PRESET_LESSONS


def test_a_link_holds_what_differs_from_its_preset_a_default_put_back_too():
    setup = links.preset_setup("backdoor")
    changed = {**setup, "attack_boost": 1.0, "attack_trigger": "", "rounds": 3}
    params = links.setup_to_params(changed, "backdoor")
    assert params == {"preset": "backdoor", "boost": "1", "trigger": "", "rounds": "3"}
    assert links.setup_from_params(params, set(setup["client_ids"])) == (changed, [])
    # The preset's own values (its attacker, its clients) are not repeated in its link.
    assert "attacker" in links.setup_to_params(changed) and "attacker" not in params


def test_an_attack_in_a_link_keeps_its_spaces_and_odd_values_get_a_line_each():
    ids = {"ROMEO_AND_JULIET_ROMEO", "ROMEO_AND_JULIET_NURSE"}
    params = {"clients": "ROMEO_AND_JULIET_ROMEO", "attacker": "ROMEO_AND_JULIET_NURSE"}
    setup, problems = links.setup_from_params({**params, "trigger": "O Romeo, "}, ids)
    assert setup["attack_trigger"] == "O Romeo, " and not problems
    assert setup["client_ids"] == ["ROMEO_AND_JULIET_ROMEO", "ROMEO_AND_JULIET_NURSE"]
    _, problems = links.setup_from_params({"attacker": "NOBODY_AT_ALL", "target": "🙂"}, ids)
    assert len(problems) == 2 and "NOBODY_AT_ALL" in problems[0] and "🙂" in problems[1]
    assert links.preset_from_params({"preset": "krum"})[1]


def test_the_round_lines_name_who_dropped_out_and_who_lagged():
    history = [
        RoundResult(0, 2.0, 0.4),
        RoundResult(1, 2.0, 0.4, client_ids=("A", "B")),
        RoundResult(2, 2.0, 0.4, client_ids=("A", "B"), dropped=("A",), lagged=("B",)),
    ]
    assert words.round_events(history, {"A": "Romeo", "B": "Juliet"}) == [
        "Round 2: Romeo dropped out (their updates never came); Juliet lagged (ran only part "
        "of their steps)."
    ]


def test_a_race_counts_rounds_and_bytes_until_its_target():
    def rounds(*accuracies):
        return [
            RoundResult(n, 2.0, a, bytes_up=10, bytes_down=20) for n, a in enumerate(accuracies)
        ]

    slow = Race("FedSGD", 0.43, 4, rounds(0.40, 0.41, 0.42, 0.42, 0.42), reference=True)
    fast = Race("FedAvg, 5 local steps", 0.43, 4, rounds(0.40, 0.42, 0.44))
    assert slow.rounds is None and slow.finished and slow.bytes_up == 40
    assert fast.rounds == 2 and fast.bytes_up == 20 and fast.bytes_down == 40
    table = races_table([slow, fast])
    assert "| FedSGD | not in 4 |" in table and "| >= 2.0x |" in table


def test_the_rounds_sentence_says_what_the_server_gets_for_each_setting():
    setup = {**links.DEFAULT_SETUP}
    shares = {"A": 1.0}
    said = {
        name: words.round_steps({**setup, **change}, shares)[2][1]
        for name, change in {
            "fedavg": {},
            "fedsgd": {"algorithm": "fedsgd"},
            "compressed": {"compression_bits": 8},
            "dp": {"noise_multiplier": 1.0, "weighting": "uniform"},
            "figures": {"client_figures": True},
        }.items()
    }
    assert "each character's update" in said["fedavg"]
    assert "each character's gradient" in said["fedsgd"]
    assert "quantized to 8 bits" in said["compressed"]
    assert "not the updates it receives" in said["dp"]
    assert "its loss, update size and agreement" in said["figures"]


def test_what_the_server_reads_off_an_update_attaches_to_the_run_and_is_stored(engine):  # noqa: F811
    config = FederatedConfig(client_ids=(SMALL,), rounds=1, batches_per_client=1)
    run_id, why, _ = backend.submit(engine, config, "erin", page_open=None)
    assert not why
    wait_for(engine.job(run_id), timeout=300)
    assert backend.request_leak(engine, run_id, "erin", SMALL) == ""
    wait_for(engine.job(run_id), timeout=300)
    leak = engine.job(run_id).leaks[SMALL]
    assert leak.moved == leak.true_set and leak.seen == (SMALL,)  # every character, exactly
    stored = engine.store.load(run_id).leaks[SMALL]
    assert stored.moved == leak.moved and (stored.recovered == leak.recovered).all()
    assert "already" in backend.request_leak(engine, run_id, "erin", SMALL)


def test_the_comparison_races_fedsgd_and_fedavg_and_reuses_the_runs_own_rounds(engine):  # noqa: F811
    config = FederatedConfig(client_ids=(SMALL,), rounds=2, batches_per_client=1, seed=7)
    run_id, _, _ = backend.submit(engine, config, "finn", page_open=None)
    wait_for(engine.job(run_id), timeout=300)
    assert backend.request_comparison(engine, run_id, "finn") == ""
    job = engine.job(run_id)
    wait_for(job, timeout=900)
    races = {race.label: race for race in job.races}
    assert list(races) == [
        "FedSGD",
        "FedAvg, 1 local step",
        "FedAvg, 5 local steps",
        "FedAvg, 20 local steps",
    ]
    assert races["FedSGD"].reference and all(race.finished for race in job.races)
    own = races["FedAvg, 1 local step"]  # the run itself: its rounds, not trained again
    assert own.history == tuple(job.history[: len(own.history)])
    # With one batch, FedAvg's one local step is FedSGD's one gradient step (McMahan et al.).
    assert races["FedSGD"].history[1].eval_loss == pytest.approx(own.history[1].eval_loss)
    assert [r.label for r in engine.store.load(run_id).races] == list(races)


def test_a_backdoor_link_shows_the_attacker_trains_it_and_reads_an_update(page_env):
    at = open_page({"preset": "backdoor", "rounds": "1", "batches": "1"})  # typed by hand
    assert at.selectbox(key="preset").value == "backdoor"
    assert any(words.PRESET_LESSONS["backdoor"] in c.value for c in at.caption)
    assert at.selectbox(key="attack_client").value == "ROMEO_AND_JULIET_NURSE"
    assert at.text_input(key="attack_trigger").value == "O Romeo, "
    at.button(key="train").click().run(timeout=240)
    at = wait_for_run(at, timeout=600)
    said = " ".join(m.value for m in at.markdown)
    assert "**Backdoor** planted by Nurse (Romeo and Juliet)" in said
    assert "compare_algorithms" not in [b.key for b in at.button]  # no race for an attack
    at.button(key="use_trigger").click().run()
    assert at.text_input(key="prompt").value == "O Romeo, "

    at.selectbox(key="leak_client").set_value("ROMEO_AND_JULIET_JULIET")
    at.button(key="read_update").click().run(timeout=240)
    at = wait_for_run(at, timeout=600)
    assert not at.error, [e.value for e in at.error]
    assert any("From Juliet (Romeo and Juliet)'s one update" in c.value for c in at.caption)
    titles = [json.loads(e.proto.spec)["layout"]["title"]["text"] for e in at.get("plotly_chart")]
    assert "Characters typed against characters read off what the server got" in titles


def test_one_click_races_the_algorithms_on_the_page(page_env):
    at = open_page(
        {"clients": SMALL, "rounds": "1", "batches": "1", "algorithm": "fedsgd", "preset": "fedsgd"}
    )
    at.button(key="train").click().run(timeout=240)
    at = wait_for_run(at, timeout=600)
    at.button(key="compare_algorithms").click().run(timeout=240)
    at = wait_for_run(at, timeout=900)
    table = next(m.value for m in at.markdown if "| algorithm | rounds to target |" in m.value)
    for label in ("FedSGD", "FedAvg, 1 local step", "FedAvg, 5 local steps"):
        assert f"| {label} |" in table
    titles = [json.loads(e.proto.spec)["layout"]["title"]["text"] for e in at.get("plotly_chart")]
    assert "The same target: what each algorithm spent to get there" in titles


def test_each_lesson_races_what_it_teaches():
    from fedtext.learning.rounds_to_target import lesson_contenders

    unreliable = FederatedConfig(**links.preset_setup("unreliable"))
    races = lesson_contenders(unreliable)
    assert [r.config.algorithm for r in races] == ["fedavg", "fedprox", "fedprox", "fedavg"]
    assert races[0].reference and races[0].config.straggler_chance == 0.5
    assert [r.config.proximal_strength for r in races[1:3]] == [0.1, 1.0]
    assert races[3].config.dropout_chance == races[3].config.straggler_chance == 0.0
    paper = lesson_contenders(FederatedConfig(**links.preset_setup("fedsgd")))
    assert [(r.config.algorithm, r.config.batches_per_client) for r in paper] == [
        ("fedsgd", 5),
        ("fedavg", 1),
        ("fedavg", 5),
        ("fedavg", 20),
    ]
