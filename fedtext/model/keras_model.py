"""The tutorial's character model (embedding, GRU, dense), its masked metrics, and rebuilding a
stored one; weight files themselves are in `weights`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import ModelConfig
from fedtext.model.weights import (
    CONFIG_FILE,
    KERAS_FILE,
    WeightsError,
    base_model_dir,
    load_config,
    load_weights_arrays,
    save_arrays,
)
from fedtext.text.vocab import PAD_ID

# Held while Keras models are built, used eagerly or traced, in any thread: TFF's tracing swaps
# Keras' model classes process-wide (an eager model's evaluate fails meanwhile), and on CPython
# 3.11.7 two threads converting code with AutoGraph at once can fail in `ast` (gh-106905).
BUILD_LOCK = threading.RLock()


def build_model(config: ModelConfig = ModelConfig()) -> tf.keras.Model:
    """Embedding -> GRU -> Dense logits over the vocabulary, as in the tutorial."""
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Embedding(config.vocab_size, config.embedding_dim),
            tf.keras.layers.GRU(
                config.rnn_units,
                return_sequences=True,
                recurrent_initializer="glorot_uniform",
            ),
            tf.keras.layers.Dense(config.vocab_size),
        ]
    )
    model.build([None, None])
    return model


def masked_cross_entropy(targets, logits) -> tuple[tf.Tensor, tf.Tensor]:
    """Cross-entropy at each position, and 1.0 where the target is a real character (0.0 on
    padding): every masked loss and metric of fedtext is built from these two."""
    targets = tf.cast(targets, tf.int64)
    per_char = tf.keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    return per_char, tf.cast(tf.not_equal(targets, PAD_ID), per_char.dtype)


class MaskedLoss(tf.keras.losses.Loss):
    """Sparse cross-entropy over real characters only: padding adds nothing and counts nothing."""

    def __init__(self, name: str = "masked_loss"):
        super().__init__(name=name, reduction=tf.keras.losses.Reduction.NONE)

    def call(self, y_true, y_pred):
        per_char, mask = masked_cross_entropy(y_true, y_pred)
        return tf.math.divide_no_nan(tf.reduce_sum(per_char * mask), tf.reduce_sum(mask))

    def get_config(self):
        return {"name": self.name}


class MaskedAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
    """Next-character accuracy over real characters only."""

    def __init__(self, name: str = "accuracy", dtype=tf.float32):
        super().__init__(name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.reshape(y_true, [-1, 1])
        y_pred = tf.reshape(y_pred, [-1, tf.shape(y_pred)[-1]])
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), self.dtype)
        return super().update_state(y_true, y_pred, mask)


class MaskedMeanLoss(tf.keras.metrics.Mean):
    """Cross-entropy averaged over all real characters seen, however they were batched."""

    def __init__(self, name: str = "loss", dtype=tf.float32):
        super().__init__(name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.reshape(y_pred, [-1, tf.shape(y_pred)[-1]])
        per_char, mask = masked_cross_entropy(tf.reshape(y_true, [-1]), y_pred)
        return super().update_state(per_char, tf.cast(mask, self.dtype))


def compile_for_evaluation(model: tf.keras.Model) -> tf.keras.Model:
    model.compile(loss=MaskedLoss(), metrics=[MaskedMeanLoss(), MaskedAccuracy()])
    return model


def save_weights(model: tf.keras.Model, config: ModelConfig, directory: str | Path) -> Path:
    return save_arrays(model.get_weights(), config, directory)


def save_keras_file(weights: list[np.ndarray], config: ModelConfig, directory: str | Path) -> Path:
    """The model in Keras' own format (`model.keras` in `directory`), which
    `tf.keras.models.load_model(path, compile=False)` opens without fedtext. Its weights are
    rounded to float16 and back, as fedtext's own file stores them: both predict the same."""
    path = Path(directory) / KERAS_FILE
    tmp = path.with_name(".tmp." + KERAS_FILE)  # a reader (the page's zip) sees all or nothing
    with BUILD_LOCK:  # TFF's tracing in another thread swaps Keras' classes meanwhile
        model = build_model(config)
        model.set_weights([np.asarray(w).astype(np.float16).astype(np.float32) for w in weights])
        model.save(tmp)
    tmp.replace(path)
    return path


def load_model(directory: str | Path | None = None) -> tuple[tf.keras.Model, ModelConfig]:
    """Rebuild the model saved in `directory` (default: the base model) and load its weights."""
    directory = directory or base_model_dir()
    config = load_config(directory)
    model = build_model(config)
    arrays = load_weights_arrays(directory)
    expected = [w.shape for w in model.get_weights()]
    if [a.shape for a in arrays] != expected:
        raise WeightsError(f"weights in {directory} do not fit the model in {CONFIG_FILE}")
    model.set_weights(arrays)
    return model, config
