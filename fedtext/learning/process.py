"""TFF's federated process for a run's settings, built once per kind and shared: the algorithm,
its optimizers and aggregator, and several rounds composed into one computation."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow_federated as tff

from fedtext.config import Aggregation, FederatedConfig, ModelConfig
from fedtext.distribution import runtime
from fedtext.learning.aggregators import build_model_aggregator, simulate_secure_sums
from fedtext.learning.algorithms import CLIENT_RATE_KEY, PROXIMAL_KEY, build_algorithm_process
from fedtext.learning.contributions import build_contribution_process
from fedtext.learning.optimizers import (
    CLIP_NORM_KEY,
    build_client_optimizer,
    build_server_optimizer,
    clip_value,
)
from fedtext.learning.tff_model import model_fn, restore_eager_keras
from fedtext.model.keras_model import BUILD_LOCK


def build_process(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation = Aggregation(),
):
    """TFF's Federated Averaging; learning rates and clipping are set per run.

    Built once per (model, optimizer kinds, aggregation): tracing costs seconds, and the rates
    and the clip norm live in the optimizers' hyper-parameters, so changing them needs no
    rebuild. `aggregation` picks weighted or uniform averaging, and TFF's DP mean.
    """
    if aggregation.client_figures and not aggregation.dp_clipping:
        # The same round from TFF's parts (state interchangeable with this one's), whose
        # output also holds each client's figures.
        return build_contribution_process(
            model_config, client_optimizer, server_optimizer, aggregation
        )
    with BUILD_LOCK:
        return _build_process(model_config, client_optimizer, server_optimizer, aggregation)


@functools.lru_cache(maxsize=8)
def _build_process(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation,
):
    runtime.install()
    if aggregation.algorithm != "fedavg" or aggregation.compression_bits:
        return build_algorithm_process(
            model_config, client_optimizer, server_optimizer, aggregation
        )
    common = dict(
        client_optimizer_fn=build_client_optimizer(client_optimizer),
        server_optimizer_fn=build_server_optimizer(server_optimizer),
        # The default, DATASET_REDUCE, builds the client's training function anew inside the
        # worker on every client call; the iterator loop is built once per worker session
        # (2 clients x 5 batches: 3.96 s -> 3.70 s a round, interleaved; README, Benchmarks).
        loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
    )
    algorithms = tff.learning.algorithms
    # TFF's weighted process refuses DP aggregators: they bound each client's influence, which a
    # weight by data size would undo; so DP is always uniform (FederatedConfig checks it).
    common["model_aggregator"] = build_model_aggregator(aggregation)
    if aggregation.weighting == "weighted":
        process = algorithms.build_weighted_fed_avg(model_fn(model_config), **common)
    else:
        process = algorithms.build_unweighted_fed_avg(model_fn(model_config), **common)
    if aggregation.aggregator == "secure":
        process = simulate_secure_sums(process)
    restore_eager_keras(model_config)
    return process


def set_hparams(process, state, config: FederatedConfig):
    hparams = process.get_hparams(state)
    # FedAvg's and FedProx's client work hold the client's rate and clip (and FedProx's mu);
    # FedSGD's server, which takes the client's step, holds them beside its own rate.
    for part in ("client_work", "finalizer"):
        if CLIP_NORM_KEY in hparams[part]:
            hparams[part][CLIP_NORM_KEY] = np.float32(clip_value(config.clip_norm))
    if "learning_rate" in hparams["client_work"]:
        hparams["client_work"]["learning_rate"] = np.float32(config.client_learning_rate)
    if PROXIMAL_KEY in hparams["client_work"]:
        hparams["client_work"][PROXIMAL_KEY] = np.float32(config.proximal_strength)
    if CLIENT_RATE_KEY in hparams["finalizer"]:
        hparams["finalizer"][CLIENT_RATE_KEY] = np.float32(config.client_learning_rate)
    hparams["finalizer"]["learning_rate"] = np.float32(config.server_learning_rate)
    return process.set_hparams(state, hparams)


def set_server_rate(process, state, rate: float):
    hparams = process.get_hparams(state)
    hparams["finalizer"]["learning_rate"] = np.float32(rate)
    return process.set_hparams(state, hparams)


@functools.lru_cache(maxsize=8)
def rounds_in_one_call(process, count: int):
    """`count` rounds of `process` composed into one TFF computation: the server state stays
    in the worker from one round to the next. Takes (state, [each round's client datasets]),
    returns (state after the last round, [each round's metrics])."""
    state_type, clients_type = process.next.type_signature.parameter

    with BUILD_LOCK:

        @tff.federated_computation(state_type, tff.StructType([clients_type] * count))
        def rounds(state, cohorts):
            metrics = []
            for i in range(count):
                output = process.next(state, cohorts[i])
                state = output.state
                metrics.append(output.metrics)
            return state, metrics

    return rounds
