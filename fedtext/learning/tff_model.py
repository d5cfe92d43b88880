"""fedtext's Keras model as a TFF model: its input, masked loss and metrics."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import ModelConfig
from fedtext.model.keras_model import MaskedAccuracy, MaskedLoss, MaskedMeanLoss, build_model

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
