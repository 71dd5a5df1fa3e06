"""One line for a Python package that is not installed, naming what to install (never a traceback)."""

from __future__ import annotations

# Import name -> the extra of ours that brings it; anything else is a default dependency.
EXTRAS = {"virtualbox": "virtualbox", "vboxapi": "virtualbox"}


def missing_dependency(e: ImportError, prog: str) -> str:
    mod = (e.name or str(e)).split(".")[0]
    extra = EXTRAS.get(mod)
    if extra:
        return f"{prog}: the Python package {mod!r} is not installed: pip install 'skiffbox[{extra}]'"
    return (f"{prog}: the Python package {mod!r} is missing from this installation of skiffbox: "
            "pip install --force-reinstall skiffbox")
