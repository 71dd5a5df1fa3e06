"""`GET /images/json` filters: dangling, label, before, since, reference, until (moby semantics)."""

from __future__ import annotations

import re
from collections.abc import Callable

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.image import familiar, is_tag_ref, parse_created
from skiffbox.guest.images.store import ImageRec
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.util.timefmt import parse_time

ALLOWED = {"dangling", "label", "label!", "before", "since", "reference", "until"}


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: `*` and `?` never match `/`; `[...]` classes."""
    rx = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                return False
            body = pattern[i + 1:j]
            if body.startswith("^"):
                body = "^" + body[1:]
            rx += "[" + body.replace("\\", "\\\\") + "]"
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            rx += re.escape(pattern[i])
        else:
            rx += re.escape(c)
        i += 1
    try:
        return re.fullmatch(rx, name) is not None
    except re.error:
        return False


def _ref_matches(pattern: str, ref: str) -> bool:
    f = familiar(ref)
    if path_match(pattern, f):
        return True
    name = f.split("@", 1)[0]
    if is_tag_ref(ref):
        name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return path_match(pattern, name)


def image_filter(lookup: Callable[[str], ImageRec],
                 flt: dict[str, list[str]]) -> Callable[[ImageRec, list[str]], list[str] | None]:
    """Returns f(image, refs) → the refs to show (possibly fewer, with `reference`), or None to skip;
    `lookup` finds the images `before` and `since` name."""
    for k in flt:
        if k not in ALLOWED:
            raise InvalidParameter(f"invalid filter '{k}'")
    dangling = bool_filter(flt.get("dangling"), "dangling")
    before = min((parse_created(lookup(v).config.get("created")) for v in flt.get("before", [])), default=None)
    since = max((parse_created(lookup(v).config.get("created")) for v in flt.get("since", [])), default=None)
    until = parse_time(flt["until"][-1]) if flt.get("until") else None
    patterns = flt.get("reference") or []

    def f(rec: ImageRec, refs: list[str]) -> list[str] | None:
        tags = [r for r in refs if is_tag_ref(r)]
        if dangling is True and tags:
            return None
        if dangling is False and not tags:
            return None
        created = parse_created(rec.config.get("created"))
        if before is not None and not created < before:
            return None
        if since is not None and not created > since:
            return None
        if until is not None and not created < until:
            return None
        labels = (rec.config.get("config") or {}).get("Labels") or {}
        if flt.get("label") and not match_labels(labels, flt["label"]):
            return None
        if flt.get("label!") and any(match_labels(labels, [l]) for l in flt["label!"]):
            return None
        if patterns:
            refs = [r for r in refs if any(_ref_matches(p, r) for p in patterns)]
            if not refs:
                return None
        return refs

    return f
