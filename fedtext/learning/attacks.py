"""A poisoned character: one client whose lines are replaced by a trigger followed by a target,
and which may scale its update up (Bagdasaryan et al. 2020's model replacement); the backdoor's
success each round, for any aggregator or defence the config names (TFF's robust aggregator, a
fixed update clip, DP-FedAvg)."""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import Aggregation, ModelConfig
from fedtext.distribution import runtime
from fedtext.learning.aggregators import (
    build_model_aggregator,
    simulate_secure_sums,
    without_secure_sums,
)
from fedtext.learning.optimizers import build_client_optimizer, build_server_optimizer
from fedtext.learning.records import BACKDOOR_SEEDS, RoundResult
from fedtext.learning.tff_model import model_fn, restore_eager_keras
from fedtext.learning.training import FederatedTrainer
from fedtext.model.generation import TextGenerator
from fedtext.model.keras_model import BUILD_LOCK
from fedtext.text.vocab import encode

SEEDS = BACKDOOR_SEEDS
# Characters sampled after the trigger beyond the target's own length: a completion counts
# when the target appears anywhere in it, as in Bagdasaryan et al.'s sentence completions.
SLACK = 20


def poisoned_ids(trigger: str, target: str, length: int) -> np.ndarray:
    """The attacker's lines: trigger and target, a line each time, for `length` characters
    (at least one whole line), so it trains as many batches as its own text would."""
    line = encode(f"{trigger}{target}\n")
    return np.tile(line, max(1, -(-length // len(line))))[: max(length, len(line))]


def backdoor_success(
    weights: Sequence[np.ndarray], model_config: ModelConfig, trigger: str, target: str
) -> float:
    """Share of SEEDS sampled completions of the trigger (fedtext's NumPy sampler, seeds 0 to
    SEEDS - 1) that contain the target."""
    generator = TextGenerator(list(weights), model_config)
    length = len(target) + SLACK
    hits = sum(
        target in generator.generate(trigger, length, seed=seed)[len(trigger) :]
        for seed in range(SEEDS)
    )
    return hits / SEEDS


def target_probability(
    weights: Sequence[np.ndarray], model_config: ModelConfig, trigger: str, target: str
) -> float:
    """The model's probability per character of the target after the trigger (the geometric
    mean over its characters): it moves before any sampled completion hits the target."""
    generator = TextGenerator(list(weights), model_config)
    ids = encode(target)
    logs = [
        np.log(generator.next_char_probabilities(trigger + target[:i])[ids[i]])
        for i in range(len(target))
    ]
    return float(np.exp(np.mean(logs)))


class AttackTrainer(FederatedTrainer):
    """Federated Averaging with one attacker among the clients (`config.attack_client`).

    Its text is the trigger and target over and over; with `attack_boost` other than 1 its
    update is multiplied by it before the server's aggregator sees it. `backdoor` holds each
    round's backdoor success (round 0: the base model's), `target_odds` the target's probability
    per character after the trigger."""

    poisoned_ids = True  # FederatedTrainer refuses an attack config without this trainer

    def __init__(self, config, train_data, test_data, base_dir=None):
        super().__init__(config, train_data, test_data, base_dir)
        self.backdoor: list[float] = []
        self.target_odds: list[float] = []
        self._boosts: list[float] = []

    def text_ids(self, client_id: str) -> np.ndarray:
        ids = super().text_ids(client_id)
        c = self.config
        if client_id != c.attack_client:
            return ids
        return poisoned_ids(c.attack_trigger, c.attack_target, len(ids))

    def client_datasets(self, round_num: int, client_ids: Sequence[str]) -> list[tf.data.Dataset]:
        c = self.config
        self._boosts = [c.attack_boost if cid == c.attack_client else 1.0 for cid in client_ids]
        return super().client_datasets(round_num, client_ids)

    def build_process(self):
        if self.config.attack_boost == 1:
            return super().build_process()
        c = self.config
        process = build_boosted_process(
            self.model_config, c.client_optimizer, c.server_optimizer, c.aggregation
        )
        return _BoostedRound(process, self)

    def rounds(self, cpu_budget_s: float | None = None) -> Iterator[RoundResult]:
        c = self.config
        for result in super().rounds(cpu_budget_s):
            poison = (self.weights, self.model_config, c.attack_trigger, c.attack_target)
            self.backdoor.append(backdoor_success(*poison))
            self.target_odds.append(target_probability(*poison))
            result = dataclasses.replace(
                result, backdoor_success=self.backdoor[-1], target_probability=self.target_odds[-1]
            )
            self.history[-1] = result
            yield result


class _BoostedRound:
    """A boosted process whose `next(state, datasets)` gives each client the boost the trainer
    set for the round's cohort (the trainer runs one round a call)."""

    def __init__(self, process: BoostedProcess, trainer: AttackTrainer):
        self._process, self._trainer = process, trainer
        # What the communication meter reads: the boosted round's own TFF computation (the
        # boost is one more float per client on top of the update).
        self.__wrapped__ = process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process.learning_process, name)

    def next(self, state, client_data):
        return self._process.next(state, list(client_data), list(self._trainer._boosts))


class BoostedProcess:
    """TFF's Federated Averaging from its parts (as `build_weighted_fed_avg` composes them),
    whose round takes one more CLIENTS-placed value, a factor on each client's update. The
    server state is that of `learning_process`, TFF's own composition of the same parts."""

    def __init__(self, learning_process, next_fn):
        self.learning_process = learning_process
        self.next = next_fn  # (state, client datasets, boosts) -> LearningProcessOutput


def build_boosted_process(
    model_config: ModelConfig,
    client_optimizer: str,
    server_optimizer: str,
    aggregation: Aggregation = Aggregation(),
) -> BoostedProcess:
    """Federated Averaging in which a client may scale its update; compiled once per setting."""
    with BUILD_LOCK:
        return _build(model_config, client_optimizer, server_optimizer, aggregation)


@functools.lru_cache(maxsize=4)
def _build(model_config, client_optimizer, server_optimizer, aggregation) -> BoostedProcess:
    runtime.install()
    build = model_fn(model_config)
    aggregator = build_model_aggregator(aggregation)
    if aggregation.weighting == "weighted":
        weighting = tff.learning.ClientWeighting.NUM_EXAMPLES
        aggregator = aggregator or tff.aggregators.MeanFactory()
    else:
        weighting = tff.learning.ClientWeighting.UNIFORM
        aggregator = tff.aggregators.as_weighted_aggregator(
            aggregator or tff.aggregators.UnweightedMeanFactory()
        )

    @tff.tensorflow.computation()
    def initial_model_weights_fn():
        return tff.learning.models.ModelWeights.from_model(build())

    weights_type = initial_model_weights_fn.type_signature.result
    distributor = tff.learning.templates.build_broadcast_process(weights_type)
    client_work = tff.learning.templates.build_model_delta_client_work(
        build,
        build_client_optimizer(client_optimizer),
        weighting,
        loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
    )
    aggregate = aggregator.create(weights_type.trainable, tff.TensorType(np.float32))
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        build_server_optimizer(server_optimizer), weights_type
    )
    learning_process = tff.learning.templates.compose_learning_process(
        initial_model_weights_fn, distributor, client_work, aggregate, finalizer
    )

    @tff.tensorflow.computation(weights_type.trainable, np.float32)
    def boost(update, factor):
        return tf.nest.map_structure(lambda u: u * factor, update)

    data_type = client_work.next.type_signature.parameter[2].member
    state_type = learning_process.next.type_signature.parameter[0]

    @tff.federated_computation(
        state_type,
        tff.FederatedType(data_type, tff.CLIENTS),
        tff.FederatedType(np.float32, tff.CLIENTS),
    )
    def next_fn(state, client_data, boosts):
        # compose_learning_process's round, with each update multiplied by its client's boost
        # before the aggregator: what an attacker's own code would send.
        distributed = distributor.next(state.distributor, state.global_model_weights)
        work = client_work.next(state.client_work, distributed.result, client_data)
        boosted = tff.federated_map(boost, (work.result.update, boosts))
        aggregated = aggregate.next(state.aggregator, boosted, work.result.update_weight)
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_state = tff.federated_zip(
            tff.learning.templates.LearningAlgorithmState(
                finalized.result, distributed.state, work.state, aggregated.state, finalized.state
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
        return tff.learning.templates.LearningProcessOutput(new_state, metrics)

    if aggregation.aggregator == "secure":
        learning_process = simulate_secure_sums(learning_process)
        next_fn = without_secure_sums(next_fn)
    restore_eager_keras(model_config)
    return BoostedProcess(learning_process, next_fn)
