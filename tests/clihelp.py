"""What several test files need: run the CLI in-process, read PNG outputs back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from manga_pipeline.cli import main


def invoke(*args, ok=True):
    """Run ``manga-color ARGS`` in-process; with ``ok``, fail the test unless it exits 0."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_pngs(folder: Path) -> list[np.ndarray]:
    """Every PNG of ``folder`` in name order, as RGB arrays."""
    return [read_rgb(p) for p in sorted(Path(folder).glob("*.png"))]
