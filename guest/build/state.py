"""What every build step works with: the build's options, the stage being built, and a failed step's error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skiffbox.guest.build.instructions import Stage
from skiffbox.guest.errors import EngineError
from skiffbox.guest.images.image import Image

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(EngineError):
    """A failed step: shown in the build stream as `errorDetail` (code = the RUN command's exit code)."""

    status = 400

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    cache_from: list[str] = field(default_factory=list)  # images that are the cache's only sources
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    networkmode: str = ""
    platform: str = ""
    quiet: bool = False
    auth_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_hosts: list[str] = field(default_factory=list)
    shm_size: int = 0
    host_config: dict[str, Any] = field(default_factory=dict)  # cpu/memory limits for RUN containers


def scratch_config() -> dict[str, Any]:
    return {"Env": [DEFAULT_PATH], "Cmd": None, "Entrypoint": None, "WorkingDir": "", "User": "",
            "Labels": None, "OnBuild": None, "Volumes": None}


@dataclass
class StageState:
    stage: Stage
    image: Image | None = None  # None before FROM / for scratch
    meta: dict[str, Any] = field(default_factory=dict)  # the image config without rootfs/history
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    cmd_set: bool = False

    @property
    def cfg(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.meta.setdefault("config", {})
        return cfg

    @property
    def image_id(self) -> str:
        return self.image.id if self.image is not None else ""

    @property
    def shell(self) -> list[str]:
        return list(self.cfg.get("Shell") or DEFAULT_SHELL)

    def nop(self, comment: str) -> str:
        """The history line of a step that runs nothing (`/bin/sh -c #(nop)  ENV A=1`)."""
        return " ".join(self.shell + ["#(nop) ", comment])
