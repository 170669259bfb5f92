"""`manga-color eval colorize`: the whole pipeline scored against true colours, next to the gray baseline."""
from __future__ import annotations

from pathlib import Path

import click

from .cli import PathArg, _echo_json, json_option
from .cli_extra import eval_
from .config import ConfigError
from .imageio import ImageError


@eval_.command("colorize")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--references", "references", multiple=True, metavar="NAME=IMAGE",
              help="A character's colour reference (repeatable). A synthetic ground_truth.json brings its cast's "
                   "references unless some are given here; 'none' runs without any.")
@click.option("--style", type=click.Choice(["gray", "screentone"]), default="gray", show_default=True,
              help="How colour images are turned B/W (synthetic chapters use their drawn B/W pages).")
@click.option("--blend", type=click.Choice(["flat", "luminance"]), default=None,
              help="Compositing blend (default: the config's colorize.blend).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score only the first N pages.")
@click.option("--annotated-names", is_flag=True,
              help="Name the annotated bodies (JSON inputs) as a user would in review, to measure the colorizer "
                   "apart from detection and identification.")
@click.option("--sheet", type=PathArg, default=None, help="Write a contact sheet PNG (B/W | ours | truth).")
@json_option
def eval_colorize(inputs, references, style, blend, sets, limit, annotated_names, sheet, as_json):
    """Colour INPUTS (colour images, folders, or a synthetic ground_truth.json) from B/W and score them:
    mean CIEDE2000, |Δa*b*|, PSNR, SSIM and colourfulness against the truth, the same for the gray output, and
    the per-character colour spread across pages."""
    from .eval_colorize import EvalError, evaluate, load_cases, parse_references

    overrides = {}
    for s in sets:
        key, sep, value = s.partition("=")
        if not sep:
            raise click.BadParameter(f"{s!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value.strip()
    if blend:
        overrides["colorize.blend"] = blend
    try:
        cases, refs = load_cases(list(inputs), style, limit)
        if references == ("none",):
            refs = {}
        elif references:
            refs = parse_references(references)
        if annotated_names and not any(c.names for c in cases):
            raise EvalError("--annotated-names needs a JSON input whose bodies carry names")
        report = evaluate(cases, refs, overrides=overrides, sheet=sheet, annotated_names=annotated_names)
    except (EvalError, ImageError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json(report)
        return
    click.echo(f"{report['pages']} page(s), references: {', '.join(report['references']) or 'none'}; "
               f"characters {report['names']}; colorizer {report['colorizer']}")
    click.echo(f"  CIEDE2000 {report['de2000']:.2f} vs gray {report['de2000_gray']:.2f} "
               f"(ratio {report['de2000_ratio']:.3f}); |Δa*b*| {report['dab']:.2f} vs {report['dab_gray']:.2f}")
    if "de2000_bodies" in report:
        click.echo(f"  inside the annotated characters: CIEDE2000 {report['de2000_bodies']:.2f} vs gray "
                   f"{report['de2000_bodies_gray']:.2f} (ratio {report['de2000_bodies_ratio']:.3f})")
    click.echo(f"  PSNR {report['psnr']:.2f} vs {report['psnr_gray']:.2f}; SSIM {report['ssim']:.3f} vs "
               f"{report['ssim_gray']:.3f}; colourfulness {report['colourfulness_ratio']:.2f} of the truth")
    for name, s in sorted(report["consistency"].items()):
        click.echo(f"  {name}: colour spread over {s['pages']} pages: max {s['max_de2000']:.2f}, "
                   f"mean {s['mean_de2000']:.2f} CIEDE2000 (true colours in the same boxes: max "
                   f"{s['truth_max_de2000']:.2f}, mean {s['truth_mean_de2000']:.2f})")
    if sheet:
        click.echo(f"  contact sheet: {sheet}")
