"""Filesystems and images in and out of the engine as tar streams: `commit`, `export`, `import`, `save`, `load`.

Archives are streamed in both directions (64 KiB chunks, never the whole archive in memory); a file written
with -o appears under its name only once complete (temporary file + rename, as docker's CopyToFile does).
"""

from __future__ import annotations

import os
import sys

from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Any

CHUNK = 64 * 1024

# distribution/reference's grammar, enough to reject what ParseNormalizedNamed rejects.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*" \
          r"[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_REFERENCE = rf"(?:{_DOMAIN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*(?::[\w][\w.-]{{0,127}})?" \
             r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"


def check_reference(ref: str) -> None:
    """reference.ParseNormalizedNamed's errors, worded and ordered as docker prints them."""
    import re

    if re.fullmatch(r"[a-f0-9]{64}", ref):
        raise CliError(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    first, slash, rest = ref.partition("/")
    if not slash or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        remainder = ref if slash else "library/" + ref  # splitDockerDomain: an upper-case first part is a domain
    else:
        remainder = rest
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise CliError(f"invalid reference format: repository name ({remote}) must be lowercase")
    if not re.fullmatch(_REFERENCE, ref):
        raise CliError("invalid reference format")


def binary_out(cli: Cli) -> IO[bytes]:
    cli.out.flush()
    return getattr(cli.out, "buffer", None) or sys.stdout.buffer


def validate_output_path(path: str) -> str | None:
    """command.ValidateOutputPath's message for an unusable -o path, or None."""
    import stat

    d = os.path.dirname(os.path.normpath(path))
    if d not in ("", ".") and not os.path.exists(d):
        return f"invalid output path: stat {d}: no such file or directory"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return f'invalid output path: "{path}" must be a directory or a regular file'


def copy_out(cli: Cli, chunks: Iterator[bytes], output: str) -> None:
    """The archive to stdout, or to `output` via a temporary file renamed when complete."""
    if not output:
        out = binary_out(cli)
        for c in chunks:
            out.write(c)
        out.flush()
        return
    from skiffbox.cli.skiffclient.files import write_atomically

    write_atomically(output, chunks, 0o644, prefix=".docker_temp_")


def refuse_terminal(cli: Cli, output: str) -> None:
    if not output and cli.out.isatty():
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect")


def read_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = f.read(CHUNK)
        if not data:
            return
        yield data


def platform_json(raw: str) -> str:
    """An "os[/arch[/variant]]" as the JSON OCI platform the API takes for save/load (containerd's Parse,
    minimal: arch aliases normalised)."""
    import json

    parts = raw.lower().split("/")
    if not parts[0] or len(parts) > 3:
        raise CliError(f'invalid platform: "{raw}": unknown operating system or architecture: invalid argument')
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}.get(
        parts[1], parts[1]) if len(parts) > 1 else ""
    p: dict[str, str] = {"architecture": arch, "os": parts[0]}
    if len(parts) > 2:
        p["variant"] = parts[2]
    return json.dumps(p, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------


def run_commit(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import familiar_name, split_reference

    repo = tag = None
    if len(args) > 1 and args[1]:
        check_reference(args[1])
        name, tag, digest = split_reference(args[1])
        if digest:
            raise CliError("refusing to create a tag with a digest reference")
        repo, tag = familiar_name(name), tag or "latest"
    query: list[tuple[str, str | None]] = [("author", o["author"] or None)]
    query += [("changes", c) for c in o["change"]]
    query += [("comment", o["message"] or None), ("container", args[0]),
              ("pause", None if o["pause"] else "0"), ("repo", repo), ("tag", tag)]
    cli.out.write(cli.api.commit(query).get("Id", "") + "\n")
    return 0


def archive_to_output(cli: Cli, output: str, what: str, fetch: Any) -> None:
    """export/save: refuse a terminal, check -o before asking the engine, then stream `fetch()`'s body."""
    refuse_terminal(cli, output)
    if output:
        bad = validate_output_path(output)
        if bad:
            raise CliError(f"failed to {what}: {bad}")
    copy_out(cli, fetch().iter_chunks(), output)


def run_export(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    archive_to_output(cli, o["output"], "export container", lambda: cli.api.export(args[0]))
    return 0


def run_save(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    plat = platform_json(o["platform"]) if o["platform"] else None
    archive_to_output(cli, o["output"], "save image", lambda: cli.api.images_get(args, plat))
    return 0


def _open_input(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as e:
        raise CliError(f"open {path}: {(e.strerror or str(e)).lower()}") from None


def run_load(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.progress import display_stream

    if o["input"]:
        src = _open_input(o["input"])
    else:
        if sys.stdin.isatty():
            raise CliError("requested load from stdin, but stdin is empty")
        src = sys.stdin.buffer
    quiet = o["quiet"] or not cli.out.isatty()
    plat = platform_json(o["platform"]) if o["platform"] else None
    with src:
        resp = cli.api.images_load(read_chunks(src), quiet, plat)
    if resp.headers.get("content-type", "") == "application/json":
        display_stream(iter_json_stream(resp), cli.out)
    else:
        copy_out(cli, resp.iter_chunks(), "")
    return 0


def run_import(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.progress import display_stream

    source = args[0]
    ref = args[1] if len(args) > 1 else ""
    body: Any = b""
    src: IO[bytes] | None = None
    if source == "-":
        src, name = sys.stdin.buffer, "-"
    elif source.startswith(("http://", "https://")):
        name = source
    else:
        src, name = _open_input(source), "-"
    if o["platform"]:
        platform_json(o["platform"])
    if ref:
        check_reference(ref)
    if src is not None:
        body = read_chunks(src)
    query: list[tuple[str, str | None]] = [("changes", c) for c in o["change"]]
    query += [("fromSrc", name), ("message", o["message"]), ("platform", o["platform"] or None), ("repo", ref),
              ("tag", "")]
    try:
        resp = cli.api.image_import(query, body)
    finally:
        if src is not None and src is not sys.stdin.buffer:
            src.close()
    display_stream(iter_json_stream(resp), cli.out)
    return 0


_PLATFORM_HELP = 'Save only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")'

COMMANDS = {
    "commit": Command("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes",
                      run_commit, [
                          Flag("author", "a", kind="string",
                               help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
                          Flag("change", "c", kind="list", help="Apply Dockerfile instruction to the created image"),
                          Flag("message", "m", kind="string", help="Commit message"),
                          Flag("pause", "p", default=True, help="Pause container during commit (default true)"),
                      ], min_args=1, max_args=2, aliases=("container commit", "commit")),
    "export": Command("export", "[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive", run_export,
                      [Flag("output", "o", kind="string", help="Write to a file, instead of STDOUT")], exact_args=1,
                      aliases=("container export", "export")),
    "import": Command("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                      "Import the contents from a tarball to create a filesystem image", run_import, [
                          Flag("change", "c", kind="list", help="Apply Dockerfile instruction to the created image"),
                          Flag("message", "m", kind="string", help="Set commit message for imported image"),
                          Flag("platform", kind="string", help="Set platform if server is multi-platform capable"),
                      ], min_args=1, aliases=("image import", "import")),
    "save": Command("save", "[OPTIONS] IMAGE [IMAGE...]",
                    "Save one or more images to a tar archive (streamed to STDOUT by default)", run_save, [
                        Flag("output", "o", kind="string", help="Write to a file, instead of STDOUT"),
                        Flag("platform", kind="string", help=_PLATFORM_HELP),
                    ], min_args=1, aliases=("image save", "save")),
    "load": Command("load", "[OPTIONS]", "Load an image from a tar archive or STDIN", run_load, [
        Flag("input", "i", kind="string", help="Read from tar archive file, instead of STDIN"),
        Flag("platform", kind="string", help=_PLATFORM_HELP.replace("Save", "Load")),
        Flag("quiet", "q", help="Suppress the load output"),
    ], max_args=0, aliases=("image load", "load")),
}
