"""The tutorial's character model (embedding, GRU, dense), masked metrics, and weight files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import ModelConfig
from fedtext.vocab import PAD_ID

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
# The shipped Dickens model; FEDTEXT_BASE_MODEL points elsewhere (tests use a tiny one).
BASE_MODEL_DIR = Path(os.environ.get("FEDTEXT_BASE_MODEL", ASSETS_DIR / "dickens"))
WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "model.json"


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit its model."""


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


class MaskedLoss(tf.keras.losses.Loss):
    """Sparse cross-entropy over real characters only: padding adds nothing and counts nothing."""

    def __init__(self, name: str = "masked_loss"):
        super().__init__(name=name, reduction=tf.keras.losses.Reduction.NONE)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int64)
        per_char = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), per_char.dtype)
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
        y_true = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
        y_pred = tf.reshape(y_pred, [-1, tf.shape(y_pred)[-1]])
        per_char = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), self.dtype)
        return super().update_state(per_char, mask)


def compile_for_evaluation(model: tf.keras.Model) -> tf.keras.Model:
    model.compile(loss=MaskedLoss(), metrics=[MaskedMeanLoss(), MaskedAccuracy()])
    return model


def save_weights(model: tf.keras.Model, config: ModelConfig, directory: str | Path) -> Path:
    """Store weights as float16 (half the size, 8 MB for the full model) beside the config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"w{i:02d}": w.astype(np.float16) for i, w in enumerate(model.get_weights())}
    tmp = directory / (WEIGHTS_FILE + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    return directory / WEIGHTS_FILE


def load_config(directory: str | Path) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        return ModelConfig(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise WeightsError(f"no model config at {path}") from None
    except (OSError, ValueError, TypeError) as error:
        raise WeightsError(f"unreadable model config {path}: {error}") from None


def load_weights_arrays(directory: str | Path) -> list[np.ndarray]:
    """The float32 weight arrays stored in `directory`, in layer order."""
    path = Path(directory) / WEIGHTS_FILE
    try:
        with np.load(path) as stored:
            return [stored[k].astype(np.float32) for k in sorted(stored.files)]
    except FileNotFoundError:
        raise WeightsError(f"no weights file at {path}") from None
    except Exception as error:  # a truncated or foreign file raises many kinds of error
        raise WeightsError(f"unreadable weights file {path}: {type(error).__name__}") from None


def load_model(directory: str | Path = BASE_MODEL_DIR) -> tuple[tf.keras.Model, ModelConfig]:
    """Rebuild the model saved in `directory` and load its weights."""
    config = load_config(directory)
    model = build_model(config)
    arrays = load_weights_arrays(directory)
    expected = [w.shape for w in model.get_weights()]
    if [a.shape for a in arrays] != expected:
        raise WeightsError(f"weights in {directory} do not fit the model in {CONFIG_FILE}")
    model.set_weights(arrays)
    return model, config
