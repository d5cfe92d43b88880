"""Learning: TFF's federated process and rounds, optimizers, privacy, per-client figures,
the centralised baseline, personalisation and pre-training."""
