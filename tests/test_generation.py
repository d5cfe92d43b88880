"""Sampling in NumPy: the Keras model's probabilities, seeded, stateless, without TensorFlow, and
really from the weights it is given."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from fedtext.config import ModelConfig
from fedtext.model.generation import PROMPTS_KEPT, TextGenerator, load_generator, weight_shapes
from fedtext.model.keras_model import load_model
from fedtext.model.weights import SHIPPED_MODEL_DIR, WEIGHTS_FILE, WeightsError, save_arrays
from fedtext.text.prompt import MAX_LENGTH, MAX_PROMPT, PromptError
from fedtext.text.vocab import CHARS, PAD_ID, encode

PROMPTS = ("ROMEO: ", "What of TensorFlow Federated, you ask? ", "a")


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    model, config = load_model(tiny_model_dir)
    return TextGenerator(model.get_weights(), config), model, config


def keras_log_probabilities(model, text: str, temperature: float = 1.0) -> np.ndarray:
    """The Keras model's log-probabilities of the character after `text`, padding excluded."""
    logits = model(encode(text)[np.newaxis, :]).numpy()[0, -1].astype(np.float64)
    scaled = logits / temperature
    scaled[PAD_ID] = -np.inf
    return scaled - scaled.max() - np.log(np.exp(scaled - scaled.max()).sum())


def assert_matches_keras(generator: TextGenerator, model) -> None:
    for prompt in PROMPTS:
        # After the prompt, and after 60 characters sampled from it: the states the sampler
        # itself walks through.
        for text in (prompt, generator.generate(prompt, length=60, seed=5)):
            for temperature in (1.0, 0.5):
                expected = keras_log_probabilities(model, text, temperature)
                got = generator.next_char_probabilities(text, temperature)
                assert got[PAD_ID] == 0.0
                np.testing.assert_allclose(got, np.exp(expected), rtol=1e-3, atol=1e-6)
                # Log-probabilities too, as the near-uniform tiny model's probabilities hide
                # a wrong gate; float32 rounding grows with the logits' spread.
                spread = np.ptp(expected[1:])
                np.testing.assert_allclose(np.log(got[1:]), expected[1:], atol=2e-6 * spread)


def test_next_character_probabilities_are_the_keras_models(base):
    generator, model, _ = base
    assert_matches_keras(generator, model)
    assert generator.parameter_count == model.count_params()


@pytest.mark.skipif(not (SHIPPED_MODEL_DIR / WEIGHTS_FILE).exists(), reason="no shipped model")
def test_shipped_models_probabilities_are_the_keras_models():
    model, _ = load_model(SHIPPED_MODEL_DIR)
    generator = load_generator(SHIPPED_MODEL_DIR)
    assert_matches_keras(generator, model)
    # Trained weights know how a word ends; random ones would spread this over 86 characters.
    text = 'said Mr. Pickwick, "I am very much obliged to yo'
    assert generator.next_char_probabilities(text)[encode("u")[0]] > 0.9


@pytest.mark.skipif(not (SHIPPED_MODEL_DIR / WEIGHTS_FILE).exists(), reason="no shipped model")
def test_one_blas_thread_or_several_give_the_same_bits():
    """The page and the command line may run BLAS with different thread counts; a full-size
    product is split between threads, a tiny one never is."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    generator = load_generator(SHIPPED_MODEL_DIR)
    with threadpoolctl.threadpool_limits(2):
        text = generator.generate(PROMPTS[1], 100, seed=7)
        several = generator.next_char_probabilities(text)
    with threadpoolctl.threadpool_limits(1):
        assert generator.generate(PROMPTS[1], 100, seed=7) == text
        assert np.array_equal(generator.next_char_probabilities(text), several)


def constant_model(bias: dict[str, float], config: ModelConfig) -> TextGenerator:
    """Random weights whose logits are `bias` whatever the state: a known distribution."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.3, shape).astype(np.float32) for shape in weight_shapes(config)]
    weights[4][:] = 0.0  # dense kernel: the state does not reach the logits
    weights[5][:] = -30.0
    for char, logit in bias.items():
        weights[5][encode(char)[0]] = logit
    weights[5][PAD_ID] = 10.0  # by far the likeliest id, and never to be drawn
    return TextGenerator(weights, config)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_samples_follow_softmax_over_temperature_and_never_padding(temperature):
    wanted = {"e": 0.5, "t": 0.3, "a": 0.2}
    generator = constant_model(
        {c: np.log(p) for c, p in wanted.items()}, ModelConfig(embedding_dim=4, rnn_units=16)
    )
    sampled = generator.generate("x", length=MAX_LENGTH, temperature=temperature, seed=1)[1:]
    assert len(sampled) == MAX_LENGTH  # decoding drops padding: none was drawn
    expected = np.array(list(wanted.values())) ** (1 / temperature)
    expected /= expected.sum()
    shares = [sampled.count(c) / MAX_LENGTH for c in wanted]
    np.testing.assert_allclose(shares, expected, atol=0.035)  # about 3 standard deviations
    assert set(sampled) == set(wanted)


def test_same_seed_same_text_other_seed_other_text(base):
    generator, _, _ = base
    first = generator.generate("ROMEO: ", length=80, seed=3)
    assert first.startswith("ROMEO: ") and len(first) == len("ROMEO: ") + 80
    assert set(first) <= set(CHARS)
    assert generator.generate("ROMEO: ", length=80, seed=3) == first
    assert generator.generate("ROMEO: ", length=80, seed=4) != first


def test_a_prompts_kept_state_gives_the_text_a_fresh_one_does(base):
    _, model, config = base
    fresh = TextGenerator(model.get_weights(), config).generate("To be, ", 50, seed=2)
    generator = TextGenerator(model.get_weights(), config)
    assert generator.generate("To be, ", 50, seed=2) == fresh  # computed, then kept
    assert generator.generate("To be, ", 50, seed=2) == fresh  # from the kept state
    for i in range(PROMPTS_KEPT + 5):  # "To be, " drops out
        generator.generate(f"prompt {i} ", 1)
    assert len(generator._prompts) == PROMPTS_KEPT  # memory stays bounded
    assert "To be, " not in generator._prompts
    assert generator.generate("To be, ", 50, seed=2) == fresh


def test_concurrent_callers_share_no_recurrent_state(base):
    generator, _, _ = base
    expected = {seed: generator.generate("Tell me ", length=300, seed=seed) for seed in range(8)}
    got = {}

    def run(seed):
        got[seed] = generator.generate("Tell me ", length=300, seed=seed)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_fine_tuned_weights_really_change_the_text(base, client_data, tiny_model_dir):
    """The tutorial's last cell sampled from a model that never received the federated weights.
    The page's test trains this little (one batch a client at 0.3) and expects the same seed to
    show it: on the tiny model's near-uniform logits that takes a sampler whose draws follow
    small changes. Inverting the cumulative distribution does in 9 seeds of 10; the Gumbel-max
    trick, as exact a sampler, did in 4 to 6 of 10."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer
    from fedtext.text.prompt import TUTORIAL_PROMPT

    generator, _, config = base
    train, test = client_data
    trainer = FederatedTrainer(
        FederatedConfig(
            client_ids=("KING_LEAR_FOOL", "KING_LEAR_KING_LEAR"),
            rounds=1,
            client_learning_rate=0.3,
            batches_per_client=1,
        ),
        train,
        test,
        tiny_model_dir,
    )
    for _ in trainer.rounds():
        pass
    tuned = TextGenerator(trainer.weights, config)
    differ = [
        tuned.generate(TUTORIAL_PROMPT, 200, seed=seed)
        != generator.generate(TUTORIAL_PROMPT, 200, seed=seed)
        for seed in range(10)
    ]
    assert sum(differ) >= 8, differ


@pytest.mark.parametrize(
    "prompt, kwargs, message",
    [
        ("", {}, "prompt is empty"),
        ("Hello \u2603 snowman", {}, "characters the model does not know: '\u2603'"),
        ("x" * (MAX_PROMPT + 1), {}, f"at most {MAX_PROMPT}"),
        ("ok", {"length": 0}, "length must be"),
        ("ok", {"length": MAX_LENGTH + 1}, "length must be"),
        ("ok", {"temperature": 0.0}, "temperature must lie"),
        ("ok", {"temperature": float("nan")}, "temperature must lie"),
        ("ok", {"seed": -1}, "seed must be a whole number"),
        ("ok", {"seed": 1.5}, "seed must be a whole number"),
        ("ok", {"seed": True}, "seed must be a whole number"),
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


def test_weights_that_do_not_fit_are_refused_in_one_line(base, tmp_path):
    _, model, config = base
    weights = model.get_weights()
    with pytest.raises(WeightsError, match="weight array 2 is"):
        TextGenerator([*weights[:2], weights[2][:, :-1], *weights[3:]], config)
    with pytest.raises(WeightsError, match="5 weight arrays"):
        TextGenerator(weights[:5], config)
    with pytest.raises(WeightsError, match="weight array 4 holds values that are not finite"):
        TextGenerator([*weights[:4], np.full_like(weights[4], np.nan), weights[5]], config)

    wider = ModelConfig(embedding_dim=config.embedding_dim, rnn_units=config.rnn_units * 2)
    save_arrays(weights, wider, tmp_path / "mismatched")  # the config says 64 units, arrays 32
    with pytest.raises(
        WeightsError, match=r"unusable weights in .* for its model\.json: weight array 1 is"
    ) as error:
        load_generator(tmp_path / "mismatched")
    assert "\n" not in str(error.value)
    with pytest.raises(WeightsError, match="no model config"):
        load_generator(tmp_path / "nothing here")


def test_generating_imports_no_tensorflow(tiny_model_dir):
    code = (
        "import json, sys\n"
        "from fedtext.model.generation import load_generator\n"
        f"text = load_generator({str(tiny_model_dir)!r}).generate('ROMEO: ', 20, seed=1)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "print(json.dumps([text, loaded]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text, loaded = json.loads(result.stdout)
    assert loaded == []
    # The same request in this process, where TensorFlow is loaded, gives the same text.
    model, config = load_model(tiny_model_dir)
    assert text == TextGenerator(model.get_weights(), config).generate("ROMEO: ", 20, seed=1)
