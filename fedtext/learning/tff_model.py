"""fedtext's Keras model as a TFF model: its input, masked loss and metrics."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import ModelConfig
from fedtext.model.keras_model import (
    MaskedAccuracy,
    MaskedLoss,
    MaskedMeanLoss,
    build_model,
    compile_for_evaluation,
)

_INPUT_SPEC = (
    tf.TensorSpec(shape=[None, None], dtype=tf.int64),
    tf.TensorSpec(shape=[None, None], dtype=tf.int64),
)


def model_fn(model_config: ModelConfig):
    def build():
        return tff_from_keras(build_model(model_config))

    return build


def tff_from_keras(keras_model: tf.keras.Model):
    return tff.learning.models.from_keras_model(
        keras_model,
        input_spec=_INPUT_SPEC,
        loss=MaskedLoss(),
        metrics=[MaskedMeanLoss(name="char_loss"), MaskedAccuracy()],
    )


def restore_eager_keras(model_config: ModelConfig) -> None:
    """Call after TFF has traced a computation with Keras models in it.

    Keras models, layers and metrics built while TFF traces (graph mode) rebase their classes
    onto Keras' v1 bases for the whole process, which breaks every eager model of those classes
    (evaluate, fit, calls). Building the same classes eagerly rebases them back.
    """
    compile_for_evaluation(build_model(model_config))
