"""The engine core: one object that owns the stores and services; API handlers are thin over it."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from skiffbox.guest.build.manager import BuildManager
from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.containers.service import ContainerService
from skiffbox.guest.events import EventBus
from skiffbox.guest.images.service import ImageService
from skiffbox.guest.network import overlay
from skiffbox.guest.network.service import NetworkService
from skiffbox.guest.plugins.store import PluginStore
from skiffbox.guest.swarm.cluster import Cluster
from skiffbox.guest.swarm.services import SwarmServices
from skiffbox.guest.util.atomicfile import atomic_write
from skiffbox.guest.volumes.service import VolumeService

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
        # Each service owns its own subfolder of the data root and gets its collaborators here, in dependency
        # order: images, volumes and networks exist before the containers that use them (guest/contracts.py).
        # The two questions asked the other way (which containers use an image; VolumesFrom's container) are
        # functions that reach the containers service when called, after start.
        self.images = ImageService(cfg, self.root, self.events, image_users=lambda iid: self.containers.image_users(iid))
        self.volumes = VolumeService(self.root, self.events, find_container=lambda ref: self.containers.get(ref))
        self.networks = NetworkService(cfg, self.root, self.run_root, self.events)
        self.containers = ContainerService(cfg, self.root, self.run_root, self.events,
                                           images=self.images, volumes=self.volumes, networks=self.networks)
        self.builds = BuildManager(self.root, images=self.images, containers=self.containers)
        # Swarm mode (one node): inactive until `swarm init`; its state survives restarts on its own.
        self.swarm = Cluster(self.root, self.events, make_networks=lambda: overlay.make_ingress(self.networks),
                             drop_networks=lambda: overlay.drop_all(self.networks), engine_labels=cfg.labels)
        self.networks.swarm_pools = self.swarm.address_pools
        # Swarm services run their tasks as this engine's containers; leaving the swarm removes them.
        self.services = SwarmServices(self.root, self.run_root, self.events, self.swarm, containers=self.containers,
                                      images=self.images, networks=self.networks)
        self.plugins = PluginStore(self.root, self.events)

    def _engine_id(self) -> str:
        p = self.root / "engine-id"
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            eid = str(uuid.uuid4())
            atomic_write(p, eid)
            return eid

    async def start(self) -> None:
        """Recover state after a restart or crash (each service does its own part)."""
        await self.images.start()
        await self.networks.start()
        await self.containers.start()
        await self.services.start()  # outside a swarm: the tasks' containers of a leave cut short go first
        if not self.swarm.active:  # a leave cut short by a crash: its networks go with the swarm
            await overlay.drop_all(self.networks)

    async def close(self) -> None:
        await self.services.close()
        await self.containers.close()
        await self.networks.close()
        await self.volumes.close()
        await self.images.close()
