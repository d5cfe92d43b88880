"""How the clients' updates are combined: TFF's own aggregators, picked by a run's settings."""

from __future__ import annotations

import logging

import tensorflow_federated as tff

from fedtext.config import Aggregation


def build_dp_aggregator(aggregation: Aggregation):
    """TFF's differentially private mean of the clients' updates (DP-FedAvg).

    TFF's own `DifferentiallyPrivateFactory`, not `tff.learning.dp_aggregator`: that one also
    zeroes updates above a norm estimated without noise, which the accountant does not cover.
    """
    factory = tff.aggregators.DifferentiallyPrivateFactory
    z, k = aggregation.noise_multiplier, float(aggregation.clients_per_round)
    if aggregation.dp_clipping == "fixed":
        return factory.gaussian_fixed(z, k, aggregation.dp_clip)
    # The adaptive clip spends part of the budget on a noised count of clipped clients, with
    # TFF's default noise 0.05 x K; TFF refuses noise multipliers of 0.1 x K or more (most, for
    # a handful of characters). There the count's noise is raised to z, which costs the update
    # 15% more noise (TFF's formula keeps the total at z) and makes the clip adapt more slowly.
    count_stddev = max(0.05 * k, z)
    return factory.gaussian_adaptive(z, k, clipped_count_stddev=count_stddev)


def build_model_aggregator(aggregation: Aggregation):
    """TFF's aggregator of the model updates for a run, or None for TFF's default (the plain
    weighted or unweighted mean). A fixed update clip wraps whichever mean is chosen."""
    weighted = aggregation.weighting == "weighted"
    if aggregation.dp_clipping:
        return build_dp_aggregator(aggregation)
    inner = None
    if aggregation.aggregator == "robust":
        # Adaptive zeroing of corrupt updates and adaptive clipping to the 80th-percentile norm.
        inner = tff.learning.robust_aggregator(weighted=weighted)
    elif aggregation.aggregator == "secure":
        # The same zeroing and clipping, then a secure sum of the clipped, quantised updates.
        # Its bounds' TensorFlow asserts are built in graphs that drop them, and TensorFlow
        # logs a screenful for each when it is collected.
        logging.getLogger("tensorflow").addFilter(_unused_assert_filter)
        inner = tff.learning.secure_aggregator(weighted=weighted)
    if not aggregation.update_clip:
        return inner
    if inner is None:
        inner = (
            tff.aggregators.MeanFactory() if weighted else tff.aggregators.UnweightedMeanFactory()
        )
    return tff.aggregators.clipping_factory(aggregation.update_clip, inner)


def simulate_secure_sums(process):
    """`process` (a LearningProcess) with every secure sum run as a plain one
    (`without_secure_sums`)."""
    return tff.learning.templates.LearningProcess(
        without_secure_sums(process.initialize),
        without_secure_sums(process.next),
        process.get_model_weights,
        process.set_model_weights,
        get_hparams_fn=process.get_hparams,
        set_hparams_fn=process.set_hparams,
    )


def without_secure_sums(computation):
    """`computation` with each secure sum rewritten into a plain sum, so TFF's native runtime
    can run it (it refuses the secure intrinsics).

    TFF's test backend does this rewrite (`tff.backends.test`), for its own execution context;
    here it is applied to the computation itself, so it runs in fedtext's context and over
    `fedtext worker`s alike. What the server's code is given is unchanged: the cohort's sum,
    after each update is clipped and quantised to the secure sum's bit width; nothing is
    encrypted, so this shows what the server is allowed to see, not the cryptography.
    """
    # Deferred: TFF's private computation class, needed to keep the Python containers of the
    # result (the rewrite round-trips through a proto, which drops them).
    from tensorflow_federated.python.core.impl.computation.computation_impl import (
        ConcreteComputation,
    )

    rewritten = tff.backends.test.replace_secure_intrinsics_with_bodies(computation)
    return ConcreteComputation.with_type(rewritten, computation.type_signature)


def _unused_assert_filter(record: logging.LogRecord) -> bool:
    return "Object was never used" not in record.getMessage()
