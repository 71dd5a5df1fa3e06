"""The VirtualBox SDK backend (pyvbox, PyPI `virtualbox`), behind vbox_manage.Backend."""

from __future__ import annotations

from machine.drivers.base import DriverError


class ApiUnavailable(DriverError):
    """pyvbox or the SDK's bindings (vboxapi) cannot be used here; VBoxManage is used instead."""


class ApiBackend:
    def __init__(self) -> None:
        try:
            import virtualbox  # noqa: F401
        except ImportError as e:
            raise ApiUnavailable(f"pyvbox is not installed ({e})") from None
        raise ApiUnavailable("not implemented yet")
