"""fedtext: a Dickens character model fine-tuned on Shakespeare with Federated Averaging."""

import os

# TensorFlow's start-up chatter (CUDA probes, oneDNN notes) is noise for a CLI user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# gRPC's fork handlers are for children that go on using gRPC; fedtext's children (TFF's worker)
# exec at once. Run while other threads were inside gRPC (a round's calls, as a killed worker
# is restarted), they aborted a forked child once in the suite: "Check failed:
# next_worker->state == KICKED". Read by gRPC when it starts, so set before TFF imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
