"""Benchmarks of the engine and the page on this machine: one table, as JSON and Markdown."""

from fedtext.bench.cli import main, run
from fedtext.bench.page import run_page
from fedtext.bench.report import previous_values, write_outputs
from fedtext.bench.results import Results, Row, Settings

__all__ = [
    "Results",
    "Row",
    "Settings",
    "main",
    "previous_values",
    "run",
    "run_page",
    "write_outputs",
]
