"""`manga-color character export/import`: a character bank as one portable file a team can share
(registered on the main CLI by ``cli_extra``)."""
from __future__ import annotations

import click

from .bank_archive import BankArchiveError, export_bank, import_bank
from .cli import PathArg, _echo_json, _open_ws, character, json_option, workspace_option


@character.command("export")
@click.argument("file", type=PathArg)
@click.option("--name", "names", multiple=True, help="Export only NAME (repeatable; default: every character).")
@workspace_option
@json_option
def character_export(file, names, ws_path, as_json):
    """Write the bank (names, reference images, samples, derived features) to FILE, a ZIP to share."""
    with _open_ws(ws_path) as ws:
        try:
            written = export_bank(ws, file, names)
        except BankArchiveError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json({"file": str(file), "characters": written})
    else:
        click.echo(f"exported {len(written)} character(s) to {file}: {', '.join(written)}")


@character.command("import")
@click.argument("file", type=PathArg)
@click.option("--replace", is_flag=True, help="Replace characters of the same name that differ.")
@workspace_option
@json_option
def character_import(file, replace, ws_path, as_json):
    """Add the characters of bank archive FILE (from `character export`); everything is checked first."""
    with _open_ws(ws_path) as ws:
        try:
            changes = import_bank(ws, file, replace=replace)
        except BankArchiveError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json({"file": str(file), **changes.to_json()})
        return
    parts = [f"{len(v)} {k}" for k, v in (("added", changes.added), ("replaced", changes.replaced),
                                          ("unchanged", changes.unchanged)) if v]
    click.echo(f"imported {file}: {', '.join(parts)}")
