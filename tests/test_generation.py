"""Sampling: seeded, stateless, and really from the weights it is given."""

import threading

import pytest

from fedtext.generation import TextGenerator
from fedtext.model import load_model
from fedtext.prompt import PromptError


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    model, config = load_model(tiny_model_dir)
    return TextGenerator(model.get_weights(), config), model, config


def test_same_seed_same_text_other_seed_other_text(base):
    generator, _, _ = base
    first = generator.generate("ROMEO: ", length=80, seed=3)
    assert first.startswith("ROMEO: ") and len(first) == len("ROMEO: ") + 80
    assert generator.generate("ROMEO: ", length=80, seed=3) == first
    assert generator.generate("ROMEO: ", length=80, seed=4) != first


def test_concurrent_callers_share_no_recurrent_state(base):
    generator, _, _ = base
    expected = {seed: generator.generate("Tell me ", length=60, seed=seed) for seed in range(4)}
    got = {}

    def run(seed):
        got[seed] = generator.generate("Tell me ", length=60, seed=seed)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_fine_tuned_weights_really_change_the_text(base, client_data, tiny_model_dir):
    """The tutorial's last cell sampled from a model that never received the federated weights."""
    from fedtext.config import FederatedConfig
    from fedtext.training import FederatedTrainer

    generator, _, config = base
    train, test = client_data
    trainer = FederatedTrainer(
        FederatedConfig(
            client_ids=("KING_LEAR_KING_LEAR",),
            rounds=1,
            client_learning_rate=1.0,
            batches_per_client=2,
        ),
        train,
        test,
        tiny_model_dir,
    )
    for _ in trainer.rounds():
        pass
    tuned = TextGenerator(trainer.weights, config)
    assert tuned.generate("Nothing will come ", 100, seed=0) != generator.generate(
        "Nothing will come ", 100, seed=0
    )


@pytest.mark.parametrize(
    "prompt, kwargs, message",
    [
        ("", {}, "prompt is empty"),
        ("Hello \u2603 snowman", {}, "characters the model does not know: '\u2603'"),
        ("ok", {"length": 0}, "length must be"),
        ("ok", {"temperature": 0.0}, "temperature must lie"),
        ("ok", {"temperature": float("nan")}, "temperature must lie"),
    ],
)
def test_bad_requests_get_one_line_messages(base, prompt, kwargs, message):
    generator, _, _ = base
    with pytest.raises(PromptError, match=message) as error:
        generator.generate(prompt, **kwargs)
    assert "\n" not in str(error.value)


def test_typographic_prompts_are_normalised_not_refused(base):
    generator, _, _ = base
    assert generator.generate("\u201cWhat\u2019s this?\u201d ", 10).startswith('"What\'s this?" ')
