"""Weight files: a model's weights (float16 on disk) beside the config that rebuilds it, for the
base model and every stored run. NumPy only, so the page reads runs before TensorFlow loads."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedtext.config import ModelConfig

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
SHIPPED_MODEL_DIR = ASSETS_DIR / "dickens"
WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "model.json"
# The same model in Keras' own format, for tf.keras.models.load_model(path, compile=False).
KERAS_FILE = "model.keras"


def base_model_dir() -> Path:
    """The Dickens base model: the shipped one, or $FEDTEXT_BASE_MODEL (tests use a tiny one)."""
    return Path(os.environ.get("FEDTEXT_BASE_MODEL", SHIPPED_MODEL_DIR))


def fingerprint(directory: str | Path) -> str:
    """A short hash of a model's weights and config: runs fine-tuned from another base model
    (a retrained or replaced one) never pass for runs of this one."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            digest.update((Path(directory) / name).read_bytes())
        except OSError as error:
            raise WeightsError(f"cannot read {Path(directory) / name}: {error}") from None
    return digest.hexdigest()[:16]


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit its model."""


def save_arrays(arrays: list[np.ndarray], config: ModelConfig, directory: str | Path) -> Path:
    """Store weights as float16 (half the size, 8 MB for the full model) beside the config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stored = {f"w{i:02d}": np.asarray(w).astype(np.float16) for i, w in enumerate(arrays)}
    tmp = directory / (WEIGHTS_FILE + ".tmp.npz")
    np.savez_compressed(tmp, **stored)
    tmp.replace(directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    return directory / WEIGHTS_FILE


def load_config(directory: str | Path) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        return ModelConfig(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise WeightsError(f"no model config at {path}") from None
    except (OSError, ValueError, TypeError) as error:
        raise WeightsError(f"unreadable model config {path}: {error}") from None


def load_weights_arrays(directory: str | Path) -> list[np.ndarray]:
    """The float32 weight arrays stored in `directory`, in layer order."""
    path = Path(directory) / WEIGHTS_FILE
    try:
        with np.load(path) as stored:
            return [stored[k].astype(np.float32) for k in sorted(stored.files)]
    except FileNotFoundError:
        raise WeightsError(f"no weights file at {path}") from None
    except Exception as error:  # a truncated or foreign file raises many kinds of error
        raise WeightsError(f"unreadable weights file {path}: {type(error).__name__}") from None
