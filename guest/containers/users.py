"""Who a container's process runs as: `--user` (`name`, `uid`, `user:group`, `uid:gid`) and `--group-add`
resolved against the container's own /etc/passwd and /etc/group, as Docker does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from skiffbox.guest.containers.rootfs import read_file_in
from skiffbox.guest.errors import InvalidParameter


@dataclass
class ExecUser:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _parse_db(text: str | None) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(rootfs: Path, user: str, group_add: list[str] | None = None) -> ExecUser:
    """`user`, `uid`, `user:group`, `uid:gid` against the container's own /etc/passwd and /etc/group."""
    passwd = _parse_db(read_file_in(rootfs, "/etc/passwd"))
    groups = _parse_db(read_file_in(rootfs, "/etc/group"))
    name, _, grp = (user or "").partition(":")
    eu = ExecUser()
    uname = None
    if name == "" or name == "root" and not passwd:
        eu.uid = 0
        uname = "root"
    elif name.isdigit():
        eu.uid = int(name)
    else:
        uname = name
    entry = None
    for row in passwd:
        if len(row) >= 7 and ((uname is not None and row[0] == uname) or (uname is None and row[2] == str(eu.uid))):
            entry = row
            break
    if entry is not None:
        eu.uid = int(entry[2])
        eu.gid = int(entry[3]) if entry[3].isdigit() else 0
        eu.home = entry[5] or "/"
        uname = entry[0]
    elif uname is not None and uname != "root":
        raise InvalidParameter(f"unable to find user {uname}: no matching entries in passwd file")
    if grp:
        if grp.isdigit():
            eu.gid = int(grp)
        else:
            for row in groups:
                if len(row) >= 3 and row[0] == grp:
                    eu.gid = int(row[2])
                    break
            else:
                raise InvalidParameter(f"unable to find group {grp}: no matching entries in group file")
    elif uname is not None:
        # Supplementary groups from /etc/group membership (only when no explicit group was given, like Docker).
        for row in groups:
            if len(row) >= 4 and uname in row[3].split(",") and row[2].isdigit():
                g = int(row[2])
                if g != eu.gid and g not in eu.additional_gids:
                    eu.additional_gids.append(g)
    for name in group_add or []:
        if name.isdigit():
            gid = int(name)
        else:
            for row in groups:
                if len(row) >= 3 and row[0] == name:
                    gid = int(row[2])
                    break
            else:
                raise InvalidParameter(f"unable to find group {name}: no matching entries in group file")
        if gid not in eu.additional_gids:
            eu.additional_gids.append(gid)
    return eu

