"""`leak`: what one client's update, or a secure round's sum, tells the server."""

from __future__ import annotations

import argparse

from fedtext.cli.args import chosen_base_dir
from fedtext.config import DEFAULT_CLIENTS, FederatedConfig
from fedtext.learning.leakage import probe
from fedtext.model.weights import load_config
from fedtext.text import plays


def cmd_leak(args: argparse.Namespace) -> int:
    train, test = plays.load_client_data()
    client = plays.check_client_ids([args.client], train.client_ids)[0]
    cohort = args.cohort
    if cohort is None:  # a secure or robust round needs others: the default clients
        cohort = [] if args.aggregator == "plain" else [c for c in DEFAULT_CLIENTS if c != client]
    cohort = plays.check_client_ids(cohort, train.client_ids) if cohort else ()
    config = FederatedConfig(client_ids=(client, *cohort), aggregator=args.aggregator)
    base_dir = chosen_base_dir(args.model)
    load_config(base_dir)  # a model that is not there is refused before the round
    if args.aggregator == "plain":
        seen = f"{client}'s own update (a round of one client, TFF's plain mean)"
    else:
        seen = f"the {args.aggregator} aggregate of {1 + len(cohort)} clients' updates"
    print(f"What the server received: {seen}, one round from the model", flush=True)
    leak = probe(config, train, test, client, base_dir, cohort)
    print(leak.table(args.rows or None))
    print(leak.summary())
    if len(leak.seen) > 1:
        union = "exactly" if leak.moved == leak.cohort_set else "not exactly"
        print(
            f"the recovered set is {union} the union of the {len(leak.seen)} clients' characters "
            f"({len(leak.cohort_set)}): the sum shows the cohort, not who typed what"
        )
    return 0
