"""The client and server optimizers of a federated run, built from TFF's own optimizers.

Imports TFF: training imports this module only when it builds a process."""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.learning.optimizers.optimizer import (
    handle_indexed_slices_gradients,
)

from fedtext.config import ADAM_EPSILON, SERVER_MOMENTUM

CLIP_NORM_KEY = "clip_norm"


class ClippedOptimizer(tff.learning.optimizers.Optimizer):
    """A TFF optimizer whose gradients are first clipped to a global norm.

    TFF's optimizers have no clipping of their own. The norm is a hyper-parameter beside the
    inner optimizer's, so one compiled process serves every norm; infinity turns it off.
    """

    def __init__(self, inner: tff.learning.optimizers.Optimizer):
        self._inner = inner

    def initialize(self, specs):
        return collections.OrderedDict(
            [(CLIP_NORM_KEY, np.float32(np.inf)), ("inner", self._inner.initialize(specs))]
        )

    def next(self, state, weights, gradients):
        # The embedding's gradient comes as IndexedSlices, which global_norm cannot take.
        gradients = handle_indexed_slices_gradients(gradients)
        norm = tf.linalg.global_norm(tf.nest.flatten(gradients))
        # clip / 0 and inf / norm are inf: no scaling. A NaN norm stays NaN, so the trainer's
        # divergence check still sees it.
        scale = tf.minimum(1.0, state[CLIP_NORM_KEY] / norm)
        clipped = tf.nest.map_structure(lambda g: g * tf.cast(scale, g.dtype), gradients)
        inner_state, weights = self._inner.next(state["inner"], weights, clipped)
        return collections.OrderedDict(
            [(CLIP_NORM_KEY, state[CLIP_NORM_KEY]), ("inner", inner_state)]
        ), weights

    def get_hparams(self, state):
        hparams = collections.OrderedDict(self._inner.get_hparams(state["inner"]))
        hparams[CLIP_NORM_KEY] = state[CLIP_NORM_KEY]
        return hparams

    def set_hparams(self, state, hparams):
        inner = collections.OrderedDict((k, v) for k, v in hparams.items() if k != CLIP_NORM_KEY)
        return collections.OrderedDict(
            [
                (CLIP_NORM_KEY, hparams.get(CLIP_NORM_KEY, state[CLIP_NORM_KEY])),
                ("inner", self._inner.set_hparams(state["inner"], inner)),
            ]
        )


def build_client_optimizer(kind: str) -> ClippedOptimizer:
    """SGD or Adam on each client, with gradient clipping; rates are set per run."""
    opt = tff.learning.optimizers
    inner = {
        "sgd": lambda: opt.build_sgdm(learning_rate=0.1),
        "adam": lambda: opt.build_adam(learning_rate=1e-3),
    }[kind]()
    return ClippedOptimizer(inner)


def build_server_optimizer(kind: str) -> tff.learning.optimizers.Optimizer:
    """How the server applies the averaged update: FedAvg, FedAvgM or FedAdam."""
    opt = tff.learning.optimizers
    return {
        "sgd": lambda: opt.build_sgdm(learning_rate=1.0),
        "momentum": lambda: opt.build_sgdm(learning_rate=1.0, momentum=SERVER_MOMENTUM),
        "adam": lambda: opt.build_adam(learning_rate=0.01, epsilon=ADAM_EPSILON),
    }[kind]()


def clip_value(clip_norm: float) -> float:
    """The hyper-parameter for a config's clip norm (0: off)."""
    return clip_norm if clip_norm > 0 else float("inf")
