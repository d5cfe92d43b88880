"""Per-client figures of real TFF rounds on the tiny model and the real plays' clients: they land
on the right client, follow the clients when their order changes, tell weighted from uniform
averaging apart, and the round itself is TFF's own Federated Averaging."""

import math

import numpy as np
import pytest

from fedtext.config import Aggregation
from fedtext.learning.contributions import (
    ClientFigures,
    ContributionOutput,
    build_contribution_process,
)
from fedtext.learning.records import clients_csv

FOOL, KENT = "KING_LEAR_FOOL", "KING_LEAR_KENT"
BATCH, SEQ = 8, 100


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    from fedtext.model.keras_model import load_model

    model, model_config = load_model(tiny_model_dir)
    return model.get_weights(), model_config


@pytest.fixture(scope="module")
def rows(client_data):
    """Each client's first 3 batches of training rows, cut by the tutorial's pipeline."""
    from fedtext.model.batches import preprocess, stack_batches

    train, _ = client_data
    return {
        cid: stack_batches(preprocess(train.create_tf_dataset_for_client(cid), BATCH, SEQ), 3)
        for cid in (FOOL, KENT)
    }


def dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def batches(rows, cid, n):
    x, y = rows[cid]
    assert len(x) >= n * BATCH
    return dataset(x[: n * BATCH], y[: n * BATCH])


def empty():
    return dataset(np.zeros((0, SEQ), np.int64), np.zeros((0, SEQ), np.int64))


def padding():
    from fedtext.text.vocab import PAD_ID

    return dataset(*(np.full((BATCH, SEQ), PAD_ID, np.int64),) * 2)


def start(process, weights, client_lr=1.0):
    """The process's first state from the tiny model, clients at SGD 1.0 as test_training's."""
    import tensorflow_federated as tff

    state = process.initialize()
    hparams = process.get_hparams(state)
    hparams["client_work"]["learning_rate"] = np.float32(client_lr)
    state = process.set_hparams(state, hparams)
    return process.set_model_weights(
        state, tff.learning.models.ModelWeights(trainable=list(weights), non_trainable=[])
    )


def global_weights(state):
    return [np.asarray(w) for w in state.global_model_weights.trainable]


def own_loss(model_config, weights, x, y):
    """Masked cross-entropy per character, computed with Keras outside TFF."""
    import tensorflow as tf

    from fedtext.model.keras_model import build_model
    from fedtext.text.vocab import PAD_ID

    model = build_model(model_config)
    model.set_weights(weights)
    per_char = tf.keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    mask = (y != PAD_ID).astype(np.float32)
    return float(np.sum(per_char.numpy() * mask) / mask.sum())


def test_a_lone_clients_figures_are_what_its_training_did(base, rows):
    """With one client and the server's SGD at 1, the new global model is that client's trained
    model: its figures can be checked against the weights TFF returns."""
    weights, model_config = base
    process = build_contribution_process(model_config, "sgd", "sgd")
    state, (fool,) = process.run_round(
        start(process, weights), [batches(rows, FOOL, 2)], [FOOL], round_num=4
    )
    trained = global_weights(state)
    delta = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights, trained, strict=True)))
    x, y = rows[FOOL][0][: 2 * BATCH], rows[FOOL][1][: 2 * BATCH]
    assert (fool.round_num, fool.client_id, fool.share, fool.weight) == (4, FOOL, 1.0, 16.0)
    assert fool.update_norm == pytest.approx(delta, rel=1e-4) and delta > 0.1
    assert fool.cosine == pytest.approx(1.0, abs=1e-5)
    assert fool.loss_before == pytest.approx(own_loss(model_config, weights, x, y), rel=1e-4)
    assert fool.loss_after == pytest.approx(own_loss(model_config, trained, x, y), rel=1e-4)
    assert fool.loss_after < fool.loss_before - 0.05


def test_figures_land_on_their_clients_and_follow_them(base, rows):
    """An empty client and one of padding only sit where they were given, as clients that did
    not move; swapping the order moves their figures with them."""
    weights, model_config = base
    process = build_contribution_process(model_config, "sgd", "sgd")
    state = start(process, weights)
    ids = [FOOL, "empty", KENT, "padding"]
    data = {"empty": empty(), "padding": padding()}
    data.update({FOOL: batches(rows, FOOL, 2), KENT: batches(rows, KENT, 1)})
    new, figures = process.run_round(state, [data[i] for i in ids], ids, round_num=1)
    by_id = {f.client_id: f for f in figures}
    assert [f.client_id for f in figures] == ids
    assert [f.weight for f in figures] == [16.0, 0.0, 8.0, 8.0]
    # TFF counts a batch's rows as examples, padding or not: padding takes a share, moves nothing.
    assert [f.share for f in figures] == pytest.approx([0.5, 0.0, 0.25, 0.25])
    for still in ("empty", "padding"):
        f = by_id[still]
        assert (f.update_norm, f.cosine) == (0.0, 0.0)
        assert math.isnan(f.loss_before) and math.isnan(f.loss_after)
    for moved in (FOOL, KENT):
        f = by_id[moved]
        assert f.update_norm > 0.1 and f.cosine > 0.5 and f.loss_after < f.loss_before
    assert by_id[FOOL].update_norm != pytest.approx(by_id[KENT].update_norm, rel=1e-3)

    swapped = ids[::-1]
    new_swapped, figures_swapped = process.run_round(
        state, [data[i] for i in swapped], swapped, round_num=1
    )
    assert [f.client_id for f in figures_swapped] == swapped
    for f in figures_swapped:
        expected = by_id[f.client_id]
        assert f.share == expected.share and f.weight == expected.weight
        for name in ("update_norm", "cosine", "loss_before", "loss_after"):
            assert getattr(f, name) == pytest.approx(getattr(expected, name), rel=1e-5, nan_ok=True)
    for a, b in zip(global_weights(new), global_weights(new_swapped), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_uniform_gives_every_client_a_vote_even_an_empty_one(base, rows):
    weights, model_config = base
    process = build_contribution_process(model_config, "sgd", "sgd", Aggregation("uniform"))
    ids = [FOOL, "empty", KENT]
    data = [batches(rows, FOOL, 2), empty(), batches(rows, KENT, 1)]
    _, figures = process.run_round(start(process, weights), data, ids, round_num=1)
    assert [f.weight for f in figures] == [1.0, 1.0, 1.0]
    assert [f.share for f in figures] == pytest.approx([1 / 3] * 3)
    assert figures[1].update_norm == 0.0 and figures[0].update_norm > 0.1


def test_weighted_and_uniform_differ_on_unequal_clients_and_agree_on_equal_ones(base, rows):
    weights, model_config = base
    weighted = build_contribution_process(model_config, "sgd", "sgd", Aggregation("weighted"))
    uniform = build_contribution_process(model_config, "sgd", "sgd", Aggregation("uniform"))
    ids = [FOOL, KENT]

    def both(n_fool, n_kent):
        data = [batches(rows, FOOL, n_fool), batches(rows, KENT, n_kent)]
        return [
            process.run_round(start(process, weights), data, ids, round_num=1)
            for process in (weighted, uniform)
        ]

    (w_state, w_figs), (u_state, u_figs) = both(3, 1)
    assert [f.share for f in w_figs] == pytest.approx([0.75, 0.25])
    assert [f.share for f in u_figs] == pytest.approx([0.5, 0.5])
    # The clients trained alike under both; only their say in the average differs.
    assert [f.update_norm for f in w_figs] == pytest.approx([f.update_norm for f in u_figs])
    gap = max(
        np.abs(a - b).max()
        for a, b in zip(global_weights(w_state), global_weights(u_state), strict=True)
    )
    assert gap > 1e-3
    # Fool's larger say pulls the weighted average towards it.
    assert w_figs[0].cosine > u_figs[0].cosine and w_figs[1].cosine < u_figs[1].cosine

    (w_state, w_figs), (u_state, u_figs) = both(2, 2)
    assert [f.share for f in w_figs] == pytest.approx([0.5, 0.5])
    assert [f.share for f in u_figs] == pytest.approx([0.5, 0.5])
    for a, b in zip(global_weights(w_state), global_weights(u_state), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("weighting", ["weighted", "uniform"])
def test_rounds_equal_tffs_own_federated_averaging(base, rows, weighting):
    """Two rounds with FedAvgM's server momentum (state carried between rounds) land where
    TFF's build_weighted_fed_avg / build_unweighted_fed_avg land from the same inputs."""
    import tensorflow_federated as tff

    from fedtext.learning.optimizers import build_client_optimizer, build_server_optimizer
    from fedtext.learning.tff_model import model_fn

    weights, model_config = base
    ours = build_contribution_process(model_config, "sgd", "momentum", Aggregation(weighting))
    build = {
        "weighted": tff.learning.algorithms.build_weighted_fed_avg,
        "uniform": tff.learning.algorithms.build_unweighted_fed_avg,
    }[weighting]
    theirs = build(
        model_fn(model_config),
        client_optimizer_fn=build_client_optimizer("sgd"),
        server_optimizer_fn=build_server_optimizer("momentum"),
        loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
    )
    rounds = [
        [batches(rows, FOOL, 3), batches(rows, KENT, 1)],
        [batches(rows, FOOL, 1), batches(rows, KENT, 2)],
    ]
    our_state, their_state = start(ours, weights), start(theirs, weights)
    for data in rounds:
        output = ours.next(our_state, data)
        expected = theirs.next(their_state, data)
        our_state, their_state = output.state, expected.state
        assert isinstance(output, ContributionOutput) and len(output.clients) == 2
        train = output.metrics["client_work"]["train"]
        assert train == pytest.approx(expected.metrics["client_work"]["train"])
    moved = 0.0
    for a, b, w in zip(
        global_weights(our_state), global_weights(their_state), weights, strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)
        moved = max(moved, np.abs(a - w).max())
    assert moved > 1e-2


def test_the_trainer_runs_it_in_place_of_tffs_process(client_data, tiny_model_dir, monkeypatch):
    """Same state, hyper-parameters and metrics as TFF's process: the trainer takes it as is."""
    from fedtext.config import FederatedConfig
    from fedtext.learning import training

    monkeypatch.setattr(training, "build_process", build_contribution_process)
    config = FederatedConfig(
        client_ids=(FOOL, KENT), rounds=1, clip_norm=0.0, batches_per_client=1, seed=1
    )
    train, test = client_data
    trainer = training.FederatedTrainer(config, train, test, tiny_model_dir)
    results = list(trainer.rounds())
    assert [r.round_num for r in results] == [0, 1]
    assert results[1].num_examples == 2 * BATCH and results[1].client_ids == (FOOL, KENT)


def test_clients_csv_has_one_row_per_client_and_round():
    figures = [
        ClientFigures(1, FOOL, 0.75, 0.5, 0.9, 4.4, 4.2, 24.0),
        ClientFigures(1, "EMPTY", 0.0, 0.0, 0.0, math.nan, math.nan, 0.0),
    ]
    lines = clients_csv(figures).splitlines()
    assert lines[0] == ("round,client_id,share,update_norm,cosine,loss_before,loss_after,weight")
    assert lines[1] == f"1,{FOOL},0.75,0.5,0.9,4.4,4.2,24"
    assert lines[2] == "1,EMPTY,0,0,0,,,0"
