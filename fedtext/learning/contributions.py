"""Who moved the model: Federated Averaging from TFF's own parts, whose round also reports each
client's share of the average, the size of its update, its agreement with the average and its
own-data loss before and after local training, all computed inside TFF.

Imports TFF: training imports this module only when it builds a process."""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import Aggregation, ModelConfig
from fedtext.distribution import runtime
from fedtext.learning.aggregators import build_dp_aggregator
from fedtext.learning.optimizers import build_client_optimizer, build_server_optimizer
from fedtext.learning.records import ClientFigures
from fedtext.learning.tff_model import model_fn as build_model_fn
from fedtext.learning.tff_model import restore_eager_keras
from fedtext.model.keras_model import (
    BUILD_LOCK,
    masked_cross_entropy,
)


class ContributionOutput(NamedTuple):
    """A round's output: `state` and `metrics` as TFF's LearningProcessOutput, and `clients`,
    one dict of figures per client dataset, in the order they were given."""

    state: Any
    metrics: Any
    clients: list


class ContributionProcess:
    """TFF's weighted or uniform Federated Averaging whose `next` also returns per-client figures.

    Built from the parts `tff.learning.algorithms.build_weighted_fed_avg` composes (broadcast,
    model-delta client work, mean, apply-optimizer finalizer), so its server state is the same
    type as that process's: `initialize`, the model-weight and hyper-parameter accessors and
    `learning_process.next` are TFF's plain round; `next` is the same round with the figures.
    """

    def __init__(self, learning_process, next_fn, weighting: str):
        self.learning_process = learning_process
        # A TFF computation, like a LearningProcess's `next`: (state, client datasets) ->
        # ContributionOutput, whose `clients` is a list in the order of the datasets given.
        self.next = next_fn
        self.weighting = weighting
        self.initialize = learning_process.initialize
        self.get_model_weights = learning_process.get_model_weights
        self.set_model_weights = learning_process.set_model_weights
        self.get_hparams = learning_process.get_hparams
        self.set_hparams = learning_process.set_hparams

    def run_round(
        self,
        state,
        client_data: Sequence[tf.data.Dataset],
        client_ids: Sequence[str],
        round_num: int,
    ) -> tuple[Any, list[ClientFigures]]:
        """One round on `client_data` (one dataset per id): the new server state and the
        figures, one per client id."""
        if len(client_data) != len(client_ids):
            raise ValueError(f"{len(client_data)} datasets for {len(client_ids)} client ids")
        output = self.next(state, list(client_data))
        return output.state, client_figures(round_num, client_ids, output.clients)


def client_figures(
    round_num: int, client_ids: Sequence[str], clients: Sequence[dict]
) -> list[ClientFigures]:
    """A round's CLIENTS-placed figures (a list in the order of the datasets given) named."""
    if len(clients) != len(client_ids):
        raise ValueError(f"{len(clients)} clients' figures for {len(client_ids)} client ids")
    return [
        ClientFigures(
            round_num,
            cid,
            share=float(c["share"]),
            update_norm=float(c["update_norm"]),
            cosine=float(c["cosine"]),
            loss_before=float(c["loss_before"]),
            loss_after=float(c["loss_after"]),
            weight=float(c["weight"]),
        )
        for cid, c in zip(client_ids, clients, strict=True)
    ]


def build_contribution_process(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation = Aggregation(),
) -> ContributionProcess:
    """Federated Averaging with per-client figures, for the same arguments as
    `fedtext.learning.process.build_process` (its optimizers, model and loop), so either serves a
    trainer; compiled once per argument set, as tracing costs seconds."""
    with BUILD_LOCK:
        return _build(model_config, client_optimizer, server_optimizer, aggregation)


@functools.lru_cache(maxsize=8)
def _build(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation,
) -> ContributionProcess:
    runtime.install()
    model_fn = build_model_fn(model_config)
    if aggregation.weighting == "weighted":
        client_weighting = tff.learning.ClientWeighting.NUM_EXAMPLES
        aggregator_factory = tff.aggregators.MeanFactory()
    else:
        client_weighting = tff.learning.ClientWeighting.UNIFORM
        unweighted = (
            build_dp_aggregator(aggregation)
            if aggregation.dp_clipping
            else tff.aggregators.UnweightedMeanFactory()
        )
        aggregator_factory = tff.aggregators.as_weighted_aggregator(unweighted)

    # What build_weighted_fed_avg does for a model function, part by part (fed_avg.py).
    @tff.tensorflow.computation()
    def initial_model_weights_fn():
        return tff.learning.models.ModelWeights.from_model(model_fn())

    weights_type = initial_model_weights_fn.type_signature.result
    update_type = weights_type.trainable
    distributor = tff.learning.templates.build_broadcast_process(weights_type)
    client_work = tff.learning.templates.build_model_delta_client_work(
        model_fn,
        build_client_optimizer(client_optimizer),
        client_weighting,
        # As training.py: the iterator loop is built once per worker session.
        loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
    )
    aggregator = aggregator_factory.create(update_type, tff.TensorType(np.float32))
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        build_server_optimizer(server_optimizer), weights_type
    )
    learning_process = tff.learning.templates.compose_learning_process(
        initial_model_weights_fn, distributor, client_work, aggregator, finalizer
    )
    data_type = client_work.next.type_signature.parameter[2].member
    figures_fn = _build_figures_fn(model_fn, weights_type, update_type, data_type)
    state_type = learning_process.next.type_signature.parameter[0]

    @tff.federated_computation(state_type, tff.FederatedType(data_type, tff.CLIENTS))
    def next_fn(state, client_data):
        # compose_learning_process's round, step by step, keeping the CLIENTS-placed values.
        distributed = distributor.next(state.distributor, state.global_model_weights)
        work = client_work.next(state.client_work, distributed.result, client_data)
        aggregated = aggregator.next(
            state.aggregator, work.result.update, work.result.update_weight
        )
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_state = tff.federated_zip(
            tff.learning.templates.LearningAlgorithmState(
                finalized.result,
                distributed.state,
                work.state,
                aggregated.state,
                finalized.state,
            )
        )
        metrics = tff.federated_zip(
            collections.OrderedDict(
                distributor=distributed.measurements,
                client_work=work.measurements,
                aggregator=aggregated.measurements,
                finalizer=finalized.measurements,
            )
        )
        # Each client gets the cohort's total weight and the averaged delta, and works out
        # its own figures next to its own update and data: nothing per client leaves it but
        # the five numbers.
        total_weight = tff.federated_broadcast(tff.federated_sum(work.result.update_weight))
        mean_update = tff.federated_broadcast(aggregated.result)
        clients = tff.federated_map(
            figures_fn,
            (
                distributed.result,
                work.result.update,
                work.result.update_weight,
                total_weight,
                mean_update,
                client_data,
            ),
        )
        return ContributionOutput(new_state, metrics, clients)

    restore_eager_keras(model_config)
    return ContributionProcess(learning_process, next_fn, aggregation.weighting)


def _build_figures_fn(model_fn, weights_type, update_type, data_type):
    """The per-client computation: share, update norm, cosine with the average, and the
    client's masked loss on its own batches before and after its local training."""

    @tff.tensorflow.computation(
        weights_type, update_type, np.float32, np.float32, update_type, data_type
    )
    def figures(initial, update, weight, total_weight, mean_update, dataset):
        model = model_fn()
        variables = tff.learning.models.ModelWeights.from_model(model)
        update_flat = tf.nest.flatten(update)
        mean_flat = tf.nest.flatten(mean_update)
        norm = tf.linalg.global_norm(update_flat)
        mean_norm = tf.linalg.global_norm(mean_flat)
        dot = tf.add_n([tf.reduce_sum(u * m) for u, m in zip(update_flat, mean_flat, strict=True)])

        def own_loss(trainable):
            tf.nest.map_structure(lambda v, t: v.assign(t), variables.trainable, trainable)
            tf.nest.map_structure(
                lambda v, t: v.assign(t), variables.non_trainable, initial.non_trainable
            )

            def add_batch(sums, batch):
                x, y = batch
                logits = model.predict_on_batch(x, training=False)
                per_char, mask = masked_cross_entropy(y, logits)
                return sums[0] + tf.reduce_sum(per_char * mask), sums[1] + tf.reduce_sum(mask)

            total, count = dataset.reduce((tf.constant(0.0), tf.constant(0.0)), add_batch)
            # 0 / 0 is NaN on purpose: a client with no real character has no loss to show.
            return total / count

        # One tf.function, so its automatic control dependencies order the two passes over the
        # same variables (two separate calls in TFF's graph could both read either weights).
        @tf.function
        def before_and_after():
            before = own_loss(initial.trainable)
            # TFF's delta is initial - trained (model_delta_client_work): trained = initial - delta.
            after = own_loss(tf.nest.map_structure(tf.subtract, initial.trainable, update))
            return before, after

        loss_before, loss_after = before_and_after()
        return collections.OrderedDict(
            share=tf.math.divide_no_nan(weight, total_weight),
            update_norm=norm,
            cosine=tf.math.divide_no_nan(dot, norm * mean_norm),
            loss_before=loss_before,
            loss_after=loss_after,
            weight=weight,
        )

    return figures
