"""Weighted, uniform and differentially private Federated Averaging in real TFF rounds on a small
model, and the privacy accountant against TFF's DP tutorial."""

import itertools
import math

import numpy as np
import pytest

from fedtext.config import Aggregation, ConfigError, FederatedConfig
from fedtext.learning import training
from fedtext.learning.privacy import (
    approximation,
    delta_for,
    epsilon_after,
    epsilon_curve,
    epsilon_for,
    guarantee,
)
from fedtext.learning.training import FederatedTrainer
from tests.conftest import plain_fedavg

# Unequal clients: the Fool fills two batches of 8 sequences, the King of France (874
# characters of training text) only 8 sequences.
BIG, SMALL = "KING_LEAR_FOOL", "KING_LEAR_KING_OF_FRANCE"


def config(**overrides) -> FederatedConfig:
    # Plain SGD on the server at 1.0: the new model is the base plus the averaged update.
    return plain_fedavg(**{"client_ids": (BIG, SMALL), "rounds": 1, **overrides})


def train(cfg, client_data, model_dir, aggregation=None):
    """One finished run; `aggregation` replaces the config's, as TFF's parts take it."""
    train_data, test_data = client_data
    trainer = FederatedTrainer(cfg, train_data, test_data, model_dir)
    if aggregation is None:
        list(trainer.rounds())
        return trainer
    real = training.build_process
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            training,
            "build_process",
            lambda model, client, server, _: real(model, client, server, aggregation),
        )
        list(trainer.rounds())
    return trainer


@pytest.fixture(scope="module")
def runs(client_data, tiny_model_dir):
    """One round each: uniform, weighted, each client alone, and TFF's DP mean without noise."""
    from fedtext.model.keras_model import load_model

    return {
        "base": load_model(tiny_model_dir)[0].get_weights(),
        "uniform": train(config(weighting="uniform"), client_data, tiny_model_dir),
        "weighted": train(config(), client_data, tiny_model_dir),
        BIG: train(config(client_ids=(BIG,)), client_data, tiny_model_dir),
        SMALL: train(config(client_ids=(SMALL,)), client_data, tiny_model_dir),
        # A config's noise 0 means no DP at all (the plain uniform process), so TFF's DP mean
        # at noise 0 is built directly, with a clip no update reaches: it is then the plain
        # mean. (An adaptive clip would still clip, at its 0.1 start, even without noise.)
        "dp0": train(
            config(weighting="uniform"),
            client_data,
            tiny_model_dir,
            Aggregation("uniform", "fixed", 0.0, 2, 1e6),
        ),
    }


def deltas(trainer, base):
    return [w - b for w, b in zip(trainer.weights, base, strict=True)]


def test_uniform_and_weighted_average_the_clients_updates_as_they_say(runs):
    base = runs["base"]
    big, small = deltas(runs[BIG], base), deltas(runs[SMALL], base)
    n_big, n_small = (runs[c].history[1].num_examples for c in (BIG, SMALL))
    assert n_big > n_small > 0  # unequal clients
    uniform, weighted = deltas(runs["uniform"], base), deltas(runs["weighted"], base)
    for u, w, b, s in zip(uniform, weighted, big, small, strict=True):
        np.testing.assert_allclose(u, (b + s) / 2, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            w, (n_big * b + n_small * s) / (n_big + n_small), rtol=1e-4, atol=1e-6
        )
    assert not all(np.allclose(u, w) for u, w in zip(uniform, weighted, strict=True))


def test_dp_mean_without_noise_is_the_uniform_mean(runs):
    for dp, plain in zip(runs["dp0"].weights, runs["uniform"].weights, strict=True):
        np.testing.assert_allclose(dp, plain, rtol=1e-5, atol=1e-7)


def test_a_dp_round_adds_the_noise_it_says(client_data, tiny_model_dir, runs):
    """A real DP-FedAvg round (adaptive clip, the clients' own gradient clipping on): the model
    moves by Gaussian noise of the size TFF's adaptive clip gives at its start."""
    cfg = config(weighting="uniform", noise_multiplier=1.0, clip_norm=1.0, rounds=2)
    trainer = FederatedTrainer(cfg, *client_data, tiny_model_dir)
    first = list(itertools.islice(trainer.rounds(), 2))[1]
    assert math.isfinite(first.train_loss) and first.client_ids == (BIG, SMALL)
    moved = np.concatenate([d.ravel() for d in deltas(trainer, runs["base"])])
    # Clipped updates add at most 0.1 / 2 in norm; the noise is z_value x clip / K per weight,
    # z_value = (1 - (z / (2 x count noise))^2)^-1/2, the count's noise being z here
    # (fedtext.learning.process.build_dp_aggregator).
    expected = (1 - 0.25) ** -0.5 * 0.1 / 2
    assert np.std(moved) == pytest.approx(expected, rel=0.1)
    assert list(trainer.rounds())[-1].round_num == 2  # and on from there


def test_the_accountant_matches_tffs_dp_tutorial():
    assert epsilon_for(120 / 3383, 1.2, 100, 1e-5) == pytest.approx(1.99, abs=0.01)


def test_epsilon_of_a_run():
    ids = tuple(f"C{i}" for i in range(100))
    cfg = FederatedConfig(
        client_ids=ids, weighting="uniform", noise_multiplier=1.0, clients_per_round=10
    )
    cost = epsilon_after(cfg)
    assert cost.delta == pytest.approx(100**-1.1) and cost.delta < 1 / 100
    assert (cost.sampling_rate, cost.population, cost.rounds) == (0.1, 100, cfg.rounds)
    assert cost.epsilon == pytest.approx(epsilon_for(0.1, 1.0, cfg.rounds, 100**-1.1))
    curve = [c.epsilon for c in epsilon_curve(cfg)]
    assert curve == sorted(curve) and curve[-1] == cost.epsilon and len(curve) == cfg.rounds
    noisier = FederatedConfig(**{**cfg.__dict__, "noise_multiplier": 2.0})
    assert epsilon_after(noisier).epsilon < cost.epsilon
    everyone = FederatedConfig(**{**cfg.__dict__, "clients_per_round": 0})
    assert epsilon_after(everyone).sampling_rate == 1.0
    assert epsilon_after(everyone).epsilon > cost.epsilon
    assert math.isinf(epsilon_after(FederatedConfig(client_ids=ids)).epsilon)
    assert "100 chosen characters" in guarantee(cfg) and "Poisson" in approximation(cfg)
    assert "Exact sampling" in approximation(everyone)
    two = FederatedConfig(**{**cfg.__dict__, "client_ids": ids[:2], "clients_per_round": 0})
    assert "weak guarantee" in guarantee(two)
    assert delta_for(2) < 0.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"noise_multiplier": 1.0}, "differential privacy weights every client equally"),
        ({"noise_multiplier": -1.0}, "noise multiplier must be 0"),
        ({"noise_multiplier": float("nan")}, "noise multiplier must be 0"),
        ({"weighting": "by size"}, "weighting must be one of weighted, uniform"),
        ({"dp_clipping": "none"}, "DP clipping must be one of"),
        ({"dp_clip": 0.0}, "DP clip must be a positive"),
    ],
)
def test_bad_privacy_settings_get_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        config(**overrides)
    assert "\n" not in str(error.value)
