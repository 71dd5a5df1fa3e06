"""The engine's layers point down only: daemon -> api (HTTP handlers) -> engine services -> shared utilities.
Checked on the import graph of guest/ (every import statement, also those inside functions), so a shortcut
from the core into the HTTP layer, or from the guest into the host side, fails here before review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GUEST = Path(__file__).resolve().parents[2] / "guest"
PKG = "skiffbox.guest"


def _module_name(path: Path) -> str:
    rel = path.relative_to(GUEST).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PKG, *parts])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file; `from a import b` yields a and a.b."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def _graph() -> dict[str, list[tuple[int, str]]]:
    return {_module_name(p): _imports(p) for p in sorted(GUEST.rglob("*.py"))}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(graph: dict[str, list[tuple[int, str]]], importers: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted({f"{m}:{line} imports {t}" for m in importers for line, t in graph[m] if _under(t, *forbidden)})


def test_the_import_graph_is_read() -> None:
    """The check below is only worth something if it sees the imports: the API layer is known to import the engine."""
    graph = _graph()
    assert len(graph) > 50
    assert any(t == f"{PKG}.engine" for _, t in graph[f"{PKG}.api.containers"])
    assert any(_under(t, f"{PKG}.api") for _, t in graph[f"{PKG}.daemon"])


def test_only_daemon_and_api_import_the_http_layer() -> None:
    graph = _graph()
    core = [m for m in graph if not _under(m, f"{PKG}.api", f"{PKG}.daemon")]
    assert _violations(graph, core, (f"{PKG}.api",)) == []


def test_guest_never_imports_the_host_side() -> None:
    graph = _graph()
    assert _violations(graph, list(graph), ("skiffbox.machine", "skiffbox.cli", "machine", "cli")) == []


def test_shared_utilities_import_no_service() -> None:
    """guest/util sits below every service: it may use the error types and other utilities, nothing else of the engine."""
    graph = _graph()
    util = [m for m in graph if _under(m, f"{PKG}.util")]
    assert util, "guest/util is missing"
    allowed = (f"{PKG}.util", f"{PKG}.errors")
    bad = sorted(f"{m}:{line} imports {t}" for m in util for line, t in graph[m] if _under(t, PKG) and not _under(t, *allowed))
    assert bad == []


@pytest.mark.parametrize(
    ("line", "target"),
    [("from skiffbox.guest.api.http import Router", f"{PKG}.api.http"), ("from ..api import filters", f"{PKG}.api")],
)
def test_a_shortcut_into_the_http_layer_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, target: str
) -> None:
    """The checker itself: a core module importing the API layer inside a function (absolute or relative) is reported."""
    fake = tmp_path / "guest"
    (fake / "containers").mkdir(parents=True)
    (fake / "containers" / "x.py").write_text(f"def f():\n    {line}\n")
    monkeypatch.setattr(f"{__name__}.GUEST", fake)
    found = _violations(_graph(), [f"{PKG}.containers.x"], (f"{PKG}.api",))
    assert f"{PKG}.containers.x:2 imports {target}" in found


def test_engine_and_api_wire_by_plain_imports() -> None:
    """Services and handler modules are imported by name, so a missing or broken one fails at start (no importlib
    lookups by string that degrade into a half-built engine)."""
    graph = _graph()
    for mod in (f"{PKG}.engine", f"{PKG}.api"):
        assert not [t for _, t in graph[mod] if _under(t, "importlib")], f"{mod} imports importlib"
    engine_imports = {t for _, t in graph[f"{PKG}.engine"]}
    for svc in ("images.service", "volumes.service", "network.service", "containers.service"):
        assert f"{PKG}.{svc}" in engine_imports
