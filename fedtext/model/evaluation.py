"""Centralised evaluation of a Keras character model: a client's lines, or random text."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedtext.config import SEQ_LENGTH
from fedtext.model.batches import preprocess
from fedtext.text.vocab import CHARS


def evaluate_batches(model: tf.keras.Model, batches: tf.data.Dataset) -> tuple[float, float]:
    """(loss per character, accuracy) of a model compiled with the masked metrics."""
    results = model.evaluate(batches, verbose=0, return_dict=True)
    return float(results["loss"]), float(results["accuracy"])


def evaluate_snippets(
    model: tf.keras.Model,
    snippets: tf.data.Dataset,
    batch_size: int = 64,
    seq_length: int = SEQ_LENGTH,
) -> tuple[float, float]:
    """Evaluate on a ClientData dataset of {'snippets': ...}, padding masked."""
    return evaluate_batches(model, preprocess(snippets, batch_size, seq_length))


def evaluate_texts(
    model: tf.keras.Model, texts: list[str], batch_size: int = 64, seq_length: int = SEQ_LENGTH
) -> tuple[float, float]:
    snippets = tf.data.Dataset.from_tensor_slices({"snippets": tf.constant(texts)})
    return evaluate_snippets(model, snippets, batch_size, seq_length)


def evaluate_random(
    model: tf.keras.Model,
    seed: int = 0,
    batches: int = 4,
    batch_size: int = 8,
    seq_length: int = SEQ_LENGTH,
) -> tuple[float, float]:
    """The tutorial's sanity check: uniformly random characters score about 1/86."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, len(CHARS) + 1, size=(batches * batch_size, seq_length + 1))
    data = tf.data.Dataset.from_tensor_slices((ids[:, :-1], ids[:, 1:])).batch(batch_size)
    return evaluate_batches(model, data)
