"""The host side's layers: `skiff` (cli/), `machine` and the dashboard reach the engine through the one engine client
(client/), which sits below them all and imports none of them. Checked on every import statement (also those
inside functions), so a second HTTP client or an upward import fails here before review."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Plain HTTP stacks that would make a second engine client; machine/image/cache.py downloads Debian's cloud
# images over HTTPS from the internet (urllib), which is no engine traffic.
HTTP_STACKS = ("http.client", "urllib.request", "requests", "httpx", "aiohttp", "urllib3")
NOT_ENGINE = frozenset({"machine/image/cache.py"})


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out += [(node.lineno, node.module or "")]
    return out


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(top: str, forbidden: tuple[str, ...], exempt: frozenset[str] = frozenset()) -> list[str]:
    files = sorted((REPO / top).rglob("*.py"))
    assert files, f"{top}/ has no Python files"
    return [f"{p.relative_to(REPO)}:{line} imports {m}" for p in files if str(p.relative_to(REPO)) not in exempt
            for line, m in _imports(p) if _under(m, forbidden)]


def test_the_client_imports_no_front_end_and_no_engine() -> None:
    assert _violations("client", ("skiffbox.cli", "skiffbox.machine", "skiffbox.dashboard", "skiffbox.guest")) == []


def test_the_checks_see_imports() -> None:
    assert _violations("client", ("skiffbox.client",)), "client/api.py imports client/transport.py"
    assert [v for v in _violations("machine", HTTP_STACKS) if v.startswith("machine/image/cache.py")]


def test_one_engine_client_on_the_host() -> None:
    for top in ("cli", "machine", "dashboard"):
        assert _violations(top, HTTP_STACKS, NOT_ENGINE) == [], f"{top}/ talks HTTP without skiffbox.client"
