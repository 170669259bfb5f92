"""`manga-color review`: a local web page to review a coloured chapter panel by panel.

The server (Flask, ``app.py``) shows pages with their panels and characters, stores every correction as a
workspace override (the same ones `manga-color override ...` makes, replayed by every `manga-color run`), and
re-runs a page in one background worker (``jobs.py``). ``state.py`` turns workspace rows into the JSON the page
reads; ``uploads.py`` checks what users upload. The front end is plain HTML/JS in ``static/``.
"""
from .app import ReviewServer, create_app

__all__ = ["ReviewServer", "create_app"]
