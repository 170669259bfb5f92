"""Command groups shared by several stages: `train ...` and `eval ...` (registered on the main CLI)."""
from __future__ import annotations

from .cli import main


@main.group()
def train():
    """Train a network and register its weights in weights/manifest.json."""


@main.group("eval")
def eval_():
    """Measure a stage on annotated data."""
