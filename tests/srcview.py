"""A plain directory view of the installed layout: build/srcview/skiffbox/{machine,guest,cli} are symlinks to
the source folders. For tools and checks that must not go through the editable install's import hook (a
`python -S` start-up measurement, mypy)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPS = ("machine", "guest", "cli", "dashboard", "client")


def source_view(repo: Path = REPO) -> Path:
    """Create (idempotently) and return the directory to put on sys.path / MYPYPATH."""
    view = repo / "build" / "srcview"
    ns = view / "skiffbox"
    ns.mkdir(parents=True, exist_ok=True)
    for top in TOPS:
        link = ns / top
        if not link.is_symlink():
            os.symlink(os.path.relpath(repo / top, ns), link)
    return view
