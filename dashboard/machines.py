"""Machines for the page: the `machine ls` rows (machine/host.py's describe_all) and the lifecycle operations
of machine/host.py (create, start, stop, restart, kill, regenerate certificates, remove), each reporting its
progress lines to a job."""

from __future__ import annotations

import os
from typing import Any

from skiffbox.dashboard.jobs import Emit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from skiffbox.machine.store import Store

OPS = ("start", "stop", "restart", "kill", "regenerate-certs")


def _store() -> Store:
    from skiffbox.machine.store import Store

    return Store()


def names() -> list[str]:
    return _store().names()


def list_machines(timeout: float = 10.0) -> list[dict[str, Any]]:
    from skiffbox.machine.host import describe_all

    store = _store()
    return describe_all(store, store.names(), timeout)


def drivers() -> list[dict[str, Any]]:
    """Driver names and their create flags, for the create form."""
    from skiffbox.machine.drivers.base import driver_class, driver_names

    out = []
    for dn in driver_names():
        try:
            flags = driver_class(dn).create_flags()
        except Exception:  # a driver that cannot load is left out of the form, as from `machine create --help`
            continue
        out.append({"name": dn, "flags": [{"name": f.name, "help": f.help, "flag": f.is_flag,
                                           "default": "" if f.default is None else str(f.default)} for f in flags]})
    return out


def _driver_flags(driver: str, given: dict[str, str]) -> dict[str, Any]:
    """The form's strings as `machine create` would pass them (typed; the flag's environment variable when
    not given; unknown names refused)."""
    from skiffbox.machine.drivers.base import driver_class

    flags = {f.name: f for f in driver_class(driver).create_flags()}
    unknown = sorted(set(given) - set(flags))
    if unknown:
        raise ValueError(f"unknown option(s) for the {driver} driver: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, f in flags.items():
        raw = given.get(name, "")
        if raw == "" and f.envvar:
            raw = os.environ.get(f.envvar, "")
        key = name.replace("-", "_")
        if raw == "":
            out[key] = bool(f.default) if f.is_flag else f.default
        elif f.is_flag:
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        else:
            try:
                out[key] = f.type(raw)
            except ValueError:
                raise ValueError(f"--{name}: {raw!r} is not a valid {f.type.__name__}") from None
    return out


def create(name: str, driver: str, given: dict[str, str], emit: Emit) -> None:
    from skiffbox.machine.host import create as create_host
    from skiffbox.machine.store import validate_name

    validate_name(name)
    flags = _driver_flags(driver, given)
    create_host(_store(), name, driver, flags, None, (), lambda m: emit({"status": m}))


def operate(name: str, op: str, emit: Emit) -> None:
    from skiffbox.machine.host import Host

    if op not in OPS:
        raise ValueError(f"unknown machine operation {op!r}")
    h = Host.load(_store(), name)

    def progress(m: str) -> None:
        emit({"status": m})

    if op == "regenerate-certs":
        h.regenerate_certs(progress)
    else:
        getattr(h, op)(progress)


def remove(name: str, force: bool, emit: Emit) -> None:
    from skiffbox.machine.host import Host

    Host.load(_store(), name).remove(force=force, progress=lambda m: emit({"status": m}))
