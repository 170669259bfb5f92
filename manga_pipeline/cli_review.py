"""`manga-color review WORKSPACE`: serve the review page for a chapter workspace (see manga_pipeline/review)."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from .cli import PathArg, _err, main


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command()
@click.argument("workspace", type=PathArg)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback lets other machines edit the workspace.")
def review(workspace: Path, port: int, host: str):
    """Review WORKSPACE in the browser: fix identities, pin colours, re-run panels, accept, export.

    Every change is stored as a workspace override (the same as `manga-color override ...`) and replayed by
    `manga-color run`. Stop with Ctrl-C.
    """
    from .review import ReviewServer
    from .workspace import WorkspaceError

    try:
        server = ReviewServer(workspace, host=host, port=port)
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror or exc}); try --port 0") from None
    if not _is_loopback(host):
        _err(f"warning: serving on {host}: anyone who can reach this address can change the workspace")
    click.echo(f"reviewing {workspace} at {server.url}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
