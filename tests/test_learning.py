"""Each learning setting takes effect in a real TFF round, and the centralised baseline runs."""

import numpy as np
import pytest

from fedtext.config import CentralisedConfig, FederatedConfig
from fedtext.learning.training import FederatedTrainer
from fedtext.presets import PRESETS, preset_config
from tests.conftest import plain_fedavg

CLIENTS = ("KING_LEAR_FOOL", "KING_LEAR_KENT")


def config(**overrides) -> FederatedConfig:
    settings = dict(client_ids=CLIENTS, rounds=2, client_learning_rate=0.5, batch_size=8)
    return plain_fedavg(**{**settings, **overrides})


def train(client_data, tiny_model_dir, **overrides) -> FederatedTrainer:
    train_data, test_data = client_data
    trainer = FederatedTrainer(config(**overrides), train_data, test_data, tiny_model_dir)
    list(trainer.rounds())
    return trainer


def distance(weights: list, reference: list) -> float:
    """Global norm of the difference between two lists of weight arrays."""
    return float(
        np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights, reference, strict=True)))
    )


def delta_norm(trainer: FederatedTrainer, base_dir) -> float:
    """Global norm of the model's change from the base weights."""
    from fedtext.model.weights import load_weights_arrays

    return distance(trainer.weights, load_weights_arrays(base_dir))


def weights_differ(a: FederatedTrainer, b: FederatedTrainer) -> bool:
    return any(not np.allclose(x, y) for x, y in zip(a.weights, b.weights, strict=True))


def test_batch_size_sets_the_rows_of_each_clients_batches(client_data, tiny_model_dir):
    train_data, test_data = client_data
    for size in (3, 16):
        trainer = FederatedTrainer(config(batch_size=size), train_data, test_data, tiny_model_dir)
        datasets = trainer.client_datasets(1, CLIENTS)
        batches = [len(x) for dataset in datasets for x, _ in dataset.as_numpy_iterator()]
        assert batches and max(batches) == size
        assert len(batches) <= 2 * len(CLIENTS)  # batches_per_client per client


def test_clipping_bounds_each_clients_update(client_data, tiny_model_dir):
    """SGD moves each step by at most lr x clip, so one round of 2 steps moves the average by
    at most 2 x lr x clip; without clipping the same rate moves it further."""
    lr, clip, steps = 5.0, 0.01, 2
    clipped = train(
        client_data,
        tiny_model_dir,
        rounds=1,
        client_learning_rate=lr,
        clip_norm=clip,
        batches_per_client=steps,
    )
    free = train(
        client_data, tiny_model_dir, rounds=1, client_learning_rate=lr, batches_per_client=steps
    )
    bound = steps * lr * clip
    assert delta_norm(clipped, tiny_model_dir) <= bound * (1 + 1e-3)
    assert (
        delta_norm(clipped, tiny_model_dir) > 0.5 * bound
    )  # the clip binds: every step used all of it
    assert delta_norm(free, tiny_model_dir) > 2 * bound


@pytest.mark.parametrize(
    "changes",
    [
        {"server_optimizer": "momentum"},
        {"server_optimizer": "adam", "server_learning_rate": 0.01},
        {"server_learning_rate": 0.5},
        {"client_optimizer": "adam", "client_learning_rate": 0.01},
        {"client_learning_rate": 0.1},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_each_optimizer_setting_changes_the_result(client_data, tiny_model_dir, changes):
    plain = train(client_data, tiny_model_dir)
    changed = train(client_data, tiny_model_dir, **changes)
    assert weights_differ(plain, changed)
    assert np.isfinite(changed.history[-1].eval_loss)


def test_server_rate_one_half_moves_the_model_half_as_far_in_round_one(client_data, tiny_model_dir):
    """Plain averaging applies the mean update times the server rate."""
    full = train(client_data, tiny_model_dir, rounds=1)
    half = train(client_data, tiny_model_dir, rounds=1, server_learning_rate=0.5)
    assert delta_norm(half, tiny_model_dir) == pytest.approx(
        0.5 * delta_norm(full, tiny_model_dir), rel=1e-3
    )


def test_a_linear_schedule_halves_the_server_rate_in_round_two_of_two(client_data, tiny_model_dir):
    """Round 1 runs at the full rate, round 2 at half: from the same round-1 model and the same
    batches, plain averaging then moves the model half as far."""
    after_one = train(client_data, tiny_model_dir, rounds=1)
    constant = train(client_data, tiny_model_dir, rounds=2)
    linear = train(client_data, tiny_model_dir, rounds=2, server_schedule="linear")
    moved_constant = distance(constant.weights, after_one.weights)
    assert moved_constant > 0
    assert distance(linear.weights, after_one.weights) == pytest.approx(
        0.5 * moved_constant, rel=1e-3
    )


def test_rounds_in_one_call_are_the_same_rounds(client_data, tiny_model_dir):
    """Rounds 1-3 in one call to the worker and round 4 in another (the evaluated one ends a
    call) give the model, cohorts and losses of four calls of one round each."""
    settings = dict(
        rounds=4,
        eval_every=4,
        server_optimizer="adam",
        server_learning_rate=0.01,
        clients_per_round=1,
        sampling="by_text",
    )
    one_by_one = train(client_data, tiny_model_dir, **settings)
    together = train(client_data, tiny_model_dir, rounds_per_call=3, **settings)
    assert [r.round_num for r in together.history] == [0, 1, 2, 3, 4]
    assert [r.client_ids for r in together.history] == [r.client_ids for r in one_by_one.history]
    assert [r.train_loss for r in together.history[1:]] == pytest.approx(
        [r.train_loss for r in one_by_one.history[1:]], rel=1e-5
    )
    assert np.isnan(together.history[3].eval_accuracy)
    assert together.history[4].eval_accuracy == pytest.approx(
        one_by_one.history[4].eval_accuracy, abs=1e-6
    )
    assert distance(together.weights, one_by_one.weights) < 1e-5 * delta_norm(
        one_by_one, tiny_model_dir
    )


def test_a_call_ends_at_an_evaluated_round_and_when_the_budget_runs_out(
    client_data, tiny_model_dir
):
    from fedtext.learning.records import RoundResult

    train_data, test_data = client_data
    trainer = FederatedTrainer(
        config(rounds=100, rounds_per_call=8, eval_every=10), train_data, test_data, tiny_model_dir
    )
    assert trainer._next_call(1, None) == (8, False)
    assert trainer._next_call(9, None) == (2, False)  # round 10 is evaluated
    assert trainer._next_call(97, None) == (4, True)  # the last round
    trainer.history = [RoundResult(0, 2.0, 0.4)]
    assert trainer._next_call(1, 1000.0) == (1, False)  # a round's cost is not known yet
    trainer.history += [RoundResult(r, 2.0, 0.4, cpu_seconds=1.0) for r in range(1, 21)]
    assert trainer._next_call(21, 29.5) == (8, False)  # 9 rounds of 1 s fit
    assert trainer._next_call(21, 25.5) == (1, False)  # the last 5 one a call
    assert trainer._next_call(21, 21.5) == (1, True)
    assert trainer._next_call(21, 20.5) == (1, True)  # a run always ends with a round


def test_the_tutorial_preset_is_the_tutorials_setting():
    tutorial = preset_config("tutorial")
    assert (
        tutorial.client_optimizer,
        tutorial.client_learning_rate,
        tutorial.clip_norm,
        tutorial.batch_size,
        tutorial.batches_per_client,
        tutorial.rounds,
    ) == ("sgd", 0.5, 0.0, 8, 5, 5)
    assert (tutorial.server_optimizer, tutorial.server_learning_rate) == ("sgd", 1.0)
    assert set(PRESETS) >= {"tutorial", "fedavg", "fedavgm", "fedadam"}
    reddi = preset_config("fedadam", client_ids=CLIENTS)
    assert (reddi.server_optimizer, reddi.server_learning_rate) == ("adam", 0.01)


def test_centralised_baseline_learns_on_the_pooled_text_within_its_budget(
    client_data, tiny_model_dir
):
    from fedtext.learning.centralised import CentralisedTrainer
    from fedtext.learning.records import compare

    train_data, test_data = client_data
    federated = train(client_data, tiny_model_dir, rounds=2)
    budget = sum(r.cpu_seconds for r in federated.history[1:])
    assert budget > 0
    recipe = CentralisedConfig(learning_rate=0.01, batch_size=8, steps_per_point=2)
    central = CentralisedTrainer(config(rounds=50), train_data, test_data, tiny_model_dir, recipe)
    points = list(central.checkpoints(budget))
    assert points[0].round_num == 0 and len(points) >= 2
    assert central.spent_cpu_seconds() >= budget or len(points) == 51
    assert points[-1].eval_loss < points[0].eval_loss
    comparison = compare(federated.history, central.history)
    assert comparison.cpu_seconds == pytest.approx(budget)
    assert "federated" in comparison.summary() and "centralised" in comparison.summary()
