"""`machine image …`: build, fetch and list boot images. Wired into cli/machine.py by
`register_image_commands(app)`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer


def _cache(cache_dir: str | None) -> Path:
    from skiffbox.machine.image.cache import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def cmd_build(cache_dir: str | None, force: bool, mirror: str | None, security_mirror: str | None,
              arch: str = "x86_64") -> int:
    from skiffbox.machine.image.build import build_image
    from skiffbox.machine.image.errors import ImageError

    try:
        img = build_image(_cache(cache_dir), lambda m: print(m, file=sys.stderr, flush=True), force=force,
                          mirror=mirror, security_mirror=security_mirror, arch=arch)
    except ImageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(img.dir)
    return 0


def cmd_pull(spec: str, cache_dir: str | None) -> int:
    from skiffbox.machine.image import ImageError, resolve

    try:
        img = resolve(spec, _cache(cache_dir), refresh=True)
    except ImageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(img.disk)
    return 0


def list_images(cache: Path) -> list[dict[str, Any]]:
    """Built images and verified downloads in the cache."""
    rows: list[dict[str, Any]] = []
    for d in sorted((cache / "images").glob("*/image.json")):
        info = json.loads(d.read_text())
        disk = d.parent / "disk.qcow2"
        rows.append({"Kind": "built", "Name": d.parent.name, "Arch": info.get("arch", "x86_64"),
                     "Kernel": info.get("kernel_version", ""),
                     "Created": info.get("built_at", ""), "Size": disk.stat().st_size if disk.exists() else 0,
                     "Path": str(d.parent)})
    try:
        index = json.loads((cache / "downloads" / "index.json").read_text())
    except (FileNotFoundError, ValueError):
        index = {}
    for url, entry in sorted(index.items()):
        path = cache / "downloads" / entry["file"]
        if path.exists():
            rows.append({"Kind": "download", "Name": url, "Kernel": "", "Created": "",
                         "Size": path.stat().st_size, "Path": str(path), "Digest": entry["digest"]})
    return rows


def cmd_ls(cache_dir: str | None, quiet: bool) -> int:
    rows = list_images(_cache(cache_dir))
    if quiet:
        for r in rows:
            print(r["Path"])
        return 0
    print(f"{'KIND':<9} {'SIZE':>8}  {'NAME'}")
    for r in rows:
        print(f"{r['Kind']:<9} {r['Size'] >> 20:>6}MB  {r['Name']}")
    return 0


def register_image_commands(app: typer.Typer) -> None:
    import typer

    image = typer.Typer(name="image", no_args_is_help=True, help="Build, fetch and list the VMs' boot images")
    cache_opt = typer.Option(None, "--cache-dir", help="Image cache (default: the store's cache folder)")

    @image.command(help="Build the guest image from Debian packages (Linux, root; cached by content)")
    def build(force: bool = typer.Option(False, "--force", help="Rebuild even if the cache has it"),
              mirror: str = typer.Option(None, "--mirror", help="Debian mirror (default: the host's)"),
              security_mirror: str = typer.Option(None, "--security-mirror", help="Debian security mirror"),
              arch: str = typer.Option(None, "--arch", help="Guest architecture: x86_64 or aarch64 (default: "
                                       "the host's; another one is cross-built with qemu-user-static)"),
              cache_dir: str = cache_opt) -> None:
        import os

        raise typer.Exit(cmd_build(cache_dir, force, mirror, security_mirror, arch or os.uname().machine))

    @image.command(help="Download a boot image into the cache ('debian' = the Debian 12 cloud image, or a URL)")
    def pull(spec: str = typer.Argument("debian"), cache_dir: str = cache_opt) -> None:
        raise typer.Exit(cmd_pull(spec, cache_dir))

    @image.command(name="ls", help="List cached boot images")
    def ls(quiet: bool = typer.Option(False, "--quiet", "-q"), cache_dir: str = cache_opt) -> None:
        raise typer.Exit(cmd_ls(cache_dir, quiet))

    app.add_typer(image, name="image")
