"""`manga-color`: thin click commands over the library.

Exit codes: 0 success; 1 a user error (bad path, unknown name, ...); 2 bad usage; 3 finished, but some pages or
inputs failed (each reported on its own line).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from .config import ConfigError, load_config
from .imageio import ImageError, decode_image, iter_inputs
from .records import ColorHint, IdentityOverride, RecordError, check_box
from .workspace import Workspace, WorkspaceError

EXIT_PARTIAL = 3
PathArg = click.Path(path_type=Path)


def _echo_json(obj):
    click.echo(json.dumps(obj, indent=2, default=str))


def _err(msg: str):
    click.echo(msg, err=True)


def _open_ws(path: Path) -> Workspace:
    try:
        return Workspace.open(path)
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None


workspace_option = click.option(
    "-w", "--workspace", "ws_path", type=PathArg, default=Path("."), envvar="MANGA_COLOR_WORKSPACE",
    show_default=True, help="Chapter workspace folder (or set MANGA_COLOR_WORKSPACE).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="manga-color")
def main():
    """Colorize manga chapters: panels, characters, per-character references, full-resolution pages."""


# --- workspace ------------------------------------------------------------------------------------------


@main.command()
@click.argument("directory", type=PathArg, default=Path("."))
def init(directory: Path):
    """Create a chapter workspace in DIRECTORY."""
    try:
        Workspace.create(directory).close()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created workspace {directory}")


def add_inputs(ws: Workspace, inputs) -> tuple[list[dict], list[str]]:
    """Add every page found in ``inputs``; returns (added/known records, one error line per bad input).

    A page is stored once: an input whose bytes equal an earlier input of the same call gets a record with
    ``duplicate_of`` (that input's name); one already in the workspace from an earlier call is ``new`` False.
    """
    added, errors = [], []
    first_name: dict[str, str] = {}
    for item in iter_inputs(inputs):
        if item.error:
            errors.append(item.error)
            continue
        try:
            img = decode_image(item.data, item.name)
        except ImageError as exc:
            errors.append(str(exc))
            continue
        page, new = ws.add_page(item.data, item.name, img.width, img.height, img.is_color)
        added.append({"page_id": page.page_id, "position": page.position, "name": item.name, "new": new,
                      "width": page.width, "height": page.height, "color": page.is_color,
                      "duplicate_of": first_name.get(page.page_id)})
        first_name.setdefault(page.page_id, item.name)
    return added, errors


def _echo_duplicates(added: list[dict]):
    for a in added:
        if a["duplicate_of"]:
            _err(f"note {a['name']}: same image as {a['duplicate_of']}; kept once (page {a['position']})")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=PathArg)
@workspace_option
@json_option
def add(inputs, ws_path: Path, as_json: bool):
    """Add pages: image files, folders of images, ZIP or CBZ archives (in natural order)."""
    with _open_ws(ws_path) as ws:
        added, errors = add_inputs(ws, inputs)
    for e in errors:
        _err(f"skipped {e}")
    _echo_duplicates(added)
    if as_json:
        _echo_json({"added": added, "errors": errors})
    else:
        new = sum(a["new"] for a in added)
        dups = sum(bool(a["duplicate_of"]) for a in added)
        click.echo(f"added {new} page(s), {len(added) - new - dups} already present, {dups} duplicate(s), "
                   f"{len(errors)} rejected")
    if errors:
        sys.exit(EXIT_PARTIAL)


def _parse_sets(sets) -> dict:
    out = {}
    for s in sets:
        if "=" not in s:
            raise click.BadParameter(f"{s!r} is not KEY=VALUE", param_hint="--set")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    return out


class _Progress:
    """Two bars on stderr, each with its ETA: phase 1 (detect + embed) and phase 3 (colour + compose); a failed
    page gets its line as soon as it is known."""

    def __init__(self, n_pages: int):
        self.n = n_pages
        self.bar = None
        self.phase = None

    def _open(self, phase: str, label: str):
        self.close()
        self.phase = phase
        self.bar = click.progressbar(length=self.n, label=label, file=sys.stderr, show_eta=True, show_pos=True)
        self.bar.__enter__()

    def prepared(self, page):
        if self.phase != "prepare":
            self._open("prepare", "detecting")
        self.bar.update(1)

    def page(self, page, outcome):
        if self.phase != "render":
            self._open("render", "colouring")
        self.bar.update(1)
        if outcome.status == "failed":
            _err(f"\nfailed {outcome.reason}")

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def summary_line(report: dict, rejected: int = 0) -> str:
    """The run's one-line summary: done (unchanged) / skipped (already colour) / failed / rejected inputs."""
    per_page = report["seconds"] / report["pages"] if report["pages"] else 0.0
    return (
        f"{report['pages']} pages: {report['done']} done ({report['cached']} unchanged), {report['skipped']} "
        f"skipped (already colour), {report['failed']} failed, {rejected} rejected inputs; colorizer "
        f"{report['colorizer']}{'' if report['colorizer_trained'] else ' (UNTRAINED)'}; "
        f"{report['workers']} worker{'s' if report['workers'] != 1 else ''}, {report['seconds']:.1f} s "
        f"({per_page:.2f} s/page)"
    )


def _pipeline(config):
    from .pipeline import Pipeline

    pipeline = Pipeline(config)
    if not pipeline.colorizer.trained:
        _err("warning: colorizer is an UNTRAINED network (no weights shipped): colours are not meaningful")
    return pipeline


def _run_workspace(ws: Workspace, config, as_json: bool, extra_errors=(), workers: int = 1, *, pipeline=None,
                   engine=None, echo: bool = True):
    """Run ``ws``; ``pipeline``/``engine`` are reused across chapters when given (default: built here)."""
    from .engine import available_cores

    pipeline = pipeline or _pipeline(config)
    cores = available_cores()
    if engine is None and workers > cores:
        _err(f"warning: {workers} workers on {cores} CPU cores: they compete for the CPU (use --workers {cores})")
    progress = _Progress(len(ws.pages()))
    try:
        summary = pipeline.run(ws, on_page=progress.page, on_prepared=progress.prepared, workers=workers,
                               engine=engine)
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    if not echo:
        return summary
    report = summary.to_json()
    report["rejected_inputs"] = list(extra_errors)
    if as_json:
        _echo_json(report)
    else:
        click.echo(summary_line(report, len(extra_errors)))
        for o in summary.outcomes:
            if o.status == "failed":
                click.echo(f"  failed: {o.reason}")
        for e in extra_errors:
            click.echo(f"  rejected: {e}")
    return summary


@main.command()
@click.argument("chapters", metavar="[CHAPTER]...", nargs=-1, type=PathArg)
@click.option("--out", type=PathArg, help="With CHAPTER: output folder (holds its workspace and the pages).")
@workspace_option
@click.option("--config", "config_path", type=PathArg, help="TOML config file (defaults: see manga_pipeline/config.py).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key, e.g. detect.rtl=false.")
@click.option("--ltr", is_flag=True, help="Western reading order (left-to-right).")
@click.option("--recolor-color-pages", is_flag=True, help="Also recolour pages that are already in colour.")
@click.option("--weights", help="Colorizer weights tag (see `manga-color weights`).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Workers for detection and colouring: processes on this machine (default 1; at most one per CPU "
                   "core is useful), or Ray actors with --engine ray (default: one per CPU of the cluster).")
@click.option("--engine", "engine_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where pages are worked on: this machine, or a Ray cluster (pip install -e \".[ray]\").")
@click.option("--address", metavar="HOST:PORT",
              help="With --engine ray: a running Ray cluster (default: a Ray head of its own on 127.0.0.1).")
@click.option("--bank", "bank_file", type=PathArg,
              help="Character bank archive (from `character export`) imported first, replacing characters of the "
                   "same name; with a series, into the series bank OUT/bank.")
@json_option
def run(chapters, out, ws_path, config_path, sets, ltr, recolor_color_pages, weights, workers, engine_kind, address,
        bank_file, as_json):
    """Detect, identify, colorize and compose every page. Resumable: finished work is never redone.

    Without CHAPTER, runs the workspace (-w). With CHAPTER (folder, ZIP or CBZ), keeps a workspace in
    OUT/workspace and writes the coloured pages to OUT/pages.

    A series, several CHAPTERs or one folder holding only chapter folders and/or archives, is one job: one
    workspace per chapter (OUT/chapters/NAME/workspace, pages in OUT/chapters/NAME/pages) and one character
    bank for all, OUT/bank, copied into every chapter before it runs.
    """
    from .cli_series import check_bank_file, import_bank_file, make_engine, run_series
    from .series import SeriesError, find_chapters

    overrides = _parse_sets(sets)
    if ltr:
        overrides["detect.rtl"] = False
    if recolor_color_pages:
        overrides["run.skip_color_pages"] = False
    if weights:
        overrides["colorize.weights"] = weights
    if chapters and out is None:
        raise click.UsageError("with CHAPTER, give --out OUT")
    if not chapters and out is not None:
        raise click.UsageError("--out goes with CHAPTER; to export a workspace use `manga-color export`")
    if engine_kind != "ray" and address is not None:
        raise click.UsageError("--address goes with --engine ray")
    check_bank_file(bank_file)
    try:
        series, skipped = find_chapters(chapters) if chapters else (None, [])
    except SeriesError as exc:
        raise click.ClickException(str(exc)) from None
    if series is not None and not series:
        raise click.ClickException(f"no chapter to colour ({'; '.join(skipped)})")
    chapter = chapters[0] if chapters and series is None else None
    code = 0
    try:
        ws_root = out / "workspace" if chapter is not None else out if series is not None else ws_path
        cfg_file = config_path or (ws_root / "config.toml" if (ws_root / "config.toml").exists() else None)
        config = load_config(cfg_file, overrides)
        if series is not None:
            pipeline = _pipeline(config)
            engine = make_engine(engine_kind, pipeline, workers, address)
            with engine:  # closed without waiting for the pages in flight when interrupted
                code = run_series(series, skipped, out, config, pipeline, engine, bank_file, as_json)
        else:
            errors = []
            if chapter is not None:
                if not chapter.exists():
                    raise click.ClickException(f"{chapter}: no such file or folder")
                if chapter.is_dir() and out.resolve().is_relative_to(chapter.resolve()):
                    raise click.UsageError(f"--out {out} is inside CHAPTER {chapter}: the next run would take the "
                                           "coloured pages for input; choose a folder outside it")
                ws = Workspace.create(ws_root, exist_ok=True)
                added, errors = add_inputs(ws, [chapter])
                for e in errors:
                    _err(f"skipped {e}")
                _echo_duplicates(added)
            else:
                ws = _open_ws(ws_path)
            with ws:
                import_bank_file(ws, bank_file)
                pipeline = _pipeline(config)
                engine = make_engine(engine_kind, pipeline, workers, address)
                with engine:  # closed without waiting for the pages in flight when interrupted
                    summary = _run_workspace(ws, config, as_json, errors, workers or 1, pipeline=pipeline,
                                             engine=engine)
                if chapter is not None:
                    from .export import export_pages

                    export_pages(ws, out / "pages", fmt="png")
                    if not as_json:
                        click.echo(f"pages written to {out / 'pages'}")
            code = EXIT_PARTIAL if summary.count("failed") or errors else 0
    except (ConfigError, WorkspaceError) as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        sys.exit(code)


@main.command()
@workspace_option
@json_option
def status(ws_path, as_json):
    """List the workspace's pages with their state."""
    with _open_ws(ws_path) as ws:
        rows = []
        for p in ws.pages():
            res = ws.page_result(p.page_id)
            rows.append({
                "position": p.position, "page_id": p.page_id, "name": ws.page_name(p.page_id),
                "size": [p.width, p.height], "color": p.is_color,
                "status": res["status"] if res else "pending", "reason": res["reason"] if res else "",
                "output": str(res["output"]) if res and res["output"] else None,
            })
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        extra = f"  ({r['reason']})" if r["reason"] else ""
        click.echo(f"{r['position']:4d}  {r['page_id'][:12]}  {r['status']:8s} {Path(r['name']).name}{extra}")


# --- character bank -------------------------------------------------------------------------------------


@main.group()
def character():
    """Register, list and remove characters (a colour reference per character)."""


@character.command("add")
@click.argument("name")
@click.option("--reference", "references", multiple=True, type=PathArg, help="Colour image of the character.")
@click.option("--sample", "samples", multiple=True, type=PathArg, help="B/W crop of the character from the manga.")
@click.option("--replace", is_flag=True, help="Replace an existing character of that name.")
@workspace_option
@json_option
def character_add(name, references, samples, replace, ws_path, as_json):
    """Register NAME from colour --reference images and/or B/W --sample crops."""
    from .bank import build_character

    for p in (*references, *samples):
        if not p.is_file():
            raise click.ClickException(f"{p}: no such file")
    with _open_ws(ws_path) as ws:
        try:
            built = build_character(name, references, samples)
            ws.add_character(built.name, built.features, built.descriptors, built.images, replace=replace)
        except (ImageError, RecordError, WorkspaceError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json({"name": name, "palette": built.features["palette"], "images": len(built.images)})
    else:
        click.echo(f"registered {name}: palette {' '.join(built.features['palette']) or '(no colour reference)'}")


@character.command("list")
@workspace_option
@json_option
def character_list(ws_path, as_json):
    """List registered characters and their palettes."""
    with _open_ws(ws_path) as ws:
        rows = [{"name": e.name, "palette": e.features.get("palette", []),
                 "references": sum(k == "reference" for k, _ in e.images),
                 "samples": sum(k == "sample" for k, _ in e.images)} for e in ws.bank()]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no characters registered")
    for r in rows:
        click.echo(f"{r['name']:20s} {r['references']} ref, {r['samples']} sample  {' '.join(r['palette'])}")


@character.command("remove")
@click.argument("name")
@workspace_option
def character_remove(name, ws_path):
    """Remove NAME from the bank (pages using it are recoloured on the next run)."""
    with _open_ws(ws_path) as ws:
        try:
            ws.remove_character(name)
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"removed {name}")


# --- export ---------------------------------------------------------------------------------------------


@main.command()
@workspace_option
@click.option("--out", type=PathArg, required=True, help="Folder (png/jpg/webp) or file (cbz, pdf) to write.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp", "cbz", "pdf"]), default=None,
              help="Default: by --out's suffix (.cbz, .pdf), else png.")
@click.option("--layer", is_flag=True,
              help="Write the colour layers alone (RGBA png/webp: colour where the page has colour, transparent "
                   "elsewhere) to put under your own line art in multiply mode.")
@click.option("--dpi", type=click.FloatRange(1, 2400), default=300.0, show_default=True,
              help="PDF page size: pixels / dpi inches (the pixels are kept as they are).")
@json_option
def export(ws_path, out, fmt, layer, dpi, as_json):
    """Export the coloured chapter: an image folder, a CBZ (with ComicInfo.xml), a PDF, or with --layer the colour
    layers alone; --json also lists panels and characters per page."""
    from .export import export_cbz, export_layers, export_pages, export_pdf, page_listing

    fmt = fmt or {".cbz": "cbz", ".pdf": "pdf"}.get(out.suffix.lower(), "png")
    if layer and fmt not in ("png", "webp"):
        raise click.UsageError(f"--layer writes RGBA images into a folder: use --format png or webp, not {fmt}")
    with _open_ws(ws_path) as ws:
        if layer:
            written, missing = export_layers(ws, out, fmt=fmt)
        elif fmt == "cbz":
            written, missing = export_cbz(ws, out)
        elif fmt == "pdf":
            written, missing = export_pdf(ws, out, dpi=dpi)
        else:
            written, missing = export_pages(ws, out, fmt=fmt)
        listing = page_listing(ws) if as_json else None
    for m in missing:
        _err(f"not exported: {m}")
    what = "colour layer(s)" if layer else "page(s)"
    if as_json:
        _echo_json({"out": str(out), "written": len(written), "missing": missing, "pages": listing})
    else:
        click.echo(f"exported {len(written)} {what} to {out}" + (f"; {len(missing)} not ready" if missing else ""))
    if missing:
        sys.exit(EXIT_PARTIAL)


# --- one-off pages --------------------------------------------------------------------------------------


def _parse_reference(value: str) -> tuple[str, Path]:
    if "=" not in value:
        raise click.BadParameter(f"{value!r} is not NAME=IMAGE", param_hint="--reference")
    name, path = value.split("=", 1)
    return name.strip(), Path(path)


def _parse_hint(value: str) -> tuple[int, int, str]:
    try:
        x, y, color = value.split(",")
        return int(x), int(y), color.strip()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not X,Y,#RRGGBB", param_hint="--hint") from None


@main.command()
@click.argument("images", nargs=-1, required=True, type=PathArg)
@click.option("--out", type=PathArg, required=True, help="Folder for the coloured pages.")
@click.option("--reference", "references", multiple=True, metavar="NAME=IMAGE",
              help="Colour reference; NAME colours that character, an unmatched NAME (e.g. scene=...) the rest.")
@click.option("--hint", "hints", multiple=True, metavar="X,Y,#RRGGBB", help="Pin a colour at a point (every page).")
@click.option("--ltr", is_flag=True, help="Western reading order.")
@click.option("--weights", help="Colorizer weights tag.")
@json_option
def colorize(images, out, references, hints, ltr, weights, as_json):
    """Colour one-off pages into OUT (one PNG per input, named after it)."""
    from .bank import build_character
    from .pipeline import Pipeline

    refs = [_parse_reference(r) for r in references]
    pins = [_parse_hint(h) for h in hints]
    overrides = {"detect.rtl": not ltr}
    if weights:
        overrides["colorize.weights"] = weights
    outcomes, errors = [], []
    with tempfile.TemporaryDirectory(prefix="manga-color-") as tmp:
        ws = Workspace.create(Path(tmp) / "ws")
        with ws:
            try:
                for name, path in refs:
                    if not path.is_file():
                        raise click.ClickException(f"{path}: no such file")
                    built = build_character(name, [path])
                    ws.add_character(name, built.features, built.descriptors, built.images, replace=True)
                config = load_config(None, overrides)
                pipeline = Pipeline(config)
            except (ImageError, RecordError, ConfigError) as exc:
                raise click.ClickException(str(exc)) from None
            if not pipeline.colorizer.trained:
                _err("warning: colorizer is an UNTRAINED network (no weights shipped): colours are not meaningful")
            bank = ws.bank()
            names = {e.name for e in bank}
            used_names: set[str] = set()
            for image in images:
                added, errs = add_inputs(ws, [image])
                errors += errs
                for e in errs:
                    _err(f"skipped {e}")
                for rec in added:
                    page = ws.page(rec["page_id"])
                    for x, y, color in pins:
                        try:
                            ws.add_override(ColorHint(page.page_id, x, y, color))
                        except RecordError as exc:
                            raise click.ClickException(str(exc)) from None
                    outcome = _colorize_one(pipeline, ws, page, bank, names)
                    if outcome.status == "failed":
                        errors.append(outcome.reason)
                        _err(f"failed {outcome.reason}")
                        continue
                    stem = Path(rec["name"].split("!")[-1]).stem
                    target = out / f"{stem}.png"
                    n = 1
                    while target.name in used_names:
                        target, n = out / f"{stem}-{n}.png", n + 1
                    used_names.add(target.name)
                    out.mkdir(parents=True, exist_ok=True)
                    from .fsutil import atomic_path

                    with atomic_path(target) as t:
                        shutil.copyfile(outcome.output, t)
                    outcomes.append({"input": rec["name"], "output": str(target), "status": outcome.status})
    if as_json:
        _echo_json({"pages": outcomes, "errors": errors,
                    "colorizer": pipeline.colorizer.weights_id, "colorizer_trained": pipeline.colorizer.trained})
    else:
        for o in outcomes:
            click.echo(f"{o['input']} -> {o['output']}" + ("  (already colour, copied)" if o["status"] == "skipped" else ""))
    if errors:
        sys.exit(EXIT_PARTIAL)


def _colorize_one(pipeline, ws, page, bank, names):
    """Run one page; the first reference name that names no character on it is its page-level (scene) reference."""
    try:
        det = pipeline.analyse_page(ws, page, bank)
    except Exception:
        return pipeline.run(ws, pages=[page]).outcomes[0]  # the run records the failure with its reason
    unmatched = sorted(names - {c.identity for c in det.characters if c.identity})
    scene = unmatched[0] if unmatched and not pipeline.config.colorize.scene else None
    return pipeline.run(ws, pages=[page], scene=scene).outcomes[0]


# --- demo -----------------------------------------------------------------------------------------------


@main.command()
@click.option("--out", type=PathArg, default=Path("manga-demo"), show_default=True, help="Folder to write.")
@click.option("--pages", "n_pages", type=click.IntRange(1, 200), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", default="1400x2000", show_default=True, help="Page size WxH.")
@json_option
def demo(out, n_pages, seed, size, as_json):
    """Generate a synthetic chapter, register its characters, colour it and export it (PNG + CBZ)."""
    from .export import export_cbz, export_pages
    from .synthetic import generate_chapter, write_chapter

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{size!r} is not WxH", param_hint="--size") from None
    chapter = generate_chapter(n_pages, seed=seed, size=(w, h))
    write_chapter(chapter, out / "chapter")
    click.echo(f"generated {n_pages} synthetic pages with characters {', '.join(d.name for d in chapter.cast)} "
               f"in {out / 'chapter'}", err=as_json)
    from .bank import build_character

    ws = Workspace.create(out / "workspace", exist_ok=True)
    with ws:
        for design in chapter.cast:
            ref = out / "chapter" / "references" / f"{design.name}.png"
            built = build_character(design.name, [ref])
            ws.add_character(design.name, built.features, built.descriptors, built.images, replace=True)
        _, errors = add_inputs(ws, [out / "chapter" / "pages"])
        summary = _run_workspace(ws, load_config(), as_json, errors)
        export_pages(ws, out / "colored", fmt="png")
        export_cbz(ws, out / "colored.cbz")
    if not as_json:
        click.echo(f"coloured pages: {out / 'colored'}  CBZ: {out / 'colored.cbz'}  workspace: {out / 'workspace'}")
    if summary.count("failed"):
        sys.exit(EXIT_PARTIAL)


# --- overrides ------------------------------------------------------------------------------------------


@main.group()
def override():
    """Per-page corrections stored in the workspace and replayed by every `run`."""


def _page_or_fail(ws: Workspace, ref: str):
    try:
        return ws.find_page(ref)
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None


def _store(ws_path: Path, page_ref: str, make):
    with _open_ws(ws_path) as ws:
        page = _page_or_fail(ws, page_ref)
        try:
            oid = ws.add_override(make(page))
        except (RecordError, WorkspaceError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"override #{oid} stored for page {page.position}; `manga-color run` applies it")


@override.command("identity")
@click.argument("page")
@click.option("--box", required=True, metavar="X0,Y0,X1,Y1", help="The character's box in page pixels.")
@click.option("--name", help="Who it is (a bank name).")
@click.option("--unknown", is_flag=True, help="Mark it as no registered character.")
@workspace_option
def override_identity(page, box, name, unknown, ws_path):
    """Say who the character at BOX on PAGE (position, id prefix or file name) is."""
    if bool(name) == unknown:
        raise click.UsageError("give exactly one of --name NAME or --unknown")
    try:
        parsed = check_box([float(v) for v in box.split(",")])
    except (ValueError, RecordError) as exc:
        raise click.BadParameter(str(exc), param_hint="--box") from None
    _store(ws_path, page, lambda p: IdentityOverride(p.page_id, parsed, None if unknown else name))


@override.command("hint")
@click.argument("page")
@click.argument("x", type=int)
@click.argument("y", type=int)
@click.argument("color")
@workspace_option
def override_hint(page, x, y, color, ws_path):
    """Pin COLOR (#RRGGBB) at page point X Y."""
    _store(ws_path, page, lambda p: ColorHint(p.page_id, x, y, color))


@override.command("reference")
@click.argument("page")
@click.argument("panel", type=int)
@click.argument("name")
@workspace_option
def override_reference(page, panel, name, ws_path):
    """Use bank character NAME's reference as PANEL's page-level reference (-1: art outside panels)."""
    _store(ws_path, page, lambda p: ("reference", p.page_id, panel, name))


@override.command("lock")
@click.argument("page")
@click.argument("panel", type=int)
@workspace_option
def override_lock(page, panel, ws_path):
    """Accept PANEL as it is now: later runs keep its colours whatever changes."""
    _store(ws_path, page, lambda p: ("lock", p.page_id, panel))


@override.command("list")
@workspace_option
@json_option
def override_list(ws_path, as_json):
    """List stored overrides."""
    with _open_ws(ws_path) as ws:
        rows = ws.list_overrides()
        positions = {p.page_id: p.position for p in ws.pages()}
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        detail = {k: v for k, v in r.items() if k not in ("id", "page_id", "kind")}
        click.echo(f"#{r['id']:<4d} page {positions.get(r['page_id'], '?'):<4} {r['kind']:9s} {json.dumps(detail)}")


@override.command("remove")
@click.argument("override_id", type=int)
@workspace_option
def override_remove(override_id, ws_path):
    """Delete override OVERRIDE_ID (see `override list`)."""
    with _open_ws(ws_path) as ws:
        try:
            ws.remove_override(override_id)
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"removed override #{override_id}")


# --- weights --------------------------------------------------------------------------------------------


@main.command("weights")
@json_option
def weights_cmd(as_json):
    """List the shipped weights: tag, sha256, the command that reproduces them, their metrics."""
    import dataclasses

    import weights as registry

    specs = registry.list_specs()
    if as_json:
        _echo_json({k: dataclasses.asdict(v) for k, v in specs.items()})
        return
    if not specs:
        click.echo("no weights shipped yet: stages that need them run untrained and say so")
    for tag, s in sorted(specs.items()):
        default = " (default)" if registry.default_tag(s.arch) == tag else ""
        click.echo(f"{s.short}{default}\n  reproduce: {s.command}\n  data: {', '.join(s.data)}\n"
                   f"  metrics: {json.dumps(s.metrics)}")


# --- commands of other modules register themselves on `main` --------------------------------------------
from . import cli_extra  # noqa: E402,F401  (imported last: it decorates `main`)
