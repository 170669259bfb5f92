"""Keep ultralytics offline: call :func:`ensure_offline_ultralytics` before every ``import ultralytics``.

Ultralytics otherwise downloads a font (``Arial.ttf``) for its plots, checks pip for updates, installs missing
requirements and reports events (``sync``). We point ``YOLO_CONFIG_DIR`` at a folder of ours that already holds
the font and a settings file with ``sync: False``, and forbid auto-install, so nothing ever reaches the network.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CACHE_DIR = Path(os.environ.get("MANGA_COLOR_CACHE", Path.home() / ".cache" / "manga-color"))

# A font ultralytics can use instead of downloading Arial.ttf; the first that exists is copied.
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _find_font() -> Path | None:
    for c in _FONT_CANDIDATES:
        if Path(c).is_file():
            return Path(c)
    try:  # matplotlib ships DejaVu fonts; PIL may not
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if p.is_file():
            return p
    except ImportError:
        pass
    for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
        if Path(root).is_dir():
            for p in sorted(Path(root).rglob("*.ttf")):
                return p
    return None


def ensure_offline_ultralytics(config_dir: Path | None = None) -> Path:
    """Set the environment so that ultralytics never touches the network; return its config dir.

    Idempotent and cheap. Must run before ``ultralytics`` is first imported (its settings are read at import).
    """
    cfg = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir or CACHE_DIR / "yolo")
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    sub = cfg / "Ultralytics"
    sub.mkdir(parents=True, exist_ok=True)
    font = sub / "Arial.ttf"
    if not font.exists():
        src = _find_font()
        if src is not None:
            shutil.copyfile(src, font)
    # ultralytics reads settings.json from this folder; unknown keys are filled with its defaults
    settings = sub / "settings.json"
    import json

    cur = {}
    if settings.exists():
        try:
            cur = json.loads(settings.read_text())
        except ValueError:
            cur = {}
    if cur.get("sync") is not False:
        cur["sync"] = False
        settings.write_text(json.dumps(cur, indent=2))
    import sys

    if "ultralytics" in sys.modules:
        from ultralytics.utils import SETTINGS

        if SETTINGS.get("sync"):
            SETTINGS.update({"sync": False})
    return cfg
