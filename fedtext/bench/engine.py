"""The engine in this process: federation overhead against plain Keras, scaling with clients
and batches, and generation latency."""

from __future__ import annotations

import time

import numpy as np

from fedtext.bench.results import Results, Row, Settings, median

WARMUP_ROUNDS = 1  # the first round of a trainer pays TFF's and the worker's one-off costs


# ---------------------------------------------------------------- federation overhead and scaling


class KerasFloor:
    """Federated Averaging's arithmetic in plain Keras in this process: each client trains a
    copy of the global weights with SGD, then the weights are averaged by examples."""

    def __init__(self, model_config, learning_rate: float):
        import tensorflow as tf

        from fedtext.model.keras_model import MaskedLoss, build_model

        self.model = build_model(model_config)
        self.optimizer = tf.keras.optimizers.SGD(learning_rate)
        self.loss = MaskedLoss()
        spec = tf.TensorSpec([None, None], tf.int64)
        self._step = tf.function(self._train_step, input_signature=[spec, spec])

    def _train_step(self, x, y):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss(y, self.model(x, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return loss

    def round(self, weights: list[np.ndarray], clients: list[list[tuple]]) -> list[np.ndarray]:
        total = [np.zeros_like(w) for w in weights]
        examples = 0
        for batches in clients:
            self.model.set_weights(weights)
            n = 0
            for x, y in batches:
                self._step(x, y)
                n += len(x)
            for acc, w in zip(total, self.model.get_weights(), strict=True):
                acc += w * n
            examples += n
        return [t / max(examples, 1) for t in total]


def largest_clients(count: int) -> tuple[str, ...]:
    """The clients with the most training text: every one has 20 full batches or more."""
    from fedtext.text import plays

    clients = sorted(plays.load_clients(), key=lambda c: (-c.train_chars, c.client_id))
    return tuple(c.client_id for c in clients[:count])


def time_rounds(ctx: dict, settings: Settings, n_clients: int, batches: int, repeats: int) -> dict:
    """Median wall time of a trainer's round with evaluation off, and of the Keras floor on the
    same batches, interleaved round by round so both see the same machine."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer

    # The floor's own arithmetic: plain SGD, no clipping, plain averaging, the tutorial's batch.
    config = FederatedConfig(
        client_ids=largest_clients(n_clients),
        batches_per_client=batches,
        rounds=WARMUP_ROUNDS + repeats,
        client_optimizer="sgd",
        clip_norm=0.0,
        server_optimizer="sgd",
        server_learning_rate=1.0,
        batch_size=8,
    )
    trainer = FederatedTrainer(config, ctx["train"], ctx["test"], settings.base_dir)
    # Evaluation off: the round is the trainer's own loop (sampling, data, TFF, weights) without it.
    trainer.evaluate = lambda weights=None: (0.0, 0.0)
    data_seconds: list[float] = []
    original = trainer.client_datasets

    def timed_client_datasets(round_num, client_ids):
        start = time.perf_counter()
        result = original(round_num, client_ids)
        data_seconds.append(time.perf_counter() - start)
        return result

    trainer.client_datasets = timed_client_datasets
    floor_key = (trainer.model_config, config.client_learning_rate)
    floor_weights = list(trainer.weights)
    tff_s, floor_s, first = [], [], None
    for result in trainer.rounds():
        if result.round_num == 0:
            continue
        if ctx.get("floor_key") != floor_key:
            # Built only now: TFF's first build leaves Keras' layer classes on their graph-mode
            # bases, which breaks eager models built before it; building one after repairs them.
            ctx["floor"], ctx["floor_key"] = KerasFloor(*floor_key), floor_key
        floor: KerasFloor = ctx["floor"]
        datasets = original(result.round_num, result.client_ids)
        clients = [list(d.as_numpy_iterator()) for d in datasets]
        start = time.perf_counter()
        floor_weights = floor.round(floor_weights, clients)
        elapsed = time.perf_counter() - start
        if result.round_num <= WARMUP_ROUNDS:
            first = result.seconds
            continue
        tff_s.append(result.seconds)
        floor_s.append(elapsed)
    tff, base = median(tff_s), median(floor_s)
    return {
        "clients": n_clients,
        "batches": batches,
        "repeats": repeats,
        "round_s": tff,
        "floor_s": base,
        "ratio": tff / base,
        # Each TFF round and the floor round after it saw the same machine: a check on the
        # ratio of medians when the machine's speed drifts during the run.
        "paired_ratio": median([t / f for t, f in zip(tff_s, floor_s, strict=True)]),
        "data_s": median(data_seconds[WARMUP_ROUNDS:]),
        "first_round_s": first,
        "round_s_all": tff_s,
        "floor_s_all": floor_s,
    }


def run_overhead_and_scaling(ctx: dict, settings: Settings, results: Results) -> None:
    points: dict[tuple[int, int], dict] = {}
    wide = 4 if settings.quick else 8  # the 8 clients; 4 keep the quick mode quick
    wanted = []
    if "overhead" in settings.sections:
        wanted += [(2, 5, settings.overhead_repeats), (wide, 5, settings.overhead_repeats)]
    if "scaling" in settings.sections:
        wanted += [(k, 5, settings.repeats) for k in settings.clients_sweep]
        wanted += [(2, b, settings.repeats) for b in settings.batches_sweep]
    for k, b, repeats in wanted:
        if (k, b) in points:
            continue
        print(f"  timing {k} clients x {b} batches ...", flush=True)
        points[(k, b)] = time_rounds(ctx, settings, k, b, repeats)
    if "overhead" in settings.sections:
        for k in (2, wide):
            p = points[(k, 5)]
            label = "the tutorial's setting" if k == 2 else f"{k} clients"
            results.add(
                Row(
                    f"overhead.ratio.{k}x5",
                    "1 overhead",
                    f"TFF round / Keras floor, {k} clients x 5 batches ({label})",
                    p["ratio"],
                    "x",
                    1.15,
                    note=f"TFF {p['round_s']:.2f} s, floor {p['floor_s']:.2f} s, "
                    f"data {p['data_s']:.2f} s; median of {p['repeats']}; median of "
                    f"round-by-round ratios {p['paired_ratio']:.2f}",
                ),
                Row(
                    f"overhead.round_s.{k}x5",
                    "1 overhead",
                    f"round time, {k} clients x 5 batches, evaluation off",
                    p["round_s"],
                    "s",
                ),
            )
        p = points[(2, 5)]
        results.add(
            Row(
                "overhead.first_round_s.2x5",
                "1 overhead",
                "first round of a trainer (warm process)",
                p["first_round_s"],
                "s",
            )
        )
    results.scaling = [p for (k, b), p in sorted(points.items())]
    if "scaling" in settings.sections:
        for sweep, fixed, vary in (
            ("clients", 5, settings.clients_sweep),
            ("batches", 2, settings.batches_sweep),
        ):
            pts = [points[(v, fixed)] if sweep == "clients" else points[(fixed, v)] for v in vary]
            results.add(*scaling_rows(sweep, pts))


def scaling_rows(sweep: str, points: list[dict]) -> list[Row]:
    """Fit round time = fixed + per_step * (clients * batches); say how far each point is off."""
    steps = np.array([p["clients"] * p["batches"] for p in points], float)
    times = np.array([p["round_s"] for p in points])
    per_step, fixed = np.polyfit(steps, times, 1)
    predicted = fixed + per_step * steps
    off = (times - predicted) / predicted
    worst = int(np.argmax(np.abs(off)))
    linear = bool(np.all(np.abs(off) <= 0.1))
    pairs = zip(steps, off, strict=True)
    where = ", ".join(f"{int(s)} client batches {o:+.0%}" for s, o in pairs if abs(o) > 0.1)
    ratios = ", ".join(f"{p['clients']}x{p['batches']}: {p['ratio']:.2f}" for p in points)
    return [
        Row(
            f"scaling.{sweep}.per_step_s",
            "2 scaling",
            f"cost per client batch (slope, {sweep} grow)",
            float(per_step),
            "s",
            note=f"TFF/floor {ratios}",
        ),
        Row(
            f"scaling.{sweep}.fixed_s",
            "2 scaling",
            f"fixed cost per round (intercept, {sweep} grow)",
            float(fixed),
            "s",
            note=(
                "linear: every point within 10% of the fit" if linear else f"not linear: {where}"
            ),
        ),
        Row(
            f"scaling.{sweep}.worst_off",
            "2 scaling",
            f"largest departure from linear ({sweep} grow)",
            float(abs(off[worst])),
            "",
            note=f"at {int(steps[worst])} client batches",
        ),
    ]


# ---------------------------------------------------------------- generation and learning


GENERATION_TARGET_S = 0.1  # issue 13: 200 characters in at most 0.1 s on 2 cores


def blas_threads() -> str:
    """How many threads NumPy's BLAS runs, where threadpoolctl (not a dependency) can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads unknown"
    return ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())


def run_generation(settings: Settings, results: Results) -> None:
    """200 characters from the base model in NumPy after a prompt it has not seen and after one
    it has (its state kept, as "Again" does), and the floor under them: the same number of bare
    matrix-vector products of the same shape. The three alternate in the same run, so all see
    the same load from other processes."""
    from fedtext.model.generation import load_generator
    from fedtext.text.prompt import TUTORIAL_PROMPT

    length = 200
    start = time.perf_counter()
    generator = load_generator(settings.base_dir)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    generator.generate(TUTORIAL_PROMPT, length, seed=0)
    first = time.perf_counter() - start

    # A request's products: one per prompt character, one per sampled character but the last.
    products = len(TUTORIAL_PROMPT) + length - 1
    units, vocab = generator.config.rnn_units, generator.config.vocab_size
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3 * units + vocab, units), dtype=np.float32)
    state = rng.standard_normal(units, dtype=np.float32)
    out = np.empty(3 * units + vocab, np.float32)
    fresh, again, floors = [], [], []
    for seed in range(1, 4 if settings.quick else 11):
        start = time.perf_counter()
        for _ in range(products):
            np.dot(kernel, state, out=out)
        floors.append(time.perf_counter() - start)
        unseen = "ABCDEFGHIJ"[seed - 1] + TUTORIAL_PROMPT[1:]  # same length, never asked before
        start = time.perf_counter()
        generator.generate(unseen, length, seed=seed)
        fresh.append(time.perf_counter() - start)
        start = time.perf_counter()
        generator.generate(TUTORIAL_PROMPT, length, seed=seed)
        again.append(time.perf_counter() - start)
    latency, floor = median(fresh), median(floors)
    results.add(
        Row(
            "generation.latency_s",
            "4 generation",
            f"{length} characters after a new {len(TUTORIAL_PROMPT)}-character prompt, median",
            latency,
            "s",
            GENERATION_TARGET_S,
            note=f"NumPy, median of {len(fresh)} seeds; first call {first:.3f} s, "
            f"loading {loaded:.2f} s; {blas_threads()}",
        ),
        Row(
            "generation.again_s",
            "4 generation",
            f"{length} characters after a prompt asked before (its state kept), median",
            median(again),
            "s",
            GENERATION_TARGET_S,
            note=f"{length - 1} products instead of {products}: what Again and a classroom's "
            "repeated samples ask",
        ),
        Row(
            "generation.floor_s",
            "4 generation",
            f"floor: {products} bare {kernel.shape[0]}x{units} matrix-vector products",
            floor,
            "s",
            note=f"the products of a request after a new prompt, alone; median of {len(floors)}",
        ),
        Row(
            "generation.ratio_to_floor",
            "4 generation",
            "generation after a new prompt / its matrix-vector products alone",
            latency / floor,
            "x",
            note="above 1: the gates, sampling and Python around each product",
        ),
        Row(
            "generation.chars_per_s",
            "4 generation",
            "characters per second after a new prompt",
            length / latency,
            "char/s",
        ),
    )
