"""`pull`, `push`, `images`, `rmi`, `tag`, `image inspect`, `image prune`, `history`."""

from __future__ import annotations

import sys

from skiffbox.client.api import APIError
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.commands.containers import api_error_text, inspect_refs, join_errors, parse_filters
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import (IMAGE_HEADERS, IMAGE_TABLE, IMAGE_TABLE_DIGESTS, familiar_name, human_size,
                                        image_rows, list_format, normalize_name, registry_of, render_rows,
                                        split_reference)

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO

    from skiffbox.client.api import APIClient
    from skiffbox.client.transport import Response


def auth_header(name: str) -> str:
    from skiffbox.cli.skiffclient.config import credentials, encode_auth

    return encode_auth(credentials(registry_of(name)))


def open_pull(api: APIClient, ref: str, platform: str | None = None, all_tags: bool = False) -> tuple[Response, str]:
    """Start a pull of `ref` (docker's normalised fromImage/tag and the registry's credentials): the JSON progress
    stream and the full reference it pulls."""
    name, tag, digest = split_reference(ref)
    full = normalize_name(name)
    if digest:
        tag_param, shown = digest, f"{full}@{digest}"
    elif all_tags:
        tag_param, shown = None, full
    else:
        tag_param, shown = tag or "latest", f"{full}:{tag or 'latest'}"
    return api.pull(full, tag_param, auth_header(full), platform), shown


def pull_image(cli: Cli, ref: str, out: TextIO, quiet: bool = False, platform: str | None = None,
               all_tags: bool = False) -> str:
    """POST /images/create with docker's normalised fromImage/tag, progress on `out`; returns the full ref."""
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.progress import display_stream

    resp, shown = open_pull(cli.api, ref, platform, all_tags)
    if quiet:
        import io

        display_stream(iter_json_stream(resp), io.StringIO(), is_tty=False)
    else:
        display_stream(iter_json_stream(resp), out)
    return shown


def run_pull(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    ref = args[0]
    name, tag, digest = split_reference(ref)
    if o["all_tags"] and (tag or digest):
        raise CliError("tag can't be used with --all-tags/-a")
    if not tag and not digest and not o["all_tags"] and not o["quiet"]:
        cli.out.write("Using default tag: latest\n")
    shown = pull_image(cli, ref, cli.out, quiet=o["quiet"], platform=o["platform"] or None, all_tags=o["all_tags"])
    cli.out.write(shown + "\n")
    return 0


def run_push(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.progress import display_stream

    name, tag, digest = split_reference(args[0])
    if o["all_tags"] and tag:
        raise CliError("tag can't be used with --all-tags/-a")
    if not tag and not digest and not o["all_tags"] and not o["quiet"]:
        cli.out.write("Using default tag: latest\n")
        tag = "latest"
    full = normalize_name(name)
    resp = cli.api.push(familiar_name(name), digest or tag or None, auth_header(full), o["platform"] or None)
    if o["quiet"]:
        import io

        display_stream(iter_json_stream(resp), io.StringIO(), is_tty=False)
        cli.out.write(f"{full}{':' + tag if tag else ''}\n")
    else:
        display_stream(iter_json_stream(resp), cli.out)
    return 0


def run_images(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    filters = parse_filters(o["filter"])
    if args:
        filters.setdefault("reference", []).append(args[0])
    fmt = list_format(o["format"], o["quiet"], "imagesFormat", quiet_format="{{.ID}}",
                      table=IMAGE_TABLE_DIGESTS if o["digests"] else IMAGE_TABLE,
                      raw="repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\n"
                          "created_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n")
    if fmt.startswith("table") and o["digests"] and "{{.Digest}}" not in fmt:  # IMAGE_TABLE_DIGESTS has it
        fmt += "\t{{.Digest}}"
    images = cli.api.images(all=o["all"], filters=filters)
    rows = image_rows(images, o["digests"], not o["no_trunc"], o["digests"] or "{{.Digest}}" in fmt)
    cli.out.write(render_rows(fmt, rows, IMAGE_HEADERS))
    return 0


def run_rmi(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    errs = []
    for name in args:
        try:
            for item in cli.api.image_remove(name, force=o["force"], noprune=o["no_prune"]):
                if item.get("Untagged"):
                    cli.out.write(f"Untagged: {item['Untagged']}\n")
                if item.get("Deleted"):
                    cli.out.write(f"Deleted: {item['Deleted']}\n")
        except APIError as e:
            errs.append(api_error_text(e))
    join_errors(errs)
    return 0


def run_tag(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    src, target = args
    name, tag, digest = split_reference(target)
    if digest:
        raise CliError("refusing to create a tag with a digest reference")
    cli.api.tag(src, normalize_name(name), tag or "latest")
    return 0


def run_image_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.api import q

    return inspect_refs(cli, args, o["format"], lambda r: cli.api.raw("GET", f"/images/{q(r)}/json").read())


def run_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    filters = parse_filters(o["filter"])
    filters["dangling"] = ["false" if o["all"] else "true"]
    if not o["force"]:
        warn = ("WARNING! This will remove all images without at least one container associated to them."
                if o["all"] else "WARNING! This will remove all dangling images.")
        cli.out.write(warn + "\nAre you sure you want to continue? [y/N] ")
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = cli.api.images_prune(filters)
    deleted = rep.get("ImagesDeleted") or []
    if deleted:
        cli.out.write("Deleted Images:\n")
        for d in deleted:
            if d.get("Untagged"):
                cli.out.write(f"untagged: {d['Untagged']}\n")
            if d.get("Deleted"):
                cli.out.write(f"deleted: {d['Deleted']}\n")
        cli.out.write("\n")
    cli.out.write(f"Total reclaimed space: {human_size(rep.get('SpaceReclaimed') or 0, 4)}\n")
    return 0


def run_history(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import ellipsis, since, truncate_id

    hist = cli.api.image_history(args[0])
    trunc, human = not o["no_trunc"], o["human"]
    rows = []
    for h in hist:
        created = h.get("Created") or 0
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        rows.append({
            "Comment": h.get("Comment", ""),
            "CreatedAt": _rfc3339_local(created),
            "CreatedBy": ellipsis(created_by, 45) if trunc else created_by,
            "CreatedSince": since(created) if human else _rfc3339_local(created),
            "ID": h.get("Id", "") if not trunc or h.get("Id") == "<missing>" else truncate_id(h.get("Id", "")),
            "Size": human_size(h.get("Size", 0)) if human else str(h.get("Size", 0)),
        })
    fmt = o["format"] or "table"
    if o["quiet"]:
        fmt = "{{.ID}}"
    elif fmt == "table":
        fmt = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    cli.out.write(render_rows(fmt, rows, {"ID": "IMAGE", "CreatedSince": "CREATED" if human else "CREATED AT",
                                          "CreatedAt": "CREATED AT",
                                          "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}))
    return 0


def _rfc3339_local(ts: float) -> str:
    """Go's time.Unix(ts, 0).Format(time.RFC3339) in the local zone."""
    import time

    lt = time.localtime(ts)
    z = time.strftime("%z", lt)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ("Z" if z == "+0000" else f"{z[:3]}:{z[3:]}")


_FILTER = Flag("filter", "f", kind="list", help="Filter output based on conditions provided")

COMMANDS = {
    "pull": Command("pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", run_pull, [
        Flag("all-tags", "a", help="Download all tagged images in the repository"),
        Flag("disable-content-trust", default=True, help="Skip image verification"),
        Flag("platform", kind="string", help="Set platform if server is multi-platform capable"),
        Flag("quiet", "q", help="Suppress verbose output")], exact_args=1),
    "push": Command("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry", run_push, [
        Flag("all-tags", "a", help="Push all tags of an image to the repository"),
        Flag("disable-content-trust", default=True, help="Skip image signing"),
        Flag("platform", kind="string", help="Push a platform-specific manifest as a single-platform image"),
        Flag("quiet", "q", help="Suppress verbose output")], exact_args=1),
    "images": Command("images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", run_images, [
        Flag("all", "a", help="Show all images (default hides intermediate images)"),
        Flag("digests", help="Show digests"), _FILTER,
        Flag("format", kind="string", help="Format output using a custom template"),
        Flag("no-trunc", help="Don't truncate output"), Flag("quiet", "q", help="Only show image IDs")],
        max_args=1, aliases=("image ls", "image list", "images")),
    "rmi": Command("rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", run_rmi, [
        Flag("force", "f", help="Force removal of the image"),
        Flag("no-prune", help="Do not delete untagged parents")], min_args=1),
    "tag": Command("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                   "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", run_tag, [], exact_args=2),
    "image inspect": Command("image inspect", "[OPTIONS] IMAGE [IMAGE...]",
                             "Display detailed information on one or more images", run_image_inspect,
                             [Flag("format", "f", kind="string", help="Format output using a custom template")],
                             min_args=1),
    "prune": Command("image prune", "[OPTIONS]", "Remove unused images", run_prune, [
        Flag("all", "a", help="Remove all unused images, not just dangling ones"),
        Flag("filter", kind="list", help="Provide filter values"),
        Flag("force", "f", help="Do not prompt for confirmation")], max_args=0),
    "history": Command("history", "[OPTIONS] IMAGE", "Show the history of an image", run_history, [
        Flag("format", kind="string", help="Format output using a custom template"),
        Flag("human", "H", default=True, help="Print sizes and dates in human readable format"),
        Flag("no-trunc", help="Don't truncate output"), Flag("quiet", "q", help="Only show image IDs")],
        exact_args=1),
}
