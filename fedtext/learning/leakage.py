"""What one update gives away: the characters a client typed, read off the embedding rows its
update moved (FILM, Gupta et al. 2022, reads a batch's words off embedding gradients), and how
often, read off the output layer's bias update with the base model's predictions as the prior
(LLG, Wainakh et al. 2022, reads labels off the output layer). Scored against the client's
true character counts in the batches it trained on.

The update is what the server receives in one TFF round from a cohort of one (plain mean) or
from a cohort through TFF's secure aggregator (then only the cohort's sum): the round runs with
server SGD at rate 1, so the new global model is the base minus exactly what the server got."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import ConfigError, FederatedConfig, ModelConfig
from fedtext.learning.records import Leak, pearson
from fedtext.learning.training import FederatedTrainer
from fedtext.model.generation import TextGenerator
from fedtext.model.keras_model import BUILD_LOCK, build_model
from fedtext.text.vocab import PAD_ID, encode

PRIOR_LENGTH = 1000  # characters the base model samples for its prior: about 1 s at full size
# At least this many characters the update shows the client never typed, to fit the update's
# scale on them; with fewer, the scale is the client's learning rate times its steps.
MIN_UNTYPED = 3


def moved_rows(embedding_update: np.ndarray) -> frozenset[int]:
    """The ids whose embedding rows changed at all: a row's gradient is zero unless its
    character is an input (padding never trains: its targets are masked)."""
    rows = np.flatnonzero(np.abs(embedding_update).max(axis=1) > 0)
    return frozenset(int(i) for i in rows if i != PAD_ID)


def base_prior(weights: Sequence[np.ndarray], model_config: ModelConfig, seed: int = 0):
    """The base model's mean next-character distribution along a text it samples itself: what
    the server expects a client's predictions to be, knowing no client's text."""
    text = TextGenerator(list(weights), model_config).generate("\n", PRIOR_LENGTH, seed=seed)
    with BUILD_LOCK:  # an eager Keras model while another thread may trace TFF
        model = build_model(model_config)
        model.set_weights(list(weights))
        logits = model(encode(text)[None, :-1], training=False)
    prior = tf.nn.softmax(tf.cast(logits[0], tf.float64)).numpy().mean(axis=0)
    prior[PAD_ID] = 0.0
    return prior / prior.sum()


def estimate_counts(
    bias_update: np.ndarray,
    moved: frozenset[int],
    prior: np.ndarray,
    characters: float,
    fallback_scale: float,
) -> np.ndarray:
    """Counts of each target character, from the output bias's update.

    Each local step's bias gradient is (mean prediction - target frequency) per id, and the
    update is the steps' gradients times the learning rate, so frequency = prior - update /
    scale. The scale is fitted on the ids the embedding says were never typed (their
    frequency is 0, so their update is scale x prior); that also absorbs gradient clipping.
    """
    untyped = [i for i in range(len(prior)) if i != PAD_ID and i not in moved]
    scale = fallback_scale
    if len(untyped) >= MIN_UNTYPED:
        fitted = float(bias_update[untyped] @ prior[untyped] / (prior[untyped] @ prior[untyped]))
        scale = fitted if fitted > 0 else fallback_scale
    frequency = np.clip(prior - bias_update / scale, 0.0, None)
    frequency[PAD_ID] = 0.0
    total = frequency.sum()
    return frequency / total * characters if total > 0 else frequency


def true_counts(datasets: Sequence[tf.data.Dataset], vocab_size: int):
    """(ids in the inputs, count of each target id) of the batches clients trained on."""
    inputs, targets = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for dataset in datasets:
        for x, y in dataset.as_numpy_iterator():
            inputs.append(x.ravel())
            targets.append(y.ravel())
    x, y = np.concatenate(inputs), np.concatenate(targets)
    typed = frozenset(int(i) for i in np.unique(x) if i != PAD_ID)
    counts = np.bincount(y[y != PAD_ID], minlength=vocab_size).astype(np.float64)
    return typed, counts


def probe(
    config: FederatedConfig,
    train_data,
    test_data,
    client_id: str,
    base_dir: str | Path | None = None,
    cohort: Sequence[str] = (),
) -> Leak:
    """One TFF round from the base model with `config`'s client settings: `client_id` alone
    (plain), or with `cohort` through `config.aggregator` (secure: the server gets the sum);
    then the server's reading of what it received, scored against `client_id`'s text."""
    seen = tuple(dict.fromkeys((client_id, *cohort)))
    if config.aggregator == "plain" and len(seen) > 1:
        raise ConfigError("the plain aggregator shows each update: probe one client alone")
    run = dataclasses.replace(
        config,
        client_ids=seen,
        clients_per_round=0,
        rounds=1,
        eval_every=1,
        rounds_per_call=1,
        server_optimizer="sgd",  # the new model is the base minus what the server received
        server_learning_rate=1.0,
        server_schedule="constant",
        client_figures=False,
    )
    trainer = FederatedTrainer(run, train_data, test_data, base_dir)
    base = [w.copy() for w in trainer.weights]
    prior = base_prior(base, trainer.model_config)
    results = list(trainer.rounds())
    update = [b - w for b, w in zip(base, trainer.weights, strict=True)]
    vocab = trainer.model_config.vocab_size
    datasets = trainer.client_datasets(1, seen)
    true_set, counts = true_counts(datasets[:1], vocab)
    cohort_set, _ = true_counts(datasets, vocab)
    moved = moved_rows(update[0])
    # What the server knows of the text's size: the sequences trained on, each seq_length long
    # (the last one of a client may be shorter, padded).
    characters = results[-1].num_examples * run.seq_length
    steps = run.client_learning_rate * run.batches_per_client  # plain SGD's scale, unclipped
    recovered = estimate_counts(update[-1], moved, prior, characters, steps)
    return Leak(
        client_id,
        seen,
        run.aggregator,
        moved,
        recovered,
        counts,
        true_set,
        cohort_set,
        pearson(-update[-1][1:], counts[1:]),
        pearson(prior[1:], counts[1:]),
        pearson((recovered - prior * recovered.sum())[1:], (counts - prior * counts.sum())[1:]),
    )
