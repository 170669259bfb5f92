"""Command groups shared by several stages: `train ...` and `eval ...` (registered on the main CLI)."""
from __future__ import annotations

import click

from .cli import main


@main.group()
def train():
    """Train a network and register its weights in weights/manifest.json."""


@train.command("colorizer", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_colorizer(args):
    """Train the colorizer and register its weights (`manga-color train colorizer --help` for options).

    The shipped weights' exact command is in `manga-color weights`.
    """
    from colorizer.train import main as train_main

    train_main(list(args))


@main.group("eval")
def eval_():
    """Measure a stage on annotated data."""

from . import cli_review  # noqa: E402,F401  (registers `review` on main)

from . import cli_identify  # noqa: E402,F401  (registers character/train/eval commands of identification)
from . import cli_detect  # noqa: E402,F401  (registers detect / eval detect / train detector)
from . import cli_bank  # noqa: E402,F401  (registers character export / import)
from . import cli_eval_colorize  # noqa: E402,F401  (registers eval colorize)
