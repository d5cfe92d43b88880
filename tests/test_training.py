"""Real TFF Federated Averaging rounds on a small model and the real Shakespeare clients."""

import csv
import dataclasses
import io
import itertools
import threading

import numpy as np
import pytest

from fedtext.config import ConfigError, FederatedConfig
from fedtext.learning.records import history_csv
from fedtext.learning.training import FederatedTrainer, TrainingDiverged
from tests.conftest import plain_fedavg

CLIENTS = ("KING_LEAR_KING_LEAR", "KING_LEAR_FOOL", "KING_LEAR_KENT")


def small_config(**overrides) -> FederatedConfig:
    return plain_fedavg(**{"client_ids": CLIENTS[:2], "rounds": 3, **overrides})


@pytest.fixture(scope="module")
def trained(client_data, tiny_model_dir):
    train, test = client_data
    trainer = FederatedTrainer(small_config(), train, test, tiny_model_dir)
    results = list(trainer.rounds())
    return trainer, results


def test_rounds_start_from_the_base_model_and_learn(trained, tiny_model_dir):
    from fedtext.model.keras_model import load_model

    trainer, results = trained
    assert [r.round_num for r in results] == [0, 1, 2, 3]
    assert results[0].train_loss is None
    base, _ = load_model(tiny_model_dir)
    assert trainer.evaluate(base.get_weights()) == pytest.approx(
        (results[0].eval_loss, results[0].eval_accuracy), rel=1e-5
    )
    assert results[-1].train_loss < results[1].train_loss
    assert results[-1].eval_loss < results[0].eval_loss
    assert all(r.num_examples > 0 and r.client_ids == CLIENTS[:2] for r in results[1:])
    changed = [
        not np.allclose(a, b) for a, b in zip(base.get_weights(), trainer.weights, strict=True)
    ]
    assert all(changed)


def test_evaluation_is_right_during_and_after_another_thread_builds_a_round(
    trained, client_data, tiny_model_dir
):
    """The page evaluates runs while its engine compiles the other rounds. TFF's tracing rebases
    Keras' model, layer and metric classes onto their v1 bases meanwhile: an unguarded evaluate
    fails (no return_dict), and so does a model built before and first evaluated after."""
    from fedtext.learning.process import build_process

    trainer, results = trained
    expected = trainer.evaluate(trainer.weights)
    train, test = client_data
    fresh = FederatedTrainer(small_config(), train, test, tiny_model_dir)  # not evaluated yet
    other_model = dataclasses.replace(trainer.model_config, embedding_dim=5)  # not built yet
    builder = threading.Thread(target=build_process, args=(other_model, "sgd", "momentum"))
    builder.start()
    during = []
    while builder.is_alive():
        during.append(trainer.evaluate(trainer.weights))
    builder.join()
    assert during and all(r == pytest.approx(expected, rel=1e-5) for r in during)
    assert fresh.evaluate() == pytest.approx(
        (results[0].eval_loss, results[0].eval_accuracy), rel=1e-5
    )


def test_the_worker_gets_the_bytes_tffs_serializer_would_send(trained):
    """The round's server state is serialized in place (fedtext.distribution.remote): same bytes."""
    from tensorflow_federated.python.core.impl.executors import value_serialization

    from fedtext.distribution.remote import serialize_in_place
    from fedtext.learning.process import build_process

    trainer, _ = trained
    process = build_process(
        trainer.model_config, trainer.config.client_optimizer, trainer.config.server_optimizer
    )
    state_type = process.next.type_signature.parameter[0]
    assert "global_model_weights" in str(state_type) and "@SERVER" in str(state_type)
    expected, _ = value_serialization.serialize_value(trainer._state, state_type)
    got = serialize_in_place(trainer._state, state_type)
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    assert got.ByteSize() > 4 * sum(w.size for w in trainer.weights)


def test_history_is_written_as_csv_with_each_rounds_values(trained):
    trainer, results = trained
    rows = list(csv.DictReader(io.StringIO(history_csv(trainer.history))))
    assert [int(row["round"]) for row in rows] == [r.round_num for r in results] == [0, 1, 2, 3]
    for row, result in zip(rows, trainer.history, strict=True):
        for name in ("eval_loss", "eval_accuracy", "train_loss", "train_accuracy"):
            value = getattr(result, name)
            if value is None:  # round 0 did not train
                assert row[name] == "", name
            else:
                assert float(row[name]) == pytest.approx(value, abs=1e-6, nan_ok=True), name
        for name in ("seconds", "cpu_seconds"):
            assert float(row[name]) == pytest.approx(getattr(result, name), abs=1e-3), name
        assert int(row["num_examples"]) == result.num_examples
        assert row["clients"].split() == list(result.client_ids)
    assert int(rows[1]["num_examples"]) > 0 and rows[1]["clients"].split() == list(CLIENTS[:2])


def test_stopping_between_rounds_keeps_the_model_so_far(client_data, tiny_model_dir):
    train, test = client_data
    trainer = FederatedTrainer(small_config(rounds=5), train, test, tiny_model_dir)
    first_two = list(itertools.islice(trainer.rounds(), 2))
    assert [r.round_num for r in first_two] == [0, 1]
    assert len(trainer.history) == 2
    assert trainer.evaluate(trainer.weights)[0] == pytest.approx(first_two[1].eval_loss, rel=1e-5)


def test_clients_are_sampled_per_round(client_data, tiny_model_dir):
    train, test = client_data
    config = small_config(client_ids=CLIENTS, clients_per_round=1, rounds=3, seed=7)
    trainer = FederatedTrainer(config, train, test, tiny_model_dir)
    cohorts = [trainer.sample_clients(r) for r in range(1, 13)]
    assert all(len(c) == 1 and c[0] in CLIENTS for c in cohorts)
    assert len(set(cohorts)) > 1  # a new draw each round, not the same client every time
    assert cohorts == [
        FederatedTrainer(config, train, test, tiny_model_dir).sample_clients(r)
        for r in range(1, 13)
    ]  # seeded: the same cohorts every time
    other = FederatedTrainer(dataclasses.replace(config, seed=8), train, test, tiny_model_dir)
    assert [other.sample_clients(r) for r in range(1, 13)] != cohorts


def test_sampling_by_text_draws_big_speakers_more_often(client_data, tiny_model_dir):
    train, test = client_data
    clients = ("KING_LEAR_KING_LEAR", "KING_LEAR_CURAN", "KING_LEAR_OLD_MAN")
    config = small_config(client_ids=clients, clients_per_round=1, sampling="by_text")
    trainer = FederatedTrainer(config, train, test, tiny_model_dir)
    sizes = {cid: len(trainer.text_ids(cid)) for cid in clients}
    draws = [trainer.sample_clients(r)[0] for r in range(1, 201)]
    share = draws.count("KING_LEAR_KING_LEAR") / len(draws)
    expected = sizes["KING_LEAR_KING_LEAR"] / sum(sizes.values())
    assert expected > 0.9 and abs(share - expected) < 0.05  # Lear speaks 98% of their text
    uniform = FederatedTrainer(
        dataclasses.replace(config, sampling="uniform"), train, test, tiny_model_dir
    )
    assert [uniform.sample_clients(r)[0] for r in range(1, 201)].count(clients[0]) < 100


def test_text_read_from_the_database_is_tff_pipelines_text(client_data, tiny_model_dir):
    from fedtext.model.batches import to_ids

    train, test = client_data
    trainer = FederatedTrainer(small_config(client_ids=CLIENTS), train, test, tiny_model_dir)
    for cid in CLIENTS:
        through_tff = np.concatenate(
            list(to_ids(train.create_tf_dataset_for_client(cid)).batch(1 << 16).as_numpy_iterator())
        )
        np.testing.assert_array_equal(trainer.text_ids(cid), through_tff)


def test_the_worker_runs_one_intra_op_thread_per_concurrent_client(client_data, tiny_model_dir):
    """Two clients at once on 2 cores, each with TensorFlow's default of a thread per core,
    had four threads take turns on two cores: the worker gets cores // clients at once."""
    import os

    from fedtext.distribution import runtime
    from tests.conftest import worker_pids

    train, test = client_data
    list(FederatedTrainer(small_config(rounds=1), train, test, tiny_model_dir).rounds())
    (pid,) = worker_pids()
    with open(f"/proc/{pid}/environ", "rb") as environ:
        variables = dict(
            item.decode().split("=", 1) for item in environ.read().split(b"\0") if b"=" in item
        )
    cores, at_once = len(os.sched_getaffinity(0)), runtime._CONCURRENT_CLIENTS
    expected = os.environ.get("TF_NUM_INTRAOP_THREADS", str(max(1, cores // at_once)))
    assert variables["TF_NUM_INTRAOP_THREADS"] == expected
    assert variables["MALLOC_ARENA_MAX"] == os.environ.get("MALLOC_ARENA_MAX", "2")


def test_each_round_draws_fresh_batches(client_data, tiny_model_dir):
    train, test = client_data
    trainer = FederatedTrainer(small_config(), train, test, tiny_model_dir)
    first = next(iter(trainer.client_datasets(1, ["KING_LEAR_KING_LEAR"])[0]))[0].numpy()
    again = next(iter(trainer.client_datasets(1, ["KING_LEAR_KING_LEAR"])[0]))[0].numpy()
    second = next(iter(trainer.client_datasets(2, ["KING_LEAR_KING_LEAR"])[0]))[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("shuffle_buffer", [0, 100])
def test_trainer_batches_equal_the_tutorial_pipeline(client_data, tiny_model_dir, shuffle_buffer):
    """A round's batches are the tutorial's eager pipeline over the text from where the last
    round ended: the same rows, however the trainer builds them."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    from fedtext.learning.training import _round_seed
    from fedtext.model.batches import chunk_and_batch, preprocess, stack_batches

    train, test = client_data
    clients = ("KING_LEAR_KING_LEAR", "KING_LEAR_FOOL", "HAMLET_HAMLET")  # Hamlet's text is long
    config = FederatedConfig(client_ids=clients, shuffle_buffer=shuffle_buffer, seed=3)
    trainer = FederatedTrainer(config, train, test, tiny_model_dir)
    per_round = config.batches_per_client * config.batch_size * (config.seq_length + 1)
    got = {r: trainer.client_datasets(r, clients) for r in (1, 3)}
    global_seed = context.global_seed()
    tf.random.set_seed(None)  # the trainer's shuffles do not depend on a global seed
    try:
        for cid, dataset in zip(clients, got[1], strict=True):
            expected = preprocess(
                train.create_tf_dataset_for_client(cid),
                config.batch_size,
                config.seq_length,
                shuffle_buffer,
                _round_seed(3, 1, cid),
            )
            rows = stack_batches(dataset)
            expected_rows = stack_batches(expected, limit=config.batches_per_client)
            assert all(np.array_equal(a, b) for a, b in zip(expected_rows, rows, strict=True))
            assert len(rows[0]) == config.batches_per_client * config.batch_size
        for cid, dataset in zip(clients, got[3], strict=True):
            ids = trainer.text_ids(cid)
            expected = chunk_and_batch(
                tf.data.Dataset.from_tensor_slices(np.roll(ids, -2 * per_round % len(ids))),
                config.seq_length,
                config.batch_size,
                shuffle_buffer,
                _round_seed(3, 3, cid),
            )
            expected_rows = stack_batches(expected, limit=config.batches_per_client)
            rows = stack_batches(dataset)
            assert all(np.array_equal(a, b) for a, b in zip(expected_rows, rows, strict=True))
    finally:
        tf.random.set_seed(global_seed)
    rows = config.batches_per_client * config.batch_size
    reach = (shuffle_buffer + rows + 1) * (config.seq_length + 1)  # what a round's batches read
    assert len(trainer.text_ids("HAMLET_HAMLET")) > 2 * reach


def test_rounds_read_on_through_a_large_clients_text(client_data, tiny_model_dir):
    """The tutorial's take(5) after a 100-sequence shuffle buffer never gets past a client's
    first ~140 sequences; here the rounds work through the whole text."""
    from fedtext.text.vocab import decode

    train, test = client_data
    trainer = FederatedTrainer(
        small_config(client_ids=("HAMLET_HAMLET",)), train, test, tiny_model_dir
    )
    text = decode(trainer.text_ids("HAMLET_HAMLET"))
    tutorial_reach = (100 + 2 * 8) * 101  # buffer plus what two batches take
    assert len(text) > 4 * tutorial_reach
    furthest = 0
    for round_num in range(1, 16):
        x, _ = next(
            iter(trainer.client_datasets(round_num, ["HAMLET_HAMLET"])[0].unbatch().batch(64))
        )
        for row in x.numpy():
            furthest = max(furthest, text.find(decode(row)))
    assert furthest > 2 * tutorial_reach


def test_divergence_stops_training_and_keeps_the_last_good_weights(client_data, tiny_model_dir):
    train, test = client_data
    trainer = FederatedTrainer(small_config(client_learning_rate=1e9), train, test, tiny_model_dir)
    base_weights = [w.copy() for w in trainer.weights]
    rounds = trainer.rounds()
    assert next(rounds).round_num == 0
    with pytest.raises(TrainingDiverged, match=r"diverged in round 1.*kept the weights of round 0"):
        next(rounds)
    assert all(np.array_equal(a, b) for a, b in zip(base_weights, trainer.weights, strict=True))


def test_unknown_clients_are_refused_before_any_work(client_data, tiny_model_dir):
    from fedtext.text.plays import DataError

    train, test = client_data
    with pytest.raises(
        DataError, match=r"unknown client id 'KING_LEAR_LEARR'.*KING_LEAR_KING_LEAR"
    ):
        FederatedTrainer(small_config(client_ids=("KING_LEAR_LEARR",)), train, test, tiny_model_dir)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"client_ids": ()}, "choose at least one client"),
        ({"rounds": 0}, "rounds must be a whole number of at least 1"),
        ({"client_learning_rate": float("nan")}, "client learning rate must be a positive finite"),
        ({"server_learning_rate": -1.0}, "server learning rate must be a positive finite"),
        ({"server_optimizer": "rmsprop"}, "server optimizer must be one of"),
        ({"clients_per_round": 5}, "clients per round"),
        ({"divergence_loss": 0.0}, "divergence loss must be positive"),
        ({"divergence_loss": float("nan")}, "divergence loss must be positive"),
    ],
)
def test_bad_settings_get_one_line_messages(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        small_config(**overrides)
    assert "\n" not in str(error.value)
