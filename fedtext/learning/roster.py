"""Federated Averaging over a roster that changes between rounds, on text held in memory: a class
run's students (fedtext.service.classroom), each one client, join and leave while it trains."""

from __future__ import annotations

import numpy as np

from fedtext.learning.training import FederatedTrainer


class RosterTrainer(FederatedTrainer):
    """A FederatedTrainer whose cohort is given round by round and whose clients' text lives in
    this process's memory only (`texts`): nothing a client holds is read from or written to disk.

    `config.client_ids` are the characters whose held-out speeches evaluate the global model
    every round, as for any run; they need not train. Set `cohorts[n]` before advancing
    `rounds()` to round n.
    """

    def __init__(self, config, train_data, test_data, base_dir=None):
        super().__init__(config, train_data, test_data, base_dir)
        self.texts: dict[str, np.ndarray] = {}  # client id -> its training text as ids
        self.cohorts: dict[int, tuple[str, ...]] = {}  # round -> the clients that train in it

    def text_ids(self, client_id: str) -> np.ndarray:
        return self.texts[client_id]

    def sample_clients(self, round_num: int) -> tuple[str, ...]:
        cohort = self.cohorts.get(round_num)
        if not cohort:
            raise ValueError(f"round {round_num} has no clients")
        return cohort
