"""Read-only views of the stored images: `docker images` (list, with its filters), inspect, history and the
images part of `docker system df`, in the shapes the Engine API answers with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.catalog import ImageCatalog
from skiffbox.guest.images.filters import image_filter
from skiffbox.guest.images.image import familiar, is_tag_ref, parse_created
from skiffbox.guest.images.store import ImageRec, chain_ids
from skiffbox.guest.util.timefmt import rfc3339

# An API version check: `at_least("1.44")` is true when the client speaks 1.44 or later.
VersionCheck = Callable[[str], bool]


class ImageQueries:
    def __init__(self, catalog: ImageCatalog, image_users: Callable[[str], list[tuple[str, bool]]]) -> None:
        """`image_users(image_id)` -> [(container id, running)], for the container counts of disk usage."""
        self.catalog = catalog
        self.store = catalog.store
        self.image_users = image_users

    def summary(self, rec: ImageRec, legacy_none: bool = False, refs: list[str] | None = None) -> dict[str, Any]:
        refs = self.store.refs_for(rec.id) if refs is None else refs
        tags = [familiar(r) for r in refs if is_tag_ref(r)]
        digests = [familiar(r) for r in refs if not is_tag_ref(r)]
        if legacy_none and not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        return {
            "Id": rec.id,
            "ParentId": rec.parent,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": int(parse_created(rec.config.get("created"))),
            "Size": self.catalog.size(rec),
            "SharedSize": -1,
            "Labels": (rec.config.get("config") or {}).get("Labels") or {},
            "Containers": -1,
        }

    def list_images(self, all_: bool = False, filters: dict[str, list[str]] | None = None,
                    legacy_none: bool = False, with_virtual_size: bool = False) -> list[dict[str, Any]]:
        keep = image_filter(self.catalog.lookup, filters or {})
        out = []
        parents = self.store.parents()
        for rec in self.store.images.values():
            refs = self.store.refs_for(rec.id)
            if not refs and not all_ and rec.id in parents:
                continue  # intermediate (build) images are shown with -a only
            shown = keep(rec, refs)
            if shown is None:
                continue
            s = self.summary(rec, legacy_none, shown)
            if with_virtual_size:
                s["VirtualSize"] = s["Size"]
            out.append(s)
        out.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return out

    def inspect(self, ref_or_id: str, api_version_at_least: VersionCheck | None = None) -> dict[str, Any]:
        rec = self.catalog.lookup(ref_or_id)
        img = self.catalog.image(rec)
        cfg = rec.config
        c = cfg.get("config") or {}
        out: dict[str, Any] = {
            "Id": rec.id,
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Parent": rec.parent,
            "Comment": cfg.get("comment", ""),
            "Created": cfg.get("created") or "0001-01-01T00:00:00Z",
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _container_config(c),
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": img.size,
            "GraphDriver": {"Name": "overlay2", "Data": _graph_data([str(d) for d in img.layer_dirs()])},
            "RootFS": {"Type": "layers", "Layers": rec.diff_ids},
            "Metadata": {"LastTagTime": rfc3339(rec.last_tag_time) if rec.last_tag_time else "0001-01-01T00:00:00Z"},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        if api_version_at_least is not None:
            if not api_version_at_least("1.44"):
                out["VirtualSize"] = img.size
            if not api_version_at_least("1.45"):
                out["Container"] = cfg.get("container", "")
                out["ContainerConfig"] = _container_config(cfg.get("container_config") or {})
        return out

    def history(self, ref_or_id: str) -> list[dict[str, Any]]:
        rec = self.catalog.lookup(ref_or_id)
        rows: list[dict[str, Any]] = []
        diff_ids = rec.diff_ids
        chains = chain_ids(diff_ids)
        n = 0
        for h in rec.config.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if n >= len(chains):
                    raise InvalidParameter("too many non-empty layers in History section")
                layer = self.store.layers.get(chains[n])
                size = layer.size if layer else 0
                n += 1
            rows.insert(0, {"Id": "<missing>", "Created": int(parse_created(h.get("created"))),
                            "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                            "Comment": h.get("comment", "")})
        cur: ImageRec | None = rec
        for row in rows:
            if cur is None:
                break
            row["Id"] = cur.id
            tags = [familiar(r) for r in self.store.refs_for(cur.id) if is_tag_ref(r)]
            row["Tags"] = tags or None
            cur = self.store.images.get(cur.parent) if cur.parent else None
        return rows

    def disk_usage(self) -> dict[str, Any]:
        use: dict[str, int] = {}
        for rec in self.store.images.values():
            for ch in set(rec.chain_ids):
                use[ch] = use.get(ch, 0) + 1
        images = []
        for rec in self.store.images.values():
            s = self.summary(rec, legacy_none=False)
            s["SharedSize"] = sum(self.store.layers[c].size for c in set(rec.chain_ids) if use.get(c, 0) > 1)
            s["Containers"] = len(self.image_users(rec.id))
            images.append(s)
        images.sort(key=lambda s: s["Created"], reverse=True)
        return {"LayersSize": sum(l.size for l in self.store.layers.values()), "Images": images}


def _container_config(c: dict[str, Any]) -> dict[str, Any]:
    """The image's `Config` as inspect shows it (Docker fills the zero values of its struct)."""
    base: dict[str, Any] = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                            "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
                            "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                            "OnBuild": None, "Labels": None}
    base.update(c)
    return base


def _graph_data(dirs: list[str]) -> dict[str, str]:
    if not dirs:
        return {}
    top = dirs[-1]
    data = {"MergedDir": top + "-merged", "UpperDir": top, "WorkDir": top + "-work"}
    if len(dirs) > 1:
        data["LowerDir"] = ":".join(reversed(dirs[:-1]))
    return data
