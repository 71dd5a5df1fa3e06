"""The image page's Run form as the container a `skiff run -d` with the same options would create: the form's
fields become run flags, parsed and turned into the create body by the client's own code (flags.parse,
commands/run.build_create), so the dashboard and the command line can never disagree on what `-p`, `-v` or
`-e` mean."""

from __future__ import annotations

import shlex
from typing import Any

from skiffbox.client.streams import iter_json_stream
from skiffbox.client.api import APIClient, APIError


class FormError(ValueError):
    pass


def run_argv(form: dict[str, Any]) -> tuple[list[str], str, list[str]]:
    """(flags argv, image, command) of a form {image, name, ports[], volumes[], env[], cmd}."""
    image = str(form.get("image", "")).strip()
    if not image:
        raise FormError("an image is needed (e.g. busybox:latest)")
    argv = ["--detach"]
    if str(form.get("name", "")).strip():
        argv += ["--name", str(form["name"]).strip()]
    for key, flag in (("ports", "--publish"), ("volumes", "--volume"), ("env", "--env")):
        for value in form.get(key) or []:
            if str(value).strip():
                argv += [flag, str(value).strip()]
    try:
        cmd = shlex.split(str(form.get("cmd") or ""))
    except ValueError as e:
        raise FormError(f"command: {e}") from None
    return argv, image, cmd


def create_body(form: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    from skiffbox.cli.skiffclient.commands import CliError
    from skiffbox.cli.skiffclient.commands.run import COMMANDS, build_create
    from skiffbox.cli.skiffclient.flags import ArgsError, FlagError, parse

    argv, image, cmd = run_argv(form)
    try:
        o, _ = parse(COMMANDS["run"], [*argv, image])
        body = build_create(o, image, cmd, None)
    except (FlagError, ArgsError, CliError, ValueError) as e:
        raise FormError(str(getattr(e, "message", "") or e).split("\n\n")[0]) from None
    return body, o["name"] or None


def run(api: APIClient, form: dict[str, Any]) -> str:
    """Create (pulling the image first when the engine does not have it, as `run` does) and start; the ID."""
    from skiffbox.cli.skiffclient.commands.images import open_pull

    body, name = create_body(form)
    try:
        cid = api.create(body, name)["Id"]
    except APIError as e:
        if not (e.not_found and "image" in e.message.lower()):
            raise
        resp, _ = open_pull(api, body["Image"])
        for msg in iter_json_stream(resp):
            if msg.get("error"):
                raise APIError(500, msg["error"]) from None
        cid = api.create(body, name)["Id"]
    api.start(cid)
    return str(cid)
