"""The page's shared service without Streamlit: a real engine (TensorFlow, TFF, the tiny model),
its queue, the run a link points to, and the words the page shows about a run (ui/words.py)."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from fedtext.config import FederatedConfig
from fedtext.learning.records import RoundResult
from fedtext.presets import PRESETS, WHOLE_FEDERATION_PRESETS
from fedtext.service import backend, links
from fedtext.service.jobs import JobState
from fedtext.service.store import RunStore
from fedtext.text.plays import ClientInfo
from tests.conftest import wait_for
from ui import words

PROGRESS = re.compile(
    r"Waiting for the training queue: \d+ run\(s\) ahead|Round 0: evaluating the base model"
    r"|Round \d+ of 2 running"
)


def config(**overrides) -> FederatedConfig:
    settings = dict(client_ids=("KING_LEAR_FOOL",), rounds=2, batches_per_client=1)
    return FederatedConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tmp_path_factory):
    engine = backend.Engine(tiny_model_dir, tmp_path_factory.mktemp("server-runs"))
    engine.page_drawn.set()
    assert engine.ready.wait(600), engine.step
    assert not engine.error, engine.error
    return engine


def test_a_run_is_followed_round_by_round_and_found_again_from_its_link(engine):
    run_id, why, how = backend.submit(engine, config(), "alice", page_open=None)
    assert run_id and not why and how == "new"
    lines, rounds_seen, redraws = [], 0, 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        progress = backend.follow(engine, run_id, rounds_seen)
        if progress is None:  # a round landed, or the run ended: the page redraws
            redraws += 1
            job = engine.job(run_id)
            if job.finished:
                break
            rounds_seen = len(job.history)
            continue
        fraction, text = progress
        assert 0.0 <= fraction <= 1.0
        lines.append(text)
        time.sleep(0.05)
    assert lines and all(PROGRESS.match(line) for line in lines), lines
    assert redraws >= 2  # at least one round landed before the end

    run, why = backend.find_run(run_id, engine.job(run_id), engine.store.load)
    assert not why and run.trained and not run.live
    assert [r.round_num for r in run.history] == [0, 1, 2]
    kind, text = words.describe(run)
    assert kind == "success" and text.startswith("Trained 2 rounds in")
    # After a restart the queue has forgotten the job; the link still finds the stored run.
    again, _ = backend.find_run(run_id, None, engine.store.load)
    assert again.history == run.history and again.trained


def test_a_second_run_from_one_visitor_is_refused_with_a_message(engine):
    first = backend.submit(engine, config(seed=11), "bob", page_open=None).run_id
    second, why, _ = backend.submit(engine, config(seed=12), "bob", page_open=None)
    assert not second and why == (
        "Cannot start training: you already have a training run queued or running"
    )
    _, why, _ = backend.submit(engine, config(rounds=links.LIMITS.max_rounds + 1), "eve", None)
    assert why.startswith("Cannot start training: rounds is limited to")
    engine.queue.stop(first)
    wait_for(engine.job(first))
    assert backend.request_resume(engine, first) == (
        "This run cannot be resumed any more: train it again."
    )


def test_a_round_run_again_after_a_lost_worker_shows_in_the_progress_line(engine):
    run_id = backend.submit(engine, config(rounds=2, seed=13), "frank", page_open=None).run_id
    wait_for(engine.job(run_id))
    notice = "round 2 failed: TFF worker 10.0.0.7:5001 stopped answering; running it again on …"
    running = dataclasses.replace(
        engine.job(run_id), state=JobState.RUNNING, history=engine.job(run_id).history[:2]
    )
    _, before = backend.progress_text(running, engine.queue)
    assert before.startswith("Round 2 of 2 running") and notice not in before
    running.notices = [notice]
    assert backend.progress_text(running, engine.queue)[1] == f"{before} · {notice}"


def test_the_baseline_is_queued_once_and_lands_beside_the_run(engine):
    run_id = backend.submit(engine, config(rounds=1, seed=14), "carol", page_open=None).run_id
    wait_for(engine.job(run_id))
    assert backend.request_baseline(engine, run_id, "carol") == ""
    job = engine.job(run_id)
    assert backend.request_baseline(engine, run_id, "carol").startswith("Cannot run the baseline")
    _, text = backend.progress_text(job, engine.queue)
    assert text.startswith(("Centralised baseline:", "Waiting for the training queue"))
    wait_for(job)
    run, _ = backend.find_run(run_id, None, engine.store.load)
    assert len(run.baseline) > 1
    assert "centralised" in words.baseline_caption(run.history, run.baseline)
    assert backend.request_baseline(engine, run_id, "carol") == (
        "Cannot run the baseline: this run has its baseline already"
    )


def test_a_model_per_character_is_made_once_and_kept_with_the_run(engine):
    from fedtext.model.generation import load_generator

    fool = "KING_LEAR_FOOL"
    run_id = backend.submit(engine, config(rounds=1, seed=15), "erin", page_open=None).run_id
    wait_for(engine.job(run_id))
    assert backend.request_personal_model(engine, run_id, "erin", "HAMLET_HAMLET") == (
        "Cannot make that model: HAMLET_HAMLET did not train this model"
    )
    assert backend.request_personal_model(engine, run_id, "erin", fool) == ""
    job = engine.job(run_id)
    _, text = backend.progress_text(job, engine.queue)
    assert text.startswith(
        ("Fine-tuning a model for KING_LEAR_FOOL", "Waiting for the training queue")
    )
    wait_for(job, timeout=300)
    run, _ = backend.find_run(run_id, None, engine.store.load)  # as stored
    mine = run.personal[fool]
    assert mine.steps == 60 and mine.personal_loss < mine.global_loss  # its own lines, learnt
    assert [g.client_id for g in run.gains] == [fool] and run.gains[0].steps == 20
    own = load_generator(engine.store.personal_dir(run_id, fool))
    assert own.generate("KING LEAR:", 20) != engine.base.generate("KING LEAR:", 20)
    assert backend.request_personal_model(engine, run_id, "erin", fool) == (
        f"Cannot make that model: this run has a model for {fool} already"
    )


def test_a_stored_run_the_queue_has_forgotten_gets_its_baseline(engine, tiny_model_dir):
    from fedtext.model.weights import load_config, load_weights_arrays

    run_id = "forgotten-run-abcdefghijkl"  # stored before a restart: not in the queue
    history = [RoundResult(0, 4.4, 0.05), RoundResult(1, 4.3, 0.06, cpu_seconds=2.0)]
    engine.store.save(
        run_id,
        config(rounds=1),
        history,
        load_weights_arrays(tiny_model_dir),
        load_config(tiny_model_dir),
    )
    assert engine.job(run_id) is None
    assert backend.request_baseline(engine, run_id, "dave") == ""
    wait_for(engine.job(run_id))
    run, _ = backend.find_run(run_id, None, engine.store.load)
    assert run.history == history and len(run.baseline) > 1


def test_thirty_visitors_with_the_same_settings_are_none_refused_and_share_one_run(engine):
    same = config(rounds=2, seed=30)
    waiting = len(engine.queue._waiting)
    # Each page is open throughout (a test's stand-in for Streamlit's check of its session).
    got = [backend.submit(engine, same, f"pupil-{i}", lambda: True) for i in range(30)]
    assert [why for _, why, _ in got] == [""] * 30  # the queue holds 20: joiners take no slot
    assert {run_id for run_id, _, _ in got} == {got[0].run_id}
    assert [how for _, _, how in got] == ["new"] + ["joined"] * 29
    job = engine.job(got[0].run_id)
    assert len(job.followers) == 30 and len(engine.queue._waiting) <= waiting + 1
    wait_for(job)
    assert job.state is JobState.DONE and len(job.history) == 3


def test_settings_stored_before_come_back_without_training_unless_asked_afresh(engine):
    same = config(rounds=1, seed=31)
    first = backend.submit(engine, same, "gina", lambda: True)
    wait_for(engine.job(first.run_id))
    assert backend.stored_run(engine, config(rounds=1, seed=32)) is None
    again = backend.submit(engine, same, "hal", lambda: True)
    assert again == (first.run_id, "", "stored")
    run, _ = backend.find_run(again.run_id, engine.job(again.run_id), engine.store.load)
    assert run.trained and not run.live and run.config == same and run.created > 0
    assert not any(j.owner == "hal" for j in engine.queue._jobs.values())  # nothing trained
    fresh = backend.submit(engine, same, "hal", lambda: True, fresh=True)
    assert fresh.how == "new" and fresh.run_id != first.run_id
    wait_for(engine.job(fresh.run_id))
    retrained, _ = backend.find_run(fresh.run_id, None, engine.store.load)
    assert [r.eval_loss for r in retrained.history] == pytest.approx(
        [r.eval_loss for r in run.history], rel=1e-4
    )
    # The newest stored run with those settings is the one a visitor gets from now on.
    assert backend.stored_run(engine, same).run_id == fresh.run_id


@pytest.mark.parametrize("run_id", ["abcdefghijklmnopqrstuvwx", "../../etc/passwd", "x" * 300])
def test_a_link_to_no_stored_run_says_so(tmp_path, run_id):
    run, why = backend.find_run(run_id, None, RunStore(tmp_path).load)
    assert run is None and why.startswith("The run in this link is not stored here")


def test_a_link_to_a_damaged_run_says_it_cannot_be_read(tmp_path, tiny_model_dir):
    from fedtext.model.weights import load_config, load_weights_arrays

    store = RunStore(tmp_path)
    history = [RoundResult(0, 2.0, 0.3), RoundResult(1, 1.9, 0.31)]
    store.save(
        "abcdefghijklmnopqrstuvwx",
        config(rounds=1),
        history,
        load_weights_arrays(tiny_model_dir),
        load_config(tiny_model_dir),
    )
    (store.path("abcdefghijklmnopqrstuvwx") / "weights.npz").write_bytes(b"not a zip")
    run, why = backend.find_run("abcdefghijklmnopqrstuvwx", None, store.load)
    assert run is None and why.startswith("The run in this link cannot be read:")


def test_how_a_run_ended_is_told_by_how_far_it_got():
    history = [RoundResult(0, 2.0, 0.30), RoundResult(1, 1.9, 0.31, seconds=4.0)]

    def view(rounds_run, **fields):
        return backend.RunView("r", config(rounds=3), history[: rounds_run + 1], [], **fields)

    assert words.describe(view(0)) == ("warning", "No round finished (stopped)")
    kind, text = words.describe(view(1, message="stopped after round 1"))
    assert kind == "warning" and text.startswith("Ended after round 1 of 3; the model so far")
    kind, text = words.describe(view(1, message="the TFF worker died", failed=True))
    assert kind == "error" and text == ("the TFF worker died; held-out accuracy 30.0% → 31.0%")
    finished = backend.RunView("r", config(rounds=1), history, [])
    assert words.describe(finished) == (
        "success",
        "Trained 1 round in 4 s; held-out accuracy 30.0% → 31.0%",
    )


def test_a_round_is_explained_with_the_setup_s_own_numbers():
    setup = {**links.preset_setup("tutorial"), "clients_per_round": 0}
    steps = words.round_steps(setup, {"A": 0.25, "B": 0.75})
    text = " ".join(t for _, t in steps)
    assert "go to 2 of the chosen" in text
    assert "5 steps on batches of 8" in text and "sgd at 0.5" in text
    assert "up to 75% here" in text


@pytest.mark.parametrize(
    ("averaging", "title", "says"),
    [
        ({"weighting": "uniform"}, "one vote each", "the same say (50% each)"),
        (
            {"weighting": "uniform", "noise_multiplier": 0.3},
            "clipped and noised",
            "noise of 0.3 times the clip",
        ),
    ],
)
def test_step_4_and_the_shares_follow_the_averaging(averaging, title, says):
    """Uniform and DP averaging give every character the same say: the shares and step 4 say so,
    not "weighted by data ... more text, more say"."""
    small, big = (
        ClientInfo(cid, "Play", cid, 10, 1, chars, 100)
        for cid, chars in (("small", 2 * 101 - 10), ("big", 100_000))
    )
    setup = {**links.preset_setup("tutorial"), "clients_per_round": 0, **averaging}
    shares = links.averaging_shares(
        [small, big], 5, 8, setup["weighting"], setup["noise_multiplier"]
    )
    assert shares == {"small": 0.5, "big": 0.5}
    weighted = links.averaging_shares([small, big], 5, 8, "weighted", 0.0)
    assert weighted["big"] == 40 / 42
    step_title, text = words.round_steps(setup, shares)[3]
    assert title in step_title and says in text
    assert "weighted by data" not in step_title and "more say" not in text


def test_every_preset_has_a_label_and_every_setting_a_text():
    # The whole federation's presets are the command line's: the page trains chosen clients.
    page_presets = set(PRESETS) - set(WHOLE_FEDERATION_PRESETS)
    assert set(words.PRESET_LABELS) == {"defaults", *page_presets}
    assert set(words.SETTING_TEXT) == set(links.PARAMS) - {"client_ids"}
