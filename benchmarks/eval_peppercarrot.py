"""Per-character colour transfer on real art: Pepper&Carrot pages turned gray, references from another episode.

    python benchmarks/eval_peppercarrot.py                       # the defaults
    python benchmarks/eval_peppercarrot.py --set colorize.palette_anchor=true
    python benchmarks/eval_peppercarrot.py --identified          # let the pipeline name the characters itself
    python benchmarks/eval_peppercarrot.py --pages episode-05    # only the pages no colorizer trained on

Pepper's and Carrot's colour references are cut from ``episode-01_page01`` at their first annotated boxes in
``../shared/data/annotations/peppercarrot_dev_characters.json``; every other annotated page showing one of them is
turned gray and coloured. By default the annotated bodies are named as a user would in review
(``manga-color eval colorize --annotated-names``), which measures the colorizer apart from identification.
Prints the `eval colorize` report (add ``--json`` for all figures). Needs ../shared/data; nothing is written
outside a temporary folder.

Training overlap: ``colorizer.synthetic-v1`` trained on crops of all these pages (as scene crops, without
character references); ``colorizer.prior-v3`` trained on the annotated characters of episodes 1 and 4 (references
from their other pages) and kept episode 5 out of every source (``colorizer.data.PC_VAL_EPISODES``,
``--real-exclude peppercarrot/episode-05``). ``--pages episode-05`` scores only the three episode-5 pages, never
seen by prior-v3 (v1 saw them, which can only favour v1).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCE_PAGE = "episode-01_page01.jpg"
NAMES = ("Pepper", "Carrot")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--identified", action="store_true", help="No --annotated-names: the pipeline names them.")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--pages", action="append", default=[], metavar="PREFIX",
                    help="Score only the pages whose image name starts with PREFIX (repeatable), e.g. episode-05.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    ann = args.data / "annotations" / "peppercarrot_dev_characters.json"
    if not ann.is_file():
        sys.exit(f"{ann}: not found (this benchmark needs ../shared/data)")
    data = json.loads(ann.read_text())
    root = ann.parent
    ref_page = next(p for p in data["pages"] if p["image"].endswith(REFERENCE_PAGE))
    pages = [dict(p, image=str((root / p["image"]).resolve())) for p in data["pages"]
             if p is not ref_page and any(b["character"] in NAMES for b in p["bodies"])
             and (not args.pages or any(Path(p["image"]).name.startswith(x) for x in args.pages))]
    if not pages:
        sys.exit(f"no annotated page showing {' or '.join(NAMES)} matches --pages {' '.join(args.pages)}")

    from click.testing import CliRunner

    from manga_pipeline.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cli_args = ["eval", "colorize", str(tmp / "pages.json")]
        with Image.open(root / ref_page["image"]) as im:
            rgb = im.convert("RGB")
            for name in NAMES:
                box = next(b["box"] for b in ref_page["bodies"] if b["character"] == name)
                rgb.crop(tuple(box)).save(tmp / f"{name}.png")
                cli_args += ["--references", f"{name}={tmp / (name + '.png')}"]
        (tmp / "pages.json").write_text(json.dumps({"format": data.get("format"), "pages": pages}))
        if not args.identified:
            cli_args.append("--annotated-names")
        for s in args.sets:
            cli_args += ["--set", s]
        if args.json:
            cli_args.append("--json")
        r = CliRunner().invoke(cli, cli_args, catch_exceptions=False)
        print(r.output, end="")
        sys.exit(r.exit_code)


if __name__ == "__main__":
    main()
