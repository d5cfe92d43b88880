"""How the clients' updates are combined: TFF's own aggregators, picked by a run's settings."""

from __future__ import annotations

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
