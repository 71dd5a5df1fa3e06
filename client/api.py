"""The Engine API, one method per endpoint, like docker-py's APIClient and the Go client.

Version negotiation follows the Go client (moby client/ping.go): `HEAD /_ping` (GET if HEAD is refused)
before the first versioned call; the server's `Api-Version` caps ours (1.50, docker CLI 28.2's);
no header means 1.24; `DOCKER_API_VERSION` pins it and skips negotiation but still pings.

Errors: a status >= 400 raises `APIError` whose message is the engine's `{"message": …}` when the body is
`application/json` exactly, else the body text, else "<status>: <reason>" (moby checkResponseErr).
"""

from __future__ import annotations

import os

from skiffbox.client.transport import Hijacked, Response, Transport, loads, quote

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def dumps(obj: Any) -> str:
    import json  # requests with a JSON body are off the `ps`/`images` path

    return json.dumps(obj, separators=(",", ":"))

MAX_API_VERSION = "1.50"
FALLBACK_API_VERSION = "1.24"


def _obj(v: Any) -> dict[str, Any]:
    """The engine's JSON object, typed (typing.cast without importing typing at run time)."""
    out: dict[str, Any] = v
    return out


def _list(v: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = v
    return out


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def filters_param(filters: dict[str, list[str]] | None) -> str | None:
    """The Go client's map-of-bools encoding: {"label":{"a=b":true}}."""
    if not filters:
        return None
    return dumps({k: {v: True for v in vs} for k, vs in filters.items()})


def q(name: str) -> str:
    """Quote a path segment (image names keep their slashes and colons, as the Go client sends them)."""
    return quote(name, safe="/:@")


def error_from(resp: Response) -> APIError:
    body = resp.read()
    ctype = resp.headers.get("content-type", "")
    msg = ""
    if ctype == "application/json":
        try:
            data = loads(body)
            msg = data.get("message", "") if isinstance(data, dict) else ""
        except ValueError:
            msg = ""
        if not msg:
            msg = body.decode(errors="replace").strip()
    else:
        msg = body.decode(errors="replace").strip()
    if not msg:
        msg = f"{resp.status}: {resp.reason}"
    return APIError(resp.status, msg)


class APIClient:
    def __init__(self, transport: Transport, version: str | None = None) -> None:
        self.t = transport
        self.pinned = version or os.environ.get("DOCKER_API_VERSION") or None
        self._version: str | None = None
        self.ping_headers: dict[str, str] = {}

    # ---- negotiation ---------------------------------------------------------------------------
    def ping(self) -> dict[str, str]:
        r = self.t.request("HEAD", "/_ping")
        if r.status not in (200, 500):
            r = self.t.request("GET", "/_ping")
            r.read()
        self.ping_headers = r.headers
        return r.headers

    @property
    def version(self) -> str:
        if self._version is None:
            headers = self.ping()
            if self.pinned:
                self._version = self.pinned.lstrip("v")
            else:
                server = headers.get("api-version", "") or FALLBACK_API_VERSION
                self._version = server if _vt(server) < _vt(MAX_API_VERSION) else MAX_API_VERSION
        return self._version

    def at_least(self, v: str) -> bool:
        return _vt(self.version) >= _vt(v)

    # ---- plumbing ------------------------------------------------------------------------------
    def _path(self, path: str) -> str:
        return f"/v{self.version}{path}"

    def raw(self, method: str, path: str, query: Any = None, headers: dict[str, str] | None = None,
            body: bytes | Iterable[bytes] | None = None, json_body: Any = None) -> Response:
        """A request that raises APIError on >= 400; the caller reads the body."""
        headers = dict(headers or {})
        if json_body is not None:
            body = dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        resp = self.t.request(method, self._path(path), query, headers, body)
        if resp.status >= 400:
            raise error_from(resp)
        return resp

    def get_json(self, path: str, query: Any = None) -> Any:
        return self.raw("GET", path, query).json()

    def post(self, path: str, query: Any = None, json_body: Any = None, headers: dict[str, str] | None = None) -> Any:
        r = self.raw("POST", path, query, headers, json_body=json_body)
        data = r.read()
        if data and r.headers.get("content-type", "").startswith("application/json"):
            return loads(data)
        return None

    def delete(self, path: str, query: Any = None) -> Any:
        r = self.raw("DELETE", path, query)
        data = r.read()
        return loads(data) if data and r.headers.get("content-type", "").startswith("application/json") else None

    def hijack(self, path: str, query: Any = None, json_body: Any = None,
               headers: dict[str, str] | None = None) -> Hijacked:
        h = dict(headers or {})
        if json_body is not None:
            body = dumps(json_body).encode()
            h["Content-Type"] = "application/json"
        else:
            body = b""
            h["Content-Type"] = "text/plain"
        res = self.t.hijack("POST", self._path(path), query, h, body)
        if isinstance(res, Response):
            if res.status >= 400:
                raise error_from(res)
            res.close()
            raise APIError(res.status, "unable to upgrade to tcp, received " + str(res.status))
        return res

    # ---- system ----------------------------------------------------------------------------------
    def server_version(self) -> dict[str, Any]:
        return _obj(self.get_json("/version"))

    def info(self) -> dict[str, Any]:
        return _obj(self.get_json("/info"))

    def df(self) -> dict[str, Any]:
        return _obj(self.get_json("/system/df"))

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Response:
        return self.raw("GET", "/events", {"since": since, "until": until, "filters": filters_param(filters)})

    # ---- images ----------------------------------------------------------------------------------
    def images(self, all: bool = False, filters: dict[str, list[str]] | None = None,
               digests: bool = False) -> list[dict[str, Any]]:
        return _list(self.get_json("/images/json", {"all": "1" if all else None,
                                                    "digests": "1" if digests else None,
                                                    "filters": filters_param(filters)}))

    def image_inspect(self, name: str) -> dict[str, Any]:
        return _obj(self.get_json(f"/images/{q(name)}/json"))

    def image_history(self, name: str) -> list[dict[str, Any]]:
        return _list(self.get_json(f"/images/{q(name)}/history"))

    def pull(self, from_image: str, tag: str | None, auth: str, platform: str | None = None) -> Response:
        return self.raw("POST", "/images/create", [("fromImage", from_image), ("platform", platform), ("tag", tag)],
                        {"X-Registry-Auth": auth})

    def push(self, name: str, tag: str | None, auth: str, platform: str | None = None) -> Response:
        return self.raw("POST", f"/images/{q(name)}/push", {"tag": tag, "platform": platform},
                        {"X-Registry-Auth": auth})

    def tag(self, source: str, repo: str, tag: str) -> None:
        self.post(f"/images/{q(source)}/tag", {"repo": repo, "tag": tag})

    def image_remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict[str, Any]]:
        return _list(self.delete(f"/images/{q(name)}", {"force": "1" if force else None,
                                                         "noprune": "1" if noprune else None}) or [])

    def images_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return _obj(self.post("/images/prune", {"filters": filters_param(filters)}) or {})

    # ---- containers ------------------------------------------------------------------------------
    def containers(self, all: bool = False, limit: int = 0, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return _list(self.get_json("/containers/json", {"all": "1" if all else None,
                                                        "limit": str(limit) if limit > 0 else None,
                                                        "size": "1" if size else None,
                                                        "filters": filters_param(filters)}))

    def container_inspect(self, cid: str, size: bool = False) -> dict[str, Any]:
        return _obj(self.get_json(f"/containers/{q(cid)}/json", {"size": "1" if size else None}))

    def create(self, config: dict[str, Any], name: str | None = None, platform: str | None = None) -> dict[str, Any]:
        return _obj(self.post("/containers/create", {"name": name or None, "platform": platform}, json_body=config))

    def start(self, cid: str, detach_keys: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/start", {"detachKeys": detach_keys})

    def stop(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/stop", {"signal": signal, "t": None if timeout is None else str(timeout)})

    def restart(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/restart", {"signal": signal, "t": None if timeout is None else str(timeout)})

    def kill(self, cid: str, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/kill", {"signal": signal})

    def remove(self, cid: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        self.delete(f"/containers/{q(cid)}", {"force": "1" if force else None, "link": "1" if link else None,
                                              "v": "1" if volumes else None})

    def wait(self, cid: str, condition: str | None = None) -> Response:
        """Returns once the engine flushed the headers; read `.json()` for {"StatusCode", "Error"}."""
        return self.raw("POST", f"/containers/{q(cid)}/wait", {"condition": condition})

    def attach(self, cid: str, stdin: bool, stdout: bool, stderr: bool, detach_keys: str | None = None,
               logs: bool = False) -> Hijacked:
        query = [("detachKeys", detach_keys), ("logs", "1" if logs else None), ("stderr", "1" if stderr else None),
                 ("stdin", "1" if stdin else None), ("stdout", "1" if stdout else None), ("stream", "1")]
        return self.hijack(f"/containers/{q(cid)}/attach", query)

    def resize(self, cid: str, height: int, width: int) -> None:
        self.post(f"/containers/{q(cid)}/resize", {"h": str(height), "w": str(width)})

    def logs(self, cid: str, follow: bool = False, stdout: bool = True, stderr: bool = True,
             timestamps: bool = False, tail: str = "all", since: str | None = None, until: str | None = None,
             details: bool = False) -> Response:
        query = [("details", "1" if details else None), ("follow", "1" if follow else None),
                 ("since", since or None), ("stderr", "1" if stderr else None), ("stdout", "1" if stdout else None),
                 ("tail", tail), ("timestamps", "1" if timestamps else None), ("until", until or None)]
        return self.raw("GET", f"/containers/{q(cid)}/logs", query)

    def exec_create(self, cid: str, config: dict[str, Any]) -> dict[str, Any]:
        return _obj(self.post(f"/containers/{q(cid)}/exec", json_body=config))

    def exec_start_detached(self, eid: str, tty: bool) -> None:
        self.post(f"/exec/{eid}/start", json_body={"Detach": True, "Tty": tty})

    def exec_attach(self, eid: str, tty: bool, console_size: list[int] | None = None) -> Hijacked:
        body: dict[str, Any] = {"Detach": False, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = console_size
        return self.hijack(f"/exec/{eid}/start", json_body=body)

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        return _obj(self.get_json(f"/exec/{eid}/json"))

    def exec_resize(self, eid: str, height: int, width: int) -> None:
        self.post(f"/exec/{eid}/resize", {"h": str(height), "w": str(width)})

    def archive_stat(self, cid: str, path: str) -> dict[str, Any]:
        import base64

        r = self.raw("HEAD", f"/containers/{q(cid)}/archive", {"path": path})
        r.read()
        return _obj(loads(base64.b64decode(r.headers.get("x-docker-container-path-stat", "") or "e30=")))

    def archive_get(self, cid: str, path: str) -> Response:
        return self.raw("GET", f"/containers/{q(cid)}/archive", {"path": path})

    def archive_put(self, cid: str, path: str, tar_chunks: Iterable[bytes], copy_uid_gid: bool = False) -> None:
        query = [("copyUIDGID", "true" if copy_uid_gid else None), ("noOverwriteDirNonDir", "true"), ("path", path)]
        self.raw("PUT", f"/containers/{q(cid)}/archive", query, {"Content-Type": "application/x-tar"},
                 body=tar_chunks).read()

    def containers_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return _obj(self.post("/containers/prune", {"filters": filters_param(filters)}) or {})

    def pause(self, cid: str) -> None:
        self.post(f"/containers/{q(cid)}/pause")

    def unpause(self, cid: str) -> None:
        self.post(f"/containers/{q(cid)}/unpause")

    def changes(self, cid: str) -> list[dict[str, Any]]:
        return _list(self.get_json(f"/containers/{q(cid)}/changes") or [])

    def top(self, cid: str, ps_args: str | None = None) -> dict[str, Any]:
        return _obj(self.get_json(f"/containers/{q(cid)}/top", {"ps_args": ps_args}))

    def stats(self, cid: str, stream: bool) -> Response:
        return self.raw("GET", f"/containers/{q(cid)}/stats", {"stream": "1" if stream else "0"})

    def update(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        return _obj(self.post(f"/containers/{q(cid)}/update", json_body=body) or {})

    def commit(self, query: list[tuple[str, str | None]]) -> dict[str, Any]:
        return _obj(self.post("/commit", query) or {})

    def export(self, cid: str) -> Response:
        return self.raw("GET", f"/containers/{q(cid)}/export")

    def image_import(self, query: list[tuple[str, str | None]], body: bytes | Iterable[bytes]) -> Response:
        return self.raw("POST", "/images/create", query, {"Content-Type": "application/x-tar"}, body=body)

    def images_get(self, names: list[str], platform: str | None = None) -> Response:
        return self.raw("GET", "/images/get", [("names", n) for n in names] + [("platform", platform)])

    def images_load(self, body: bytes | Iterable[bytes], quiet: bool, platform: str | None = None) -> Response:
        return self.raw("POST", "/images/load", [("platform", platform), ("quiet", "1" if quiet else "0")],
                        {"Content-Type": "application/x-tar"}, body=body)

    def build(self, query: list[tuple[str, str | None]], body: Iterable[bytes], headers: dict[str, str]) -> Response:
        return self.raw("POST", "/build", query, {"Content-Type": "application/x-tar", **headers}, body=body)

    def build_prune(self, query: Any) -> dict[str, Any]:
        return _obj(self.post("/build/prune", query) or {})

    def auth(self, body: dict[str, str]) -> dict[str, Any]:
        return _obj(self.post("/auth", json_body=body) or {})

    def search(self, term: str, limit: int, filters: dict[str, list[str]] | None, auth: str) -> list[dict[str, Any]]:
        query = {"filters": filters_param(filters), "limit": str(limit) if limit else None, "term": term}
        return _list(self.raw("GET", "/images/search", query, {"X-Registry-Auth": auth}).json() or [])

    # ---- networks --------------------------------------------------------------------------------
    def networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return _list(self.get_json("/networks", {"filters": filters_param(filters)}))

    def network_inspect(self, name: str, verbose: bool = False) -> dict[str, Any]:
        return _obj(self.get_json(f"/networks/{q(name)}", {"verbose": "true" if verbose else None}))

    def network_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return _obj(self.post("/networks/create", json_body=body))

    def network_remove(self, name: str) -> None:
        self.delete(f"/networks/{q(name)}")

    def network_connect(self, net: str, container: str, endpoint: dict[str, Any]) -> None:
        self.post(f"/networks/{q(net)}/connect", json_body={"Container": container, "EndpointConfig": endpoint})

    def network_disconnect(self, net: str, container: str, force: bool = False) -> None:
        self.post(f"/networks/{q(net)}/disconnect", json_body={"Container": container, "Force": force})

    def networks_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return _obj(self.post("/networks/prune", {"filters": filters_param(filters)}) or {})

    # ---- volumes ---------------------------------------------------------------------------------
    def volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return _obj(self.get_json("/volumes", {"filters": filters_param(filters)}))

    def volume_inspect(self, name: str) -> dict[str, Any]:
        return _obj(self.get_json(f"/volumes/{q(name)}"))

    def volume_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return _obj(self.post("/volumes/create", json_body=body))

    def volume_remove(self, name: str, force: bool = False) -> None:
        self.delete(f"/volumes/{q(name)}", {"force": "1" if force else None})

    def volumes_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return _obj(self.post("/volumes/prune", {"filters": filters_param(filters)}) or {})
