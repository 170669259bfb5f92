"""`manga-color run` over a series (several chapters, one bank) and on an engine other than this process:
the pieces of the `run` command that are about where work runs and how many chapters it spans."""
from __future__ import annotations

import time
from pathlib import Path

import click

from .bank_archive import BankArchiveError, import_bank, read_bank, sync_bank
from .cli import EXIT_PARTIAL, _echo_json, _err, _run_workspace, add_inputs, summary_line
from .series import BANK_DIR, ChapterInput
from .workspace import Workspace, WorkspaceError


def make_engine(kind: str, pipeline, workers: int | None, address: str | None):
    """The engine for a run (started, so a missing Ray or an unreachable cluster fails before any work)."""
    from .engine import LocalEngine, available_cores

    if kind == "local":
        cores = available_cores()
        if (workers or 1) > cores:
            _err(f"warning: {workers} workers on {cores} CPU cores: they compete for the CPU (use --workers {cores})")
        return LocalEngine(pipeline.model_factory(), workers or 1, models=pipeline.models)
    from .engine_ray import RayEngine, RayEngineError

    engine = RayEngine(pipeline.model_factory(), address=address, workers=workers)
    try:
        engine.start()
    except RayEngineError as exc:
        raise click.ClickException(str(exc)) from None
    return engine


def check_bank_file(bank: Path | None):
    """Read and check a --bank archive before anything is written (raises ClickException with its fault)."""
    if bank is None:
        return
    try:
        read_bank(bank)
    except BankArchiveError as exc:
        raise click.ClickException(str(exc)) from None


def import_bank_file(ws: Workspace, bank: Path | None):
    if bank is None:
        return None
    try:
        return import_bank(ws, bank, replace=True)
    except BankArchiveError as exc:
        raise click.ClickException(str(exc)) from None


def run_series(chapters: list[ChapterInput], skipped: list[str], out: Path, config, pipeline, engine,
               bank: Path | None, as_json: bool) -> int:
    """Colour every chapter into OUT/chapters/<name>/ with the series bank OUT/bank; returns the exit code."""
    from .export import export_pages

    t0 = time.perf_counter()
    for s in skipped:
        _err(f"skipped {s}")
    try:
        with Workspace.create(out / BANK_DIR, exist_ok=True) as series_bank:
            import_bank_file(series_bank, bank)
            if not series_bank.bank():
                _err(f"warning: the series bank {out / BANK_DIR} is empty: characters stay unnamed; register them "
                     f"with `manga-color character add -w {out / BANK_DIR} NAME --reference IMAGE` or "
                     f"`manga-color character import -w {out / BANK_DIR} FILE`")
            reports, synced, rejected = [], {}, list(skipped)
            for chapter in chapters:
                with Workspace.create(chapter.workspace(out), exist_ok=True) as ws:
                    _, errors = add_inputs(ws, [chapter.source])
                    for e in errors:
                        _err(f"skipped {e}")
                    changes = sync_bank(series_bank, ws)
                    synced[chapter.name] = changes.to_json()
                    if changes.changed and not as_json:
                        what = ", ".join(f"{k} {', '.join(v)}" for k, v in changes.to_json().items()
                                         if v and k != "unchanged")
                        _err(f"{chapter.name}: bank made equal to the series bank ({what})")
                    if not as_json:
                        click.echo(f"{chapter.name}: {len(ws.pages())} pages from {chapter.source}")
                    summary = _run_workspace(ws, config, True, errors, pipeline=pipeline, engine=engine, echo=False)
                    export_pages(ws, chapter.pages_dir(out), fmt="png")
                report = summary.to_json()
                report.pop("outcomes")
                report = {"chapter": chapter.name, "workspace": str(chapter.workspace(out)),
                          "pages_dir": str(chapter.pages_dir(out)), **report, "rejected_inputs": errors}
                reports.append(report)
                rejected += errors
                if not as_json:
                    click.echo(f"{chapter.name}: {summary_line(report, len(errors))}")
                    for o in summary.outcomes:
                        if o.status == "failed":
                            click.echo(f"  failed: {o.reason}")
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    totals = {k: sum(r[k] for r in reports) for k in ("pages", "done", "cached", "skipped", "failed")}
    seconds = time.perf_counter() - t0
    if as_json:
        _echo_json({"series": str(out), **totals, "seconds": round(seconds, 2), "workers": engine.workers,
                    "chapters": reports, "bank": synced, "rejected_inputs": rejected})
    else:
        click.echo(f"series: {len(reports)} chapters, {totals['pages']} pages: {totals['done']} done "
                   f"({totals['cached']} unchanged), {totals['skipped']} skipped, {totals['failed']} failed, "
                   f"{len(rejected)} rejected inputs; {seconds:.1f} s; pages in {out / 'chapters'}/*/pages")
    return EXIT_PARTIAL if totals["failed"] or rejected else 0
