"""A model per character on the tiny model and the real plays: fine-tuning on a character's lines
lowers the loss on its held-out speeches, the result is written as a model directory, and TFF's
personalization evaluation gives each client the same figures Keras does."""

import dataclasses
import itertools

import pytest

from fedtext.learning.personalisation import (
    ClientGain,
    PersonaliseConfig,
    evaluate_personalisation,
    fine_tune,
    personalise,
)
from fedtext.learning.records import gains_csv

FOOL, KENT, EDMUND = "KING_LEAR_FOOL", "KING_LEAR_KENT", "KING_LEAR_EDMUND"
# Plain SGD at test_training's rate for the tiny model; no clip, so every step counts in full.
CONFIG = PersonaliseConfig(steps=12, learning_rate=1.0, clip_norm=0.0, seed=5)


@pytest.fixture(scope="module")
def fool(client_data, tiny_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("fool-model")
    return personalise(tiny_model_dir, FOOL, output, config=CONFIG, client_data=client_data), output


def test_personalising_lowers_the_loss_on_the_characters_held_out_speeches(
    fool, client_data, tiny_model_dir
):
    from fedtext.model.evaluation import evaluate_snippets
    from fedtext.model.keras_model import compile_for_evaluation, load_model

    result, output = fool
    _, test = client_data
    assert result.client_id == FOOL and result.steps == CONFIG.steps
    base, _ = load_model(tiny_model_dir)
    compile_for_evaluation(base)
    held_out = test.create_tf_dataset_for_client(FOOL)
    assert (result.global_loss, result.global_accuracy) == pytest.approx(
        evaluate_snippets(base, held_out), rel=1e-5
    )
    assert result.personal_loss < result.global_loss - 0.1
    assert result.personal_accuracy > result.global_accuracy
    # The directory `fedtext generate --model` reads: float16 weights beside model.json.
    stored, _ = load_model(output)
    compile_for_evaluation(stored)
    assert evaluate_snippets(stored, held_out) == pytest.approx(
        (result.personal_loss, result.personal_accuracy), rel=1e-2
    )


def test_the_same_seed_gives_the_same_model(fool, client_data, tiny_model_dir):
    result, _ = fool
    again = personalise(
        tiny_model_dir, FOOL, steps=CONFIG.steps, config=CONFIG, client_data=client_data
    )
    assert (again.personal_loss, again.personal_accuracy) == pytest.approx(
        (result.personal_loss, result.personal_accuracy), rel=1e-6
    )


def test_another_seed_gives_another_model(fool, client_data, tiny_model_dir):
    """The seed shuffles the character's lines: a fine-tune that ignored it would pass the test
    above, not this one."""
    result, _ = fool
    other = personalise(
        tiny_model_dir,
        FOOL,
        steps=CONFIG.steps,
        config=dataclasses.replace(CONFIG, seed=CONFIG.seed + 1),
        client_data=client_data,
    )
    assert other.global_loss == pytest.approx(result.global_loss, rel=1e-6)  # same start
    assert other.personal_loss != pytest.approx(result.personal_loss, rel=1e-4)


def test_an_unknown_character_is_refused_before_training(client_data, tiny_model_dir, tmp_path):
    from fedtext.text.plays import DataError

    with pytest.raises(DataError, match="unknown client id"):
        personalise(tiny_model_dir, "KING_LEAR_NOBODY", tmp_path / "out", client_data=client_data)
    assert not (tmp_path / "out").exists()


def test_tffs_personalization_evaluation_gives_each_client_its_own_figures(
    client_data, tiny_model_dir
):
    """TFF returns the clients' metrics in a reservoir sample's order; each row must come back
    to its own client, with the figures Keras computes for that client alone."""
    from fedtext.model.keras_model import load_model

    train, test = client_data
    model, model_config = load_model(tiny_model_dir)
    weights = model.get_weights()
    ids = [KENT, FOOL, EDMUND]
    gains = evaluate_personalisation(weights, model_config, ids, train, test, CONFIG)
    assert [g.client_id for g in gains] == ids
    for gain in gains:
        keras = fine_tune(weights, model_config, gain.client_id, train, test, CONFIG)
        assert (gain.global_loss, gain.global_accuracy) == pytest.approx(
            (keras.global_loss, keras.global_accuracy), rel=1e-4
        )
        assert (gain.personal_loss, gain.personal_accuracy) == pytest.approx(
            (keras.personal_loss, keras.personal_accuracy), rel=1e-3
        )
        assert gain.personal_loss < gain.global_loss
    # The random tiny model scores every client about alike; the personalised ones differ by
    # more than twice the tolerance above, so a row given to the wrong client would fail.
    personal = sorted(g.personal_loss for g in gains)
    assert all(b - a > 2e-3 * b for a, b in itertools.pairwise(personal))


def test_gains_csv():
    lines = gains_csv([ClientGain(FOOL, 4.4, 0.10, 4.1, 0.125)]).splitlines()
    assert lines[0] == "client_id,global_loss,global_accuracy,personal_loss,personal_accuracy,gain"
    assert lines[1] == f"{FOOL},4.4,0.1,4.1,0.125,2.5"
