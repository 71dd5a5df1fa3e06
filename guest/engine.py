"""The engine core: one object that owns the stores and services; API handlers are thin over it."""

from __future__ import annotations

import importlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.events import EventBus

log = logging.getLogger("skiffd")


def _service(target: str, engine: "Engine") -> Any:
    """Build a service if its module exists yet (the engine grows one service at a time)."""
    mod_name, _, cls_name = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            return None
        raise
    return getattr(mod, cls_name)(engine)


class Engine:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.data_root)
        self.run_root = Path(cfg.exec_root)
        for d in (self.root, self.run_root):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.events = EventBus()
        self.id = self._engine_id()
        # Each service owns its own subfolder of the data root and is built from `<module>:<Class>(engine)`.
        # Order matters: volumes and networks exist before the containers that use them.
        self.images: Any = _service("skiffbox.guest.images.service:ImageService", self)
        self.volumes: Any = _service("skiffbox.guest.volumes.service:VolumeService", self)
        self.networks: Any = _service("skiffbox.guest.network.service:NetworkService", self)
        self.containers: Any = _service("skiffbox.guest.containers.service:ContainerService", self)

    def _engine_id(self) -> str:
        p = self.root / "engine-id"
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            eid = str(uuid.uuid4())
            tmp = p.with_suffix(".tmp")
            tmp.write_text(eid)
            os.replace(tmp, p)
            return eid

    async def start(self) -> None:
        """Recover state after a restart or crash (each service does its own part)."""
        for svc in (self.images, self.volumes, self.networks, self.containers):
            if svc is not None and hasattr(svc, "start"):
                await svc.start()

    async def close(self) -> None:
        for svc in (self.containers, self.networks, self.volumes, self.images):
            if svc is not None and hasattr(svc, "close"):
                await svc.close()
