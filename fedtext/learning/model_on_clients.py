"""A model from a base and the chosen clients' text: what federated and centralised training
share (each client's text read once, the held-out evaluation every round)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from fedtext.config import FederatedConfig
from fedtext.learning.records import RoundResult
from fedtext.model.batches import preprocess, stack_batches, to_ids
from fedtext.model.keras_model import BUILD_LOCK, compile_for_evaluation, load_model
from fedtext.model.weights import base_model_dir
from fedtext.text.plays import check_client_ids, load_text_ids


class ModelOnClients:
    """A model from a base and the chosen clients' text: what federated and centralised training
    share (reading each client's text once, and the held-out evaluation every round)."""

    def __init__(
        self,
        config: FederatedConfig,
        train_data,
        test_data,
        base_dir: str | Path | None = None,
    ):
        self.config = config
        self.client_ids = check_client_ids(config.client_ids, train_data.client_ids)
        self.train_data, self.test_data = train_data, test_data
        with BUILD_LOCK:
            self.eval_model, self.model_config = load_model(base_dir or base_model_dir())
            compile_for_evaluation(self.eval_model)
        self.weights: list[np.ndarray] = self.eval_model.get_weights()
        self.history: list[RoundResult] = []
        self._eval_set: tf.data.Dataset | None = None
        self._train_ids: dict[str, np.ndarray] = {}  # client id -> its training text as ids

    def evaluation_set(self) -> tf.data.Dataset:
        """The chosen clients' held-out speeches, batched once for every round's evaluation."""
        if self._eval_set is None:
            c = self.config
            if len(self.client_ids) == len(self.test_data.client_ids):
                # The whole federation in one pipeline: one per client took minutes.
                speeches = [self.test_data.create_tf_dataset_from_all_clients()]
            else:
                speeches = map(self.test_data.create_tf_dataset_for_client, self.client_ids)
            parts = [
                stack_batches(preprocess(s, c.eval_batch_size, c.seq_length)) for s in speeches
            ]
            x = np.concatenate([p[0] for p in parts if len(p[0])])
            y = np.concatenate([p[1] for p in parts if len(p[1])])
            self._eval_set = (
                tf.data.Dataset.from_tensor_slices((x, y))
                .batch(self.config.eval_batch_size)
                .cache()
            )
        return self._eval_set

    def evaluate(self, weights: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
        batches = self.evaluation_set()
        # Under the lock: while another thread builds a TFF round, this model's class is
        # Keras' v1 Model, whose evaluate has no return_dict.
        with BUILD_LOCK:
            if weights is not None:
                self.eval_model.set_weights(list(weights))
            results = self.eval_model.evaluate(batches, verbose=0, return_dict=True)
        return float(results["loss"]), float(results["accuracy"])

    def text_ids(self, client_id: str) -> np.ndarray:
        """A client's training text as character ids, read once per trainer.

        Mapping text to ids character by character cost more than the rest of a round, so it
        is done once; each round then only chunks, shuffles and batches.
        """
        ids = self._train_ids.get(client_id)
        database = getattr(self.train_data, "fedtext_database", None)
        if ids is None and database is not None:
            # Every chosen client at once: a sampled federation meets new clients every round.
            unread = [cid for cid in self.client_ids if cid not in self._train_ids]
            self._train_ids.update(load_text_ids({client_id, *unread}, path=database))
            ids = self._train_ids[client_id]
        if ids is None:
            chars = to_ids(self.train_data.create_tf_dataset_for_client(client_id))
            parts = chars.batch(1 << 16).as_numpy_iterator()
            ids = self._train_ids[client_id] = np.concatenate([np.zeros(0, np.int64), *parts])
        return ids

    def pooled_ids(self) -> np.ndarray:
        """Every chosen client's training text, one after another, as ids."""
        fast = getattr(self.train_data, "fedtext_database", None) is not None
        if fast or len(self.client_ids) < len(self.train_data.client_ids):
            return np.concatenate([np.zeros(0, np.int64), *map(self.text_ids, self.client_ids)])
        # The whole federation in one pipeline: one per client took minutes.
        chars = to_ids(self.train_data.create_tf_dataset_from_all_clients())
        return np.concatenate([np.zeros(0, np.int64), *chars.batch(1 << 16).as_numpy_iterator()])

    def _evaluate_base(self) -> RoundResult:
        start = time.perf_counter()
        loss, accuracy = self.evaluate(self.weights)
        self.history = [RoundResult(0, loss, accuracy, seconds=time.perf_counter() - start)]
        return self.history[-1]
