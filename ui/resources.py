"""What the page loads once and shares: Streamlit's caches over `fedtext`'s loaders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from fedtext.config import ModelConfig
from fedtext.service import plots, store
from fedtext.service.backend import Engine
from fedtext.text import plays

if TYPE_CHECKING:
    from fedtext.model.generation import TextGenerator

PREVIEW_SPEECHES = 3


@st.cache_resource(show_spinner=False)
def load_clients() -> dict[str, plays.ClientInfo]:
    """Every Shakespeare client, by id."""
    return {c.client_id: c for c in plays.load_clients(plays.database_path())}


@st.cache_resource(show_spinner=False)
def start_engine(base_dir: str, data_root: str) -> Engine:
    """One engine per server, shared by every visitor."""
    return Engine(Path(base_dir), Path(data_root))


@st.cache_data(show_spinner=False, max_entries=512)
def load_letters(client_id: str) -> dict[str, float]:
    return plots.letter_shares(plays.load_speeches(client_id, "train"))


@st.cache_data(show_spinner=False, max_entries=512)
def load_preview(client_id: str) -> list[str]:
    speeches = plays.load_speeches(client_id, "train")
    lines = [s for s in speeches if len(s) >= 40] or speeches  # a few words say little
    return lines[:PREVIEW_SPEECHES]


@st.cache_resource(show_spinner=False, max_entries=16)
def load_saved(data_root: str, run_id: str, stamp: int) -> store.SavedRun:
    """A stored run; `stamp` (its file's time) keys the cache, as a resumed run is saved again."""
    return store.RunStore(Path(data_root)).load(run_id)


@st.cache_resource(show_spinner=False, max_entries=8)
def load_tuned(run_key: str, _weights: list, _config: ModelConfig) -> TextGenerator:
    from fedtext.model.generation import ready_generator  # the engine has imported it already

    return ready_generator(_weights, _config)


@st.cache_resource(show_spinner=False, max_entries=8)
def load_personal(model_dir: str, stamp: int) -> TextGenerator:
    """A run's model for one character; `stamp` (its file's time) keys the cache."""
    from fedtext.model.generation import load_generator

    return load_generator(model_dir)


@st.cache_data(show_spinner=False, max_entries=256)
def generate(
    model_key: str,
    _generator: TextGenerator,
    prompt: str,
    length: int,
    temperature: float,
    seed: int,
) -> str:
    return _generator.generate(prompt, length, temperature, seed)
