"""fedtext: a Dickens character model fine-tuned on Shakespeare with Federated Averaging."""

import os

# TensorFlow's start-up chatter (CUDA probes, oneDNN notes) is noise for a CLI user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
