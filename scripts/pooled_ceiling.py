"""What pooling every client's text could reach in a CPU budget: Keras Adam on the whole
federation's pooled training text, the rate warming up and then falling linearly to zero at the
budget ("budgeted training"), evaluated on the whole federation's held-out split every `--every`
steps. The ceiling the whole-federation target is held against (docs/learning.md).

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 0 \
        .venv/bin/python scripts/pooled_ceiling.py --rate 2e-3 --warmup 30 --cpu-minutes 30
"""

from __future__ import annotations

import argparse
import time

import tensorflow as tf

from fedtext.config import CentralisedConfig
from fedtext.learning.centralised import CentralisedTrainer
from fedtext.presets import preset_config
from fedtext.text import plays


class BudgetedTrainer(CentralisedTrainer):
    """The centralised baseline with its optimizer's rate set before each step from the CPU
    spent."""

    def __init__(self, *args, budget_s: float, warmup: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget_s, self.warmup, self.steps = budget_s, warmup, 0
        self.point_started = time.process_time()

    def _make_optimizer(self) -> tf.keras.optimizers.Optimizer:
        self.optimizer = super()._make_optimizer()
        return self.optimizer

    def _build_step(self):
        step, peak = super()._build_step(), self.recipe.learning_rate

        def scheduled_step(x, y):
            self.steps += 1
            spent = self.spent_cpu_seconds() + time.process_time() - self.point_started
            rate = peak * max(0.0, 1 - spent / self.budget_s)
            if self.steps <= self.warmup:
                rate = min(rate, peak * self.steps / self.warmup)
            self.optimizer.learning_rate.assign(rate)
            return step(x, y)

        return scheduled_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2e-3, help="Adam's peak rate")
    parser.add_argument("--warmup", type=int, default=30, help="steps rising to the peak")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpu-minutes", type=float, default=30.0)
    parser.add_argument("--every", type=int, default=100, help="steps between evaluations")
    args = parser.parse_args()

    train, test = plays.load_client_data()
    config = preset_config("federation", client_ids=tuple(train.client_ids), rounds=100_000)
    recipe = CentralisedConfig(
        optimizer="adam",
        learning_rate=args.rate,
        batch_size=args.batch_size,
        steps_per_point=args.every,
    )
    budget_s = args.cpu_minutes * 60
    trainer = BudgetedTrainer(
        config, train, test, recipe=recipe, budget_s=budget_s, warmup=args.warmup
    )
    points = trainer.checkpoints(budget_s)
    print("steps  CPU minutes  held-out accuracy  loss", flush=True)
    while True:
        trainer.point_started = time.process_time()
        point = next(points, None)
        if point is None:
            break
        print(
            f"{trainer.steps:5d}  {trainer.spent_cpu_seconds() / 60:11.2f}  "
            f"{point.eval_accuracy:17.4f}  {point.eval_loss:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
