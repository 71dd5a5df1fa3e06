"""Run docker and skiff against one engine and compare what a script would see.

`Pair.both(*args)` runs `docker ARGS` then `skiff ARGS` with the same environment and returns both results.
`normalize()` removes what legitimately differs between two runs a moment apart: relative times
("3 seconds ago", "Up 2 minutes"), and the program's own name in messages ("docker: …" vs "skiff: …").
Everything else — columns, spacing, JSON, exit statuses — must be identical.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.engine.harness import Skiffd, TestImages

SKIFF = str(Path(sys.executable).parent / "skiff")

_DURATION = (r"(?:Less than a second|About a minute|About an hour|\d+ (?:second|minute|hour|day|week|month|year)s?)")
_TIME_PATTERNS = [
    (re.compile(rf"\b{_DURATION} ago\b"), "<AGO>"),
    (re.compile(rf"\bUp {_DURATION}\b"), "Up <DUR>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [+-]\d{4} \w+"), "<TIME>"),
]


def normalize(text: str, times: bool = True) -> str:
    text = text.replace("docker", "skiff").replace("Docker", "Skiff")
    if times:
        for rx, repl in _TIME_PATTERNS:
            text = rx.sub(repl, text)
    # Go's tabwriter pads to the widest cell; a normalised time can change that width, so compare
    # tables with runs of spaces squeezed.
    return re.sub(r" {2,}", "  ", text) if times else text


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nrc={self.returncode}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


class Pair:
    def __init__(self, daemon: Skiffd, images: TestImages) -> None:
        self.daemon = daemon
        self.images = images
        self.env = daemon.env()

    def run(self, prog: str, *args: str, input: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> Result:
        argv = ["docker" if prog == "docker" else SKIFF, *args]
        r = subprocess.run(argv, env={**self.env, **(env or {})}, capture_output=True, text=True, input=input,
                           timeout=timeout)
        return Result([prog, *args], r.returncode, r.stdout, r.stderr)

    def docker(self, *args: str, **kw) -> Result:
        return self.run("docker", *args, **kw)

    def skiff(self, *args: str, **kw) -> Result:
        return self.run("skiff", *args, **kw)

    def both(self, *args: str, **kw) -> tuple[Result, Result]:
        return self.docker(*args, **kw), self.skiff(*args, **kw)

    def assert_same(self, *args: str, times: bool = True, stderr: bool = True, unordered: bool = False,
                    **kw) -> tuple[Result, Result]:
        """Run both and require identical (normalised) stdout, stderr and exit status. Time columns can tick
        over between the two runs, so one retry is allowed before failing. `unordered`: docker walks a Go map
        for some rows (the repositories of one image), so their order is random there; compare sorted lines."""

        def out(r: Result) -> str:
            text = normalize(r.stdout, times)
            if unordered:
                lines = text.splitlines()
                text = "\n".join(lines[:1] + sorted(lines[1:]))
            return text

        for _attempt in range(2):
            d, s = self.both(*args, **kw)
            same = (d.returncode == s.returncode and out(d) == out(s)
                    and (not stderr or normalize(d.stderr, times) == normalize(s.stderr, times)))
            if same:
                return d, s
        raise AssertionError(f"docker and skiff differ:\n{d}\n\n{s}")

    def cleanup(self) -> None:
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids)
