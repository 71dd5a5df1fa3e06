"""Docker's list output: table columns, sizes, durations, ports, and `--format` templates.

Templates are rendered by client/gotemplate.py (the Go text/template subset shared with `machine ls`),
loaded only when a template needs more than `{{.Field}}` substitutions (the default tables do not);
what is docker-CLI specific lives here: the row fields of each listing (docker's formatter contexts, with
the same names and values), the `table`/`json`/custom dispatch, the `{{.Label "k"}}` method call, and the
tabwriter settings (minwidth 10, padding 3, as cli/command/formatter does).
"""

from __future__ import annotations

import time

from skiffbox.guest.util.humanize import human_duration  # one implementation with the engine's

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

# `re` and `json` are imported inside the functions that need them: the default `ps`/`images` tables are
# rendered without either (each costs milliseconds at start-up, which is most of the 2x budget).

TABLE_MINWIDTH = 10
TABLE_PADDING = 3


# ---------------------------------------------------------------------------------------------
# Units (docker/go-units)
# ---------------------------------------------------------------------------------------------

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _scaled(size: float, base: float, units: list[str]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def _gofmt_g(v: float, precision: int) -> str:
    # Go's %.Ng and Python's %.Ng agree, exponent form included ("1e+03").
    return "%.*g" % (precision, v)


def human_size(size: float, precision: int = 3) -> str:
    """units.HumanSizeWithPrecision (listing columns use 3, HumanSize uses 4)."""
    v, unit = _scaled(float(size), 1000.0, _DECIMAL)
    return _gofmt_g(v, precision) + unit


def bytes_size(size: float) -> str:
    """units.BytesSize: binary units, 4 significant digits ("23.47GiB")."""
    v, unit = _scaled(float(size), 1024.0, _BINARY)
    return _gofmt_g(v, 4) + unit


def since(ts: float, now: float | None = None) -> str:
    return human_duration((now if now is not None else time.time()) - ts) + " ago"


def parse_size(raw: str, binary: bool = True) -> int:
    """units.RAMInBytes (binary) / FromHumanSize (decimal): "512m", "1.5g", "100kb", "1024"."""
    import re

    m = re.fullmatch(r"(?i)(\d+(?:\.\d+)*) ?([kmgtp])?i?b?", raw.strip())
    if not m:
        raise ValueError(f"invalid size: '{raw}'")
    mult = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}.get((m.group(2) or "").lower(), 0)
    return int(float(m.group(1)) * ((1024 if binary else 1000) ** mult))


def go_time(ts: float) -> str:
    """Go's time.Time.String() for a Unix time in the local zone: "2026-11-28 04:30:00 +0000 UTC"."""
    lt = time.localtime(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", lt) + (lt.tm_zone or "")


def truncate_id(i: str) -> str:
    if ":" in i:
        i = i.split(":", 1)[1]
    return i[:12]


def ellipsis(s: str, width: int) -> str:
    """formatter.Ellipsis for the ASCII case (the common one): cut to width-1 and add "…"."""
    if width <= 0:
        return ""
    if len(s) <= width:
        return s
    if width == 1:
        return s[0]
    return s[: width - 1] + "…"


def natural_less_key(s: str) -> list[Any]:
    """fvbommel/sortorder.NaturalLess as a key: digit runs compare by value, case-sensitive otherwise."""
    import re

    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s) if p]


# ---------------------------------------------------------------------------------------------
# Image references (distribution/reference, the parts the CLI needs)
# ---------------------------------------------------------------------------------------------


def split_reference(ref: str) -> tuple[str, str, str]:
    """"name[:tag][@digest]" -> (name, tag, digest); a port colon is not a tag."""
    name, _, digest = ref.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def normalize_name(name: str) -> str:
    """ParseNormalizedNamed: "busybox" -> "docker.io/library/busybox"."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    return f"{domain}/{path}"


def familiar_name(name: str) -> str:
    """FamiliarName: "docker.io/library/busybox" -> "busybox"."""
    n = normalize_name(name)
    if n.startswith("docker.io/"):
        n = n[len("docker.io/"):]
        if n.startswith("library/") and n.count("/") == 1:
            n = n[len("library/"):]
    return n


def registry_of(name: str) -> str:
    return normalize_name(name).split("/", 1)[0]


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------


def _join_host_port(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ip_key(ip: str) -> tuple[int, bytes]:
    """Sort key like netip.Addr.Less: IPv4 before IPv6, then by address bytes (no `ipaddress` import)."""
    import _socket

    if not ip:
        return (0, b"")
    for rank, family in ((1, _socket.AF_INET), (2, _socket.AF_INET6)):
        try:
            return (rank, _socket.inet_pton(family, ip))
        except OSError:
            continue
    return (3, ip.encode())


def displayable_ports(ports: Sequence[Mapping[str, Any]] | None) -> str:
    """formatter.DisplayablePorts: "0.0.0.0:8080->80/tcp, 9000-9001/tcp"."""
    ports = sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), _ip_key(p.get("IP") or ""),
                                                p.get("PublicPort", 0), p.get("Type", "")))
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for p in ports:
        cur = int(p.get("PrivatePort") or 0)
        typ = p.get("Type", "tcp")
        key = typ
        ip = p.get("IP") or ""
        if ip:
            pub = int(p.get("PublicPort") or 0)
            if pub != cur:
                mappings.append(f"{_join_host_port(ip, str(pub))}->{cur}/{typ}")
                continue
            key = ip + "/" + typ
        g = groups.get(key)
        if g is None:
            groups[key] = [cur, cur]
            order.append(key)
            continue
        if cur == g[1] + 1:
            g[1] = cur
            continue
        result.append(_form_group(key, g[0], g[1]))
        groups[key] = [cur, cur]
    for key in order:
        g = groups[key]
        result.append(_form_group(key, g[0], g[1]))
    return ", ".join(result + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    parts = key.split("/")
    typ, ip = parts[0], ""
    if len(parts) > 1:
        ip, typ = parts[0], parts[1]
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{_join_host_port(ip, group)}->{group}"
    return f"{group}/{typ}"


# ---------------------------------------------------------------------------------------------
# Rows: the fields each listing exposes to --format (docker's formatter contexts)
# ---------------------------------------------------------------------------------------------


def _joined_labels(labels: Mapping[str, str] | None, sort: bool = True) -> str:
    if not labels:
        return ""
    items = [f"{k}={v}" for k, v in labels.items()]
    return ",".join(sorted(items) if sort else items)


_GO_CHAR_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                    "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """strconv.Quote: printable characters as they are, the rest escaped Go's way."""
    out = ['"']
    for ch in s:
        if ch in _GO_CHAR_ESCAPES:
            out.append(_GO_CHAR_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def container_row(c: Mapping[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, Any]:
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = [next((n for n in names if "/" not in n), "")] if names else []
    image = c.get("Image") or ""
    if not image:
        image = "<no image>"
    elif trunc:
        if truncate_id(c.get("ImageID") or "") == truncate_id(image):
            image = truncate_id(image)
        elif "@" in image:
            name, tag, _ = split_reference(image)
            image = familiar_name(name) + (f":{tag}" if tag else "")
    cmd = c.get("Command") or ""
    mounts = []
    for m in c.get("Mounts") or []:
        n = m.get("Name") or m.get("Source") or ""
        mounts.append(ellipsis(n, 15) if trunc else n)
    nets = list(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    srw, srf = c.get("SizeRw") or 0, c.get("SizeRootFs") or 0
    size = human_size(srw)
    if srf > 0:
        size = f"{size} (virtual {human_size(srf)})"
    created = c.get("Created") or 0
    row = {
        "Command": go_quote(ellipsis(cmd, 20) if trunc else cmd),
        "CreatedAt": go_time(created),
        "ID": truncate_id(c.get("Id", "")) if trunc else c.get("Id", ""),
        "Image": image,
        "Labels": _joined_labels(c.get("Labels")),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Mounts": ",".join(mounts),
        "Names": ",".join(names),
        "Networks": ",".join(nets),
        "Platform": _platform(c.get("ImageManifestDescriptor")),
        "Ports": displayable_ports(c.get("Ports")),
        "RunningFor": since(created, now),
        "Size": size,
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
    }
    row["_labels"] = c.get("Labels") or {}
    return row


def _platform(desc: Mapping[str, Any] | None) -> str | None:
    p = (desc or {}).get("platform") or (desc or {}).get("Platform")
    if not p:
        return None  # docker 28 prints null (JSON) / <nil> (text) when the engine sends no descriptor
    s = f"{p.get('os', '')}/{p.get('architecture', '')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


CONTAINER_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
                     "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE",
                     "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
                     "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM"}
CONTAINER_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _image_row(img: Mapping[str, Any], repo: str, tag: str, digest: str, trunc: bool, now: float | None) -> dict[str, Any]:
    created = img.get("Created") or 0
    size = img.get("Size") or 0
    shared = img.get("SharedSize", -1)
    containers = img.get("Containers", -1)
    return {
        "Containers": "N/A" if containers == -1 else str(containers),
        "CreatedAt": go_time(created),
        "CreatedSince": since(created, now) if created else "N/A",
        "Digest": digest,
        "ID": truncate_id(img.get("Id", "")) if trunc else img.get("Id", ""),
        "Repository": repo,
        "SharedSize": "N/A" if shared == -1 else human_size(shared, 4),
        "Size": human_size(size),
        "Tag": tag,
        "UniqueSize": "N/A" if shared == -1 else human_size(size - shared, 4),
        "VirtualSize": human_size(size, 4),
        "_labels": img.get("Labels") or {},
    }


def image_rows(images: Iterable[Mapping[str, Any]], digests: bool, trunc: bool, need_digest: bool,
               now: float | None = None) -> list[dict[str, Any]]:
    """One row per repository:tag (and per digest with --digests), as formatter.imageFormat does."""
    rows = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        dgs = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        if not tags and not dgs:
            rows.append(_image_row(img, "<none>", "<none>", "<none>", trunc, now))
            continue
        repo_tags: dict[str, list[str]] = {}
        repo_digests: dict[str, list[str]] = {}
        for t in tags:
            name, tag, _ = split_reference(t)
            if tag:
                repo_tags.setdefault(familiar_name(name), []).append(tag)
        for d in dgs:
            name, _, dg = split_reference(d)
            if dg:
                repo_digests.setdefault(familiar_name(name), []).append(dg)
        for repo, ts in repo_tags.items():
            ds = repo_digests.pop(repo, [])  # digests never get rows of their own next to a tag
            if not need_digest:
                ds = []
            for tag in ts:
                if not ds:
                    rows.append(_image_row(img, repo, tag, "<none>", trunc, now))
                for dg in ds:
                    rows.append(_image_row(img, repo, tag, dg, trunc, now))
        for repo, ds in repo_digests.items():
            if digests:
                for dg in ds:
                    rows.append(_image_row(img, repo, "<none>", dg, trunc, now))
            else:
                rows.append(_image_row(img, repo, "<none>", "", trunc, now))
    return rows


IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
                 "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_TABLE_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def network_row(n: Mapping[str, Any], trunc: bool = True) -> dict[str, Any]:
    created = n.get("Created") or ""
    return {
        "CreatedAt": _go_time_rfc3339(created),
        "Driver": n.get("Driver", ""),
        "ID": truncate_id(n.get("Id", "")) if trunc else n.get("Id", ""),
        "IPv4": "true" if n.get("EnableIPv4", True) else "false",
        "IPv6": "true" if n.get("EnableIPv6") else "false",
        "Internal": "true" if n.get("Internal") else "false",
        "Labels": _joined_labels(n.get("Labels"), sort=False),
        "Name": n.get("Name", ""),
        "Scope": n.get("Scope", ""),
        "_labels": n.get("Labels") or {},
    }


NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv4": "IPV4",
                   "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def _go_time_rfc3339(s: str) -> str:
    """An RFC 3339 timestamp shown as Go's time.String() in UTC ("2026-11-28 04:30:00.123 +0000 UTC")."""
    if not s:
        return "0001-01-01 00:00:00 +0000 UTC"
    import re

    m = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        return s
    frac = (m.group(3) or "").rstrip("0").rstrip(".")
    zone = m.group(4)
    if zone == "Z":
        return f"{m.group(1)} {m.group(2)}{frac} +0000 UTC"
    off = zone.replace(":", "")
    return f"{m.group(1)} {m.group(2)}{frac} {off} {off}"


def volume_row(v: Mapping[str, Any]) -> dict[str, Any]:
    usage = v.get("UsageData")
    return {
        "Availability": "N/A",
        "Driver": v.get("Driver", ""),
        "Group": "N/A",
        "Labels": _joined_labels(v.get("Labels"), sort=False),
        "Links": "N/A" if not usage else str(usage.get("RefCount", 0)),
        "Mountpoint": v.get("Mountpoint", ""),
        "Name": v.get("Name", ""),
        "Scope": v.get("Scope", ""),
        "Size": "N/A" if not usage else human_size(usage.get("Size", 0), 4),
        "Status": "N/A",
        "_labels": v.get("Labels") or {},
    }


VOLUME_HEADERS = {"ID": "ID", "Name": "VOLUME NAME", "Group": "GROUP", "Driver": "DRIVER", "Scope": "SCOPE",
                  "Availability": "AVAILABILITY", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS",
                  "Size": "SIZE", "Status": "STATUS"}
VOLUME_TABLE = "table {{.Driver}}\t{{.Name}}"


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def list_format(given: str, quiet: bool, config_key: str, *, table: str, raw: str, quiet_format: str) -> str:
    """The template of `images`, `network ls` and `volume ls`: --format, else config.json's default (which -q
    skips), else "table"; the "table" and "raw" keywords become the listing's own templates, and with -q its
    one-column template (a custom --format stays as given)."""
    from skiffbox.cli.skiffclient.config import default_format

    fmt = given or (default_format(config_key) if not quiet else "") or "table"
    if quiet and fmt in ("table", "raw"):
        return quiet_format
    return {"table": table, "raw": raw}.get(fmt, fmt)


def tabwrite(text: str, minwidth: int = TABLE_MINWIDTH, padding: int = TABLE_PADDING) -> str:
    """Go's text/tabwriter (padchar ' ', no flags), elastic tabstops included: a column is aligned only
    over contiguous lines that have a cell in it, which `docker version`'s sections rely on."""
    lines = [ln.split("\t") for ln in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write(l0: int, l1: int) -> None:
        for i in range(l0, l1):
            cells = lines[i]
            parts = []
            for j, c in enumerate(cells):
                parts.append(c.ljust(widths[j]) if j < len(widths) and j < len(cells) - 1 else c)
            out.append("".join(parts) + ("\n" if i + 1 < len(lines) else ""))

    def fmt(l0: int, l1: int) -> None:
        column = len(widths)
        this = l0
        while this < l1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(l0, this)
            l0 = this
            width = minwidth
            while this < l1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(l0, this)
            widths.pop()
            l0 = this
        write(l0, l1)

    fmt(0, len(lines))
    return "".join(out)

def _actions(body: str) -> list[tuple[int, int, str]] | None:
    """(start, end, inner text) of each {{…}} in a template; None if braces do not pair up."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        a = body.find("{{", pos)
        if a < 0:
            return None if "}}" in body[pos:] else out
        b = body.find("}}", a + 2)
        if b < 0:
            return None
        out.append((a, b + 2, body[a + 2:b]))
        pos = b + 2


def _simple_field(inner: str) -> str | None:
    """"Name" for an action that is just `.Name`, else None."""
    t = inner.strip()
    return t[1:] if t.startswith(".") and t[1:].isidentifier() else None


def _prepare(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> str:
    """Rewrite `{{.Label "k"}}` (a method call gotemplate cannot express) to a plain field lookup; its
    header is the key's last dotted part with - and _ as spaces (docker's SubHeaderContext.Label)."""
    if ".Label" not in fmt:
        return fmt
    import json
    import re

    label_call = re.compile(r'\.Label\s+"((?:[^"\\]|\\.)*)"')
    calls = list(dict.fromkeys(label_call.findall(fmt)))
    for i, raw in enumerate(calls):
        key = json.loads(f'"{raw}"')
        for r in rows:
            r[f"_label{i}"] = (r.get("_labels") or {}).get(key, "")
        headers[f"_label{i}"] = key.split(".")[-1].replace("-", " ").replace("_", " ")
    return label_call.sub(lambda m: f".{'_label' + str(calls.index(m.group(1)))}", fmt)


class TemplateError(Exception):
    pass


def _check_fields(body: str, rows: list[dict[str, Any]]) -> None:
    """A field the listing does not have is an error, as with docker's typed contexts (not "<no value>")."""
    if not rows:
        return
    names: list[str] = []
    for _, _, inner in _actions(body) or []:
        field = _simple_field(inner)
        if field is not None:
            names.append(field)
        elif "." in inner:
            import re

            names += re.findall(r"(?<![\w\"])\.([A-Za-z_]\w*)", inner)
    for name in names:
        if name not in rows[0]:
            gotype = rows[0].get("_type")  # a row that names its Go context gets docker's full message
            if gotype:
                line = body[:body.find("." + name)]
                where = f":{line.count(chr(10)) + 1}:{len(line) - line.rfind(chr(10)) - 1}"
                raise TemplateError(f'template parsing error: template: {where}: executing "" at <.{name}>: '
                                    f"can't evaluate field {name} in type {gotype}")
            raise TemplateError(f'template parsing error: template: :1: executing "" at <.{name}>: '
                                f"can't evaluate field {name}")


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(obj: Any) -> str:
    """encoding/json's compact output: HTML-safe escapes (<, >, &) and raw UTF-8 otherwise. Those characters
    can only occur inside JSON strings, so replacing them in the encoded text is exact."""
    import json

    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for c, esc in _GO_ESCAPES.items():
        if c in text:
            text = text.replace(c, esc)
    return text


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _simple_parts(body: str) -> list[str] | None:
    """The template split into literals (even indexes) and field names (odd), if it only has `{{.Field}}`s."""
    acts = _actions(body)
    if acts is None:
        return None
    parts: list[str] = []
    pos = 0
    for a, b, inner in acts:
        field = _simple_field(inner)
        if field is None:
            return None
        parts += [body[pos:a], field]
        pos = b
    parts.append(body[pos:])
    return parts


def _fill(parts: list[str], values: Mapping[str, Any]) -> str:
    out = []
    for i, p in enumerate(parts):
        if i % 2 == 0:
            out.append(p)
        else:
            v = values[p] if p in values else p.upper()
            out.append(v if isinstance(v, str) else ("<nil>" if v is None else str(v)))
    return "".join(out)


def render_rows(fmt: str, rows: list[dict[str, Any]], headers: Mapping[str, str]) -> str:
    """docker's formatter.Context.Write: `table …` (aligned, with a header row), `json`, or a custom template."""
    is_table = fmt.startswith("table")
    if fmt == "json":
        body = "{{json .}}"
    elif is_table:
        body = fmt[len("table"):]
    else:
        body = fmt
    body = body.strip(" ")
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    headers = dict(headers)
    body = _prepare(body, rows, headers)
    _check_fields(body, rows)
    parts = _simple_parts(body)
    if body.replace(" ", "") == "{{json.}}":  # the common case, without the template engine's detour
        lines = [go_json(dict(sorted(_public(r).items()))) for r in rows]  # Go marshals a map: sorted
    elif parts is not None:
        lines = [_fill(parts, r) for r in rows]
    else:
        from skiffbox.client import gotemplate

        try:
            lines = [gotemplate.render(body, _public(r) if "json ." in body else r) for r in rows]
        except gotemplate.TemplateError as e:
            raise TemplateError(f"template parsing error: {e}") from None
    if is_table:
        if parts is not None:
            header = _fill(parts, headers)
        else:
            from skiffbox.client import gotemplate

            header = gotemplate.header_for(body, headers)
        return tabwrite("".join(line + "\n" for line in [header] + lines))
    return "".join(line + "\n" for line in lines)


# Go field names a template may use where the wire (JSON) name differs: `{{.ID}}` on inspect output,
# `{{.Server.APIVersion}}` on version. Both spellings work; `json` still prints the wire names.
GO_FIELD_ALIASES = {"ID": "Id", "APIVersion": "ApiVersion"}


class _GoView(dict):
    """A JSON object as a Go template sees the typed struct: aliases resolve on lookup only."""

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (key in GO_FIELD_ALIASES and
                                                dict.__contains__(self, GO_FIELD_ALIASES[key]))

    def __getitem__(self, key: str) -> Any:
        if not dict.__contains__(self, key) and key in GO_FIELD_ALIASES:
            key = GO_FIELD_ALIASES[key]
        return dict.__getitem__(self, key)


def go_view(obj: Any) -> Any:
    if isinstance(obj, dict):
        return _GoView((k, go_view(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [go_view(v) for v in obj]
    return obj


def render_object(fmt: str, obj: Any) -> str:
    """`inspect --format` / `version --format`: one template against one object (JSON-decoded)."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if fmt.strip() == "{{json .}}":
        return go_json(obj)
    from skiffbox.client import gotemplate

    try:
        return gotemplate.render(fmt, go_view(obj))
    except gotemplate.TemplateError as e:
        raise TemplateError(f"template parsing error: {e}") from None


def compact_raw(raw: bytes) -> str:
    """Go's json.Compact: whitespace between tokens removed, the engine's bytes otherwise untouched."""
    return indent_raw(raw, None)


def indent_raw(raw: bytes, indent: str | None = "    ") -> str:
    """Go's json.Indent(dst, src, "", "    "), as `docker inspect` prints: the engine's bytes re-indented,
    strings, numbers and key order untouched, `{}`/`[]` kept empty. indent=None compacts instead."""
    if indent is None:
        nl = colon = ""
        indent = ""
    else:
        nl, colon = "\n", " "
    text = raw.decode("utf-8", errors="replace")
    out: list[str] = []
    depth = 0
    i, n = 0, len(text)
    need_indent = False  # an opening bracket was written; its first element goes on a new line
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if need_indent and c not in "]}":
            out.append(nl + indent * depth)
            need_indent = False
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        if c in "[{":
            out.append(c)
            depth += 1
            need_indent = True
        elif c in "]}":
            depth -= 1
            if need_indent:  # empty container
                need_indent = False
            else:
                out.append(nl + indent * depth)
            out.append(c)
        elif c == ",":
            out.append("," + nl + indent * depth)
        elif c == ":":
            out.append(":" + colon)
        else:
            j = i
            while j < n and text[j] not in ",:]} \t\r\n":
                j += 1
            out.append(text[i:j])
            i = j
            continue
        i += 1
    return "".join(out)
