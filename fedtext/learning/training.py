"""Federated fine-tuning with TFF's own Federated Averaging (weighted, uniform or differentially
private), as an iterator of round results."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedtext.config import ConfigError, FederatedConfig
from fedtext.distribution import runtime
from fedtext.distribution.cluster import ClusterError, WorkerLost
from fedtext.distribution.runtime import WorkerError, worker_cpu_seconds
from fedtext.learning.attendance import attendance, local_steps, skip_round
from fedtext.learning.contributions import client_figures
from fedtext.learning.failures import RoundFailed, worker_lost
from fedtext.learning.model_on_clients import ModelOnClients
from fedtext.learning.process import (
    build_process,
    rounds_in_one_call,
    set_hparams,
    set_server_rate,
)
from fedtext.learning.records import RoundResult
from fedtext.model.batches import first_rows

log = logging.getLogger(__name__)


def _client_data_options() -> tf.data.Options:
    """tf.data options for the datasets sent to TFF's worker.

    With autotuning on, each client's pass over its dataset (TFF's loop, either kind) starts
    tf.data's tuning thread, and the iterator's destructor waits for that thread's next
    wake-up, which backs off to over a second: the worker sat idle for 1.3 to 1.5 s at the end
    of every round while the round was still open. The batches are already in memory, so
    there is nothing to tune.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class TrainingDiverged(RuntimeError):
    """Training produced a NaN or exploding loss; the last good weights were kept."""


def _round_seed(seed: int, round_num: int, client_id: str) -> int:
    return int.from_bytes(
        np.random.default_rng([seed, round_num, *client_id.encode()]).bytes(4), "little"
    )


class FederatedTrainer(ModelOnClients):
    """Runs rounds of Federated Averaging from a base model; keeps the last good weights.

    Iterate `rounds()` to train: it yields round 0 (the base model) and then each round as
    it ends. Stopping the iteration early keeps what was trained so far in `weights`.
    """

    def __init__(self, config: FederatedConfig, train_data, test_data, base_dir=None):
        if config.attack_client and not hasattr(self, "poisoned_ids"):
            raise ConfigError("an attacker's run needs fedtext.learning.attacks.AttackTrainer")
        super().__init__(config, train_data, test_data, base_dir)
        self._state = None  # TFF server state after the last finished round
        self._server_rate = config.server_learning_rate  # the rate in that state
        self.client_history: list = []  # fedtext.learning.records.ClientFigures, round by round
        self.notices: list[str] = []  # rounds run again after a `fedtext worker` was lost

    def client_datasets(self, round_num: int, client_ids: Sequence[str]) -> list[tf.data.Dataset]:
        """Each client's batches for one round, at most batches_per_client (fewer if it lags).

        The tutorial's pipeline (shuffle buffer 100, take 5 batches) only ever reads a
        client's first ~140 sequences, so a large client would train on the same opening
        speeches every round. Each round here starts reading where the last round's batches
        ended, wrapping round, and shuffles with a per-round seed: round 1 is exactly the
        tutorial's pipeline, and over the rounds every client's whole text takes part.
        """
        c = self.config
        rows = c.batches_per_client * c.batch_size
        per_round = rows * (c.seq_length + 1)
        # A shuffle that emits `rows` sequences reads at most `shuffle_buffer + rows` of them:
        # the rest of a large client's text cannot change the batches, so it is left out.
        reach = (c.shuffle_buffer + rows + 1) * (c.seq_length + 1)
        datasets = []
        for cid in client_ids:
            ids = self.text_ids(cid)
            start = (round_num - 1) * per_round % max(len(ids), 1)
            x, y = first_rows(
                np.roll(ids, -start)[:reach],
                c.seq_length,
                c.batch_size,
                c.shuffle_buffer,
                seed=_round_seed(c.seed, round_num, cid),
                limit=local_steps(c, round_num, cid),
            )
            datasets.append(
                tf.data.Dataset.from_tensor_slices((x, y))
                .batch(c.batch_size)
                .with_options(_client_data_options())
            )
        return datasets

    def sample_clients(self, round_num: int) -> tuple[str, ...]:
        if self.config.cohort_size >= len(self.client_ids):
            return self.client_ids
        rng = np.random.default_rng([self.config.seed, round_num])
        chance = None
        if self.config.sampling == "by_text":
            sizes = np.array([len(self.text_ids(cid)) for cid in self.client_ids], np.float64)
            chance = sizes / sizes.sum() if sizes.sum() else None
        chosen = rng.choice(len(self.client_ids), self.config.cohort_size, replace=False, p=chance)
        return tuple(self.client_ids[i] for i in sorted(chosen))

    def build_process(self):
        """TFF's process for the config (positional arguments: tests' stand-ins take *args)."""
        c = self.config
        return build_process(
            self.model_config, c.client_optimizer, c.server_optimizer, c.aggregation
        )

    def rounds(self, cpu_budget_s: float | None = None) -> Iterator[RoundResult]:
        """Round 0 (the base model), then one result per round of Federated Averaging, until
        the config's rounds, or the last round that fits in `cpu_budget_s` of training CPU time
        (judged by the round before it; the last round is always evaluated).

        Calling it again after an error (a dead TFF worker, say) goes on from the last
        finished round with the server state of that round.
        """
        if not self.history:
            yield self._evaluate_base()
        process = self.build_process()
        runtime.install()  # sets TFF's context for this thread, if another thread built it
        if self._state is None:
            self._state = self._despite_lost_workers(
                lambda: self._initial_state(process), "the first round's set-up"
            )
        round_num = len(self.history)
        while round_num <= self.config.rounds:
            count, last = self._next_call(round_num, cpu_budget_s)
            final = round_num + count - 1
            evaluate = last or self.config.evaluates(final)
            yield from self._run_rounds(process, round_num, count, evaluate, cpu_budget_s)
            if last:
                return
            round_num = final + 1

    def _follow_schedule(self, process, round_num: int, cpu_budget_s: float | None) -> None:
        """Sets the server's learning rate for this round from how much of the run is done:
        its rounds, or its CPU budget when that ends it sooner."""
        c = self.config
        if c.server_schedule == "constant":
            return
        progress = (round_num - 1) / c.rounds
        if cpu_budget_s:
            progress = max(progress, sum(r.cpu_seconds for r in self.history[1:]) / cpu_budget_s)
        rate = c.server_rate(progress)
        # Each change sends the server state through TFF once more (0.2-0.3 s for this model),
        # so over a long run the rate moves in steps of 1/50 of where it started.
        if abs(rate - self._server_rate) < c.server_learning_rate / 50:
            return
        self._state = self._despite_lost_workers(
            lambda: set_server_rate(process, self._state, rate), f"round {round_num}'s set-up"
        )
        self._server_rate = rate

    def _next_call(self, round_num: int, cpu_budget_s: float | None) -> tuple[int, bool]:
        """How many rounds the next call to the worker runs from `round_num`, and whether they
        end the run: the config's rounds per call, up to the next evaluated round. Under a
        budget, one round while a round's cost is unknown (the first) and once the budget has
        room for no more than a call's rounds as long as the last."""
        c = self.config
        count = 1 if runtime.configured_workers() or c.dropout_chance else c.rounds_per_call
        count = min(count, c.rounds - round_num + 1)
        count = next((n for n in range(1, count) if c.evaluates(round_num + n - 1)), count)
        last = round_num + count - 1 == c.rounds
        if cpu_budget_s is not None:
            spent = [r.cpu_seconds for r in self.history[1:]]
            if not spent:  # what a round costs is not known yet: one round finds out
                return 1, round_num == c.rounds
            fit = (cpu_budget_s - sum(spent)) // spent[-1] if spent[-1] > 0 else math.inf
            if fit <= count:
                # The last rounds one a call: a call of fewer rounds would be a computation
                # the worker compiles anew (the federation's last 3 rounds cost 6.8 CPU s
                # each against 4.1, which took its run 0.08 minutes past the budget).
                count, last = 1, fit <= 1
        return count, last

    def _initial_state(self, process):
        state = set_hparams(process, process.initialize(), self.config)
        n_trainable = len(self.eval_model.trainable_weights)
        return process.set_model_weights(
            state,
            tff.learning.models.ModelWeights(
                trainable=self.weights[:n_trainable], non_trainable=self.weights[n_trainable:]
            ),
        )

    def _run_rounds(
        self,
        process,
        first: int,
        count: int,
        evaluate: bool,
        cpu_budget_s: float | None = None,
    ) -> list[RoundResult]:
        """Rounds `first` to `first + count - 1` in one call to the worker; only the last one's
        model comes back, and only it is evaluated (when `evaluate`)."""
        final = first + count - 1
        which = f"round {first}" if count == 1 else f"rounds {first}-{final}"
        start, cpu_start = time.perf_counter(), time.process_time() + worker_cpu_seconds()
        numbers = range(first, final + 1)
        fates = [attendance(self.config, r, self.sample_clients(r)) for r in numbers]
        if not fates[0].arrived:  # only ever in a call of one round (_next_call)
            return [skip_round(self, fates[0], process, evaluate)]
        datasets = [self.client_datasets(f.round_num, f.arrived) for f in fates]
        if count == 1:
            call = lambda: process.next(self._state, datasets[0])  # noqa: E731
        else:
            call = lambda: rounds_in_one_call(process, count)(self._state, datasets)  # noqa: E731
        losses = runtime.worker_losses()
        try:
            self._follow_schedule(process, first, cpu_budget_s)
            output = self._despite_lost_workers(call, which)
        except ClusterError:  # every `fedtext worker` lost: its message says so
            raise
        except Exception as error:
            if worker_lost(error, losses):  # gRPC and TFF raise many kinds when it dies
                raise WorkerError(
                    f"{which} failed in the TFF worker ({type(error).__name__}); "
                    f"the model of round {first - 1} is kept and training can go on"
                ) from error
            # Anything else fails the same way again: not resumable; the cause has the traceback.
            raise RoundFailed(
                f"{which} failed: {type(error).__name__}: {error}; the model of round "
                f"{first - 1} is kept"
            ) from error
        state, metrics = (output.state, [output.metrics]) if count == 1 else output
        # The state comes back as numpy already; process.get_model_weights would send all of
        # it to the worker and back (16 MB of weights each way) for the same arrays.
        model_weights = state.global_model_weights
        trains = [m["client_work"]["train"] for m in metrics]
        for round_num, train in zip(numbers, trains, strict=True):
            if not _healthy(float(train["char_loss"]), self.config.divergence_loss):
                self._diverged(round_num, f"train loss {float(train['char_loss']):.3g}", first)
        weights = [np.asarray(w) for w in (*model_weights.trainable, *model_weights.non_trainable)]
        if not all(np.isfinite(w).all() for w in weights):
            self._diverged(final, "weights not finite", first)
        # A worker that restarted mid-call failed the call; this one started after.
        cpu_seconds = max(0.0, time.process_time() + worker_cpu_seconds() - cpu_start)
        trained = time.perf_counter()
        eval_loss, eval_accuracy = math.nan, math.nan  # not evaluated this round
        if evaluate:
            eval_loss, eval_accuracy = self.evaluate(weights)
            if not _healthy(eval_loss, self.config.divergence_loss):
                self._diverged(final, f"held-out loss {eval_loss:.3g}", first)
        evaluation = time.perf_counter() - trained
        self._state, self.weights = state, weights
        clients = getattr(output, "clients", None)  # only a ContributionProcess's rounds
        if clients is not None:
            self.client_history.extend(client_figures(first, fates[0].arrived, clients))
        for round_num, train, fate in zip(numbers, trains, fates, strict=True):
            last = round_num == final
            self.history.append(
                RoundResult(
                    round_num,
                    eval_loss if last else math.nan,
                    eval_accuracy if last else math.nan,
                    train_loss=float(train["char_loss"]),
                    train_accuracy=float(train["accuracy"]),
                    num_examples=int(train["num_examples"]),
                    # The call's time, shared evenly: its rounds are one piece of work.
                    seconds=(trained - start) / count + (evaluation if last else 0.0),
                    cpu_seconds=cpu_seconds / count,
                    client_ids=fate.sampled,
                    **fate.record(process),
                )
            )
        return self.history[-count:]

    def _despite_lost_workers(self, call, what: str):
        """`call()`; when one of several `fedtext worker`s is lost during it, again on the
        others (the same inputs give the same result), with a notice naming the worker."""
        while True:
            try:
                return call()
            except WorkerLost as lost:
                remaining = runtime.drop_worker(lost.address)
                again = (
                    f"running it again on {', '.join(map(str, remaining))}"
                    if remaining
                    else "waiting for a worker to come back"
                )
                self.notices.append(f"{what} failed: {lost}; {again}")
                log.warning(self.notices[-1])

    def _diverged(self, round_num: int, what: str, first: int):
        """Raises for `round_num`, keeping the model from before `first` (the call's first)."""
        self.eval_model.set_weights(self.weights)
        raise TrainingDiverged(
            f"training diverged in round {round_num} ({what}); kept the weights of round "
            f"{first - 1}; try a lower learning rate"
        )


def _healthy(loss: float, limit: float) -> bool:
    """Whether a loss is a number below `limit` (the config's divergence loss)."""
    return math.isfinite(loss) and loss < limit
