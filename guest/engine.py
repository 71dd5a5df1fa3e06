"""The engine core: one object that owns the stores and services; API handlers are thin over it."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from guest.config import DaemonConfig
from guest.events import EventBus

log = logging.getLogger("skiffd")


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
        # Services are added here as they land; each owns its own subfolder of the data root.
        self.images = None
        self.containers = None
        self.networks = None
        self.volumes = None

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
