"""The centralised baseline: the same base model trained on the chosen clients' pooled text in one
place, for a given CPU time, evaluated as the federated rounds are.

It is what Federated Averaging would reach if the lines could leave their owners; the gap is the
price of keeping them home.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from fedtext.config import CentralisedConfig, FederatedConfig
from fedtext.learning.model_on_clients import ModelOnClients
from fedtext.learning.records import RoundResult
from fedtext.learning.training import TrainingDiverged, _healthy
from fedtext.model.keras_model import BUILD_LOCK, MaskedLoss


class CentralisedTrainer(ModelOnClients):
    """Keras training on the pooled text with `recipe`; `checkpoints()` yields an evaluated point
    every `recipe.steps_per_point` steps (round_num counts the points)."""

    def __init__(
        self,
        config: FederatedConfig,
        train_data,
        test_data,
        base_dir=None,
        recipe: CentralisedConfig = CentralisedConfig(),
    ):
        super().__init__(config, train_data, test_data, base_dir)
        self.recipe = recipe
        self._pool = self.pooled_ids()
        self._rng = np.random.default_rng(config.seed)
        self._step = None

    def spent_cpu_seconds(self) -> float:
        """CPU time of the points so far, training and evaluation."""
        return sum(r.cpu_seconds for r in self.history[1:])

    def _make_optimizer(self) -> tf.keras.optimizers.Optimizer:
        r = self.recipe
        kind = {"sgd": tf.keras.optimizers.SGD, "adam": tf.keras.optimizers.Adam}
        return kind[r.optimizer](r.learning_rate, global_clipnorm=r.clip_norm or None)

    def _build_step(self):
        model = self.eval_model
        optimizer = self._make_optimizer()
        loss_fn = MaskedLoss()

        @tf.function(
            input_signature=[tf.TensorSpec([None, None], tf.int64)] * 2, reduce_retracing=True
        )
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return step

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        """A batch of windows of the pool at random offsets: every client's text mixed."""
        span = self.config.seq_length + 1
        starts = self._rng.integers(0, max(len(self._pool) - span, 1), size=self.recipe.batch_size)
        rows = np.stack([self._pool[s : s + span] for s in starts])
        return rows[:, :-1], rows[:, 1:]

    def checkpoints(self, cpu_budget_s: float | None = None) -> Iterator[RoundResult]:
        """Point 0 (the base model), then a point every `steps_per_point` steps, until the
        CPU time spent training reaches `cpu_budget_s` (or the config's rounds of points)."""
        if not self.history:
            yield self._evaluate_base()
        with BUILD_LOCK:
            self.eval_model.set_weights(self.weights)
            if self._step is None:
                self._step = self._build_step()
        point = len(self.history)
        while point <= self.config.rounds:
            start, wall = time.process_time(), time.perf_counter()
            losses = [float(self._step(*self._batch())) for _ in range(self.recipe.steps_per_point)]
            weights = self.eval_model.get_weights()
            train_loss = float(np.mean(losses))
            if not _healthy(train_loss, self.config.divergence_loss):
                self.eval_model.set_weights(self.weights)
                raise TrainingDiverged(f"centralised training diverged (loss {train_loss:.3g})")
            cpu_seconds = time.process_time() - start
            eval_loss, eval_accuracy = self.evaluate(weights)
            self.weights = weights
            self.history.append(
                RoundResult(
                    point,
                    eval_loss,
                    eval_accuracy,
                    train_loss=train_loss,
                    num_examples=self.recipe.steps_per_point * self.recipe.batch_size,
                    seconds=time.perf_counter() - wall,
                    cpu_seconds=cpu_seconds,
                )
            )
            yield self.history[-1]
            if cpu_budget_s is not None and self.spent_cpu_seconds() >= cpu_budget_s:
                return
            point += 1
