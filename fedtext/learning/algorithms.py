"""FedSGD, FedProx and compressed updates: TFF's own builders and aggregators for the settings
beyond plain Federated Averaging (`fedtext.learning.process` builds that one).

- FedSGD: `tff.learning.algorithms.build_fed_sgd`. Each client sends the gradient of its loss
  over the round's batches at the server's model, without a local step. So that one setting means
  the same step in either algorithm, the server first does what one client step would have done
  with it (clip it to the client's clip norm, scale it by the client's learning rate: the model
  delta of FedAvg's single full-batch step), then applies its own optimizer as FedAvg does.
- FedProx: TFF's FedAvg whose client optimizer adds the proximal term's gradient
  (`ProximalOptimizer`: TFF's own FedProx builders push the wrong way), with mu, the client's
  rate and its clip as hyper-parameters set per run.
- Compression: `tff.aggregators.EncodedSumFactory.quantize_above_threshold` as the sum inside
  TFF's mean, for any of the three algorithms.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.learning.optimizers.optimizer import (
    handle_indexed_slices_gradients,
)

from fedtext.config import Aggregation, FederatedConfig, ModelConfig
from fedtext.learning.aggregators import build_dp_aggregator
from fedtext.learning.optimizers import (
    ClippedOptimizer,
    build_client_optimizer,
    build_server_optimizer,
)
from fedtext.learning.tff_model import model_fn, restore_eager_keras

# Tensors of at most this many numbers are summed as float32: their min and max (8 bytes) and
# the decode would cost more than they save. TFF's default, 20,000, would leave 0.15% of the
# shipped model unquantized (the GRU's 6,144 biases, the output's 87), and all of the tests'
# tiny model.
QUANTIZE_ABOVE = 256
CLIENT_RATE_KEY = "client_learning_rate"  # FedSGD's server: the step one client would take
PROXIMAL_KEY = "proximal_strength"  # FedProx's mu, a hyper-parameter of the client optimizer


class ScaledOptimizer(tff.learning.optimizers.Optimizer):
    """An optimizer whose gradient is first multiplied by a hyper-parameter, so FedSGD's server
    can take the client learning rate's step before its own optimizer."""

    def __init__(self, inner: tff.learning.optimizers.Optimizer):
        self._inner = inner

    def initialize(self, specs):
        return collections.OrderedDict(
            [(CLIENT_RATE_KEY, np.float32(1.0)), ("inner", self._inner.initialize(specs))]
        )

    def next(self, state, weights, gradients):
        scale = state[CLIENT_RATE_KEY]
        scaled = tf.nest.map_structure(lambda g: g * tf.cast(scale, g.dtype), gradients)
        inner_state, weights = self._inner.next(state["inner"], weights, scaled)
        return collections.OrderedDict([(CLIENT_RATE_KEY, scale), ("inner", inner_state)]), weights

    def get_hparams(self, state):
        hparams = collections.OrderedDict(self._inner.get_hparams(state["inner"]))
        hparams[CLIENT_RATE_KEY] = state[CLIENT_RATE_KEY]
        return hparams

    def set_hparams(self, state, hparams):
        inner = collections.OrderedDict((k, v) for k, v in hparams.items() if k != CLIENT_RATE_KEY)
        return collections.OrderedDict(
            [
                (CLIENT_RATE_KEY, hparams.get(CLIENT_RATE_KEY, state[CLIENT_RATE_KEY])),
                ("inner", self._inner.set_hparams(state["inner"], inner)),
            ]
        )


class ProximalOptimizer(tff.learning.optimizers.Optimizer):
    """FedProx's client step: each gradient gets mu x (weights - the weights the client was
    sent), the gradient of (mu / 2) ||w - w0||^2, before the inner optimizer (and its clip).

    Written by hand because TFF 0.87's `build_weighted_fed_prox` adds mu x (w0 - w), the
    opposite sign, which pushes each client away from the server's model
    (tests/test_communication.py shows it). w0 is the weights at the client's first step, kept
    in the optimizer's state, which TFF starts afresh for every client and round.
    """

    def __init__(self, inner: tff.learning.optimizers.Optimizer):
        self._inner = inner

    def initialize(self, specs):
        return collections.OrderedDict(
            [
                (PROXIMAL_KEY, np.float32(0.0)),
                ("started", np.int32(0)),
                ("initial", tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), specs)),
                ("inner", self._inner.initialize(specs)),
            ]
        )

    def next(self, state, weights, gradients):
        gradients = handle_indexed_slices_gradients(gradients)
        first = tf.equal(state["started"], 0)
        initial = tf.nest.map_structure(
            lambda w, i: tf.where(first, w, i), weights, state["initial"]
        )
        mu = state[PROXIMAL_KEY]
        pulled = tf.nest.map_structure(
            lambda g, w, i: g + tf.cast(mu, g.dtype) * (w - i), gradients, weights, initial
        )
        inner_state, weights = self._inner.next(state["inner"], weights, pulled)
        return collections.OrderedDict(
            [
                (PROXIMAL_KEY, mu),
                ("started", tf.constant(1, tf.int32)),
                ("initial", initial),
                ("inner", inner_state),
            ]
        ), weights

    def get_hparams(self, state):
        hparams = collections.OrderedDict(self._inner.get_hparams(state["inner"]))
        hparams[PROXIMAL_KEY] = state[PROXIMAL_KEY]
        return hparams

    def set_hparams(self, state, hparams):
        inner = collections.OrderedDict((k, v) for k, v in hparams.items() if k != PROXIMAL_KEY)
        new = collections.OrderedDict(state)
        new[PROXIMAL_KEY] = hparams.get(PROXIMAL_KEY, state[PROXIMAL_KEY])
        new["inner"] = self._inner.set_hparams(state["inner"], inner)
        return new


def model_aggregator(aggregation: Aggregation, weighted: bool):
    """TFF's mean of the clients' updates for `aggregation`: weighted by the clients' examples or
    uniform (and then TFF's DP mean, when private), with the sum quantized when compressed.

    `weighted` is what the builder takes: FedSGD takes only weighted factories, so a uniform
    mean is wrapped by `tff.aggregators.as_weighted_aggregator`, which ignores the weights.
    """
    aggregators = tff.aggregators
    value_sum = None
    if aggregation.compression_bits:
        value_sum = aggregators.EncodedSumFactory.quantize_above_threshold(
            quantization_bits=aggregation.compression_bits, threshold=QUANTIZE_ABOVE
        )
    if aggregation.weighting == "weighted":
        return aggregators.MeanFactory(value_sum_factory=value_sum)
    if aggregation.dp_clipping:
        uniform = build_dp_aggregator(aggregation)
    else:
        uniform = aggregators.UnweightedMeanFactory(value_sum_factory=value_sum)
    return aggregators.as_weighted_aggregator(uniform) if weighted else uniform


def build_algorithm_process(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation,
):
    """TFF's FedSGD, FedProx or FedAvg with a compressed mean, for `aggregation` (the caller holds
    `BUILD_LOCK` and caches the result: tracing costs seconds)."""
    algorithms = tff.learning.algorithms
    loop = tff.learning.LoopImplementation.DATASET_ITERATOR  # as fedtext.learning.process
    uniform = aggregation.weighting == "uniform"
    if aggregation.algorithm == "fedsgd":
        server = ClippedOptimizer(ScaledOptimizer(build_server_optimizer(server_optimizer)))
        process = algorithms.build_fed_sgd(
            model_fn(model_config),
            server_optimizer_fn=server,
            model_aggregator=model_aggregator(aggregation, weighted=True),
            loop_implementation=loop,
        )
    else:
        client = build_client_optimizer(client_optimizer)
        if aggregation.algorithm == "fedprox":
            client = ProximalOptimizer(client)
        build = (
            algorithms.build_unweighted_fed_avg if uniform else algorithms.build_weighted_fed_avg
        )
        process = build(
            model_fn(model_config),
            client_optimizer_fn=client,
            server_optimizer_fn=build_server_optimizer(server_optimizer),
            model_aggregator=model_aggregator(aggregation, weighted=not uniform),
            loop_implementation=loop,
        )
    restore_eager_keras(model_config)
    return process


def describe(config: FederatedConfig) -> str:
    """One line on what a run's round is and what it sends, for the command line."""
    name = {
        "fedavg": "Federated Averaging",
        "fedsgd": "FedSGD (each client sends one gradient, no local step)",
        "fedprox": f"FedProx (proximal strength {config.proximal_strength:g})",
    }[config.algorithm]
    parts = [name]
    if config.compression_bits:
        parts.append(f"updates quantized to {config.compression_bits} bits")
    if config.dropout_chance:
        parts.append(f"each sampled client drops out with chance {config.dropout_chance:g}")
    if config.straggler_chance:
        parts.append(f"lags with chance {config.straggler_chance:g}")
    return "; ".join(parts)
