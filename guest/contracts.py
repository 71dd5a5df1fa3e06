"""What the engine's services need from each other, written as `typing.Protocol`s.

The engine (guest/engine.py) builds the services in dependency order and hands each one its collaborators;
the service sees only the contract below, so what crosses a service boundary is written down in one place
and checked by mypy (the concrete ImageService, VolumeService, NetworkService must satisfy these).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from skiffbox.guest.images.image import Image

if TYPE_CHECKING:  # the containers package imports this module
    import asyncio

    from skiffbox.guest.containers.logs import Entry
    from skiffbox.guest.containers.store import Container


class ContainerRef(Protocol):
    """A container as other services see it (the containers service's `Container`): its record in Docker's
    shape (`rec`: Id, Name, Config, HostConfig, NetworkSettings, Mounts, ...) and a few derived fields."""

    rec: dict[str, Any]

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def host_config(self) -> dict[str, Any]: ...

    @property
    def netns_path(self) -> str | None: ...

    @property
    def running(self) -> bool: ...


class EventSink(Protocol):
    """The event bus as a publisher (`/events`)."""

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None,
                scope: str = "local") -> dict[str, Any]: ...


class ImagesForContainers(Protocol):
    """Containers are created from an image (resolved by ID even after `rmi -f` hid it) and committed to one."""

    async def resolve(self, ref_or_id: str) -> Image: ...

    async def create_from_diff(self, diff_tar_path: Path | None, parent: Image | None, config: dict[str, Any],
                               history_entry: dict[str, Any], tags: list[str]) -> Image: ...


class NetworksForContainers(Protocol):
    """A container's network sandbox: checked at create, wired at start (netavark in the background until
    `ready`), torn down after it stopped."""

    def validate(self, host_config: dict[str, Any], endpoints_config: dict[str, Any] | None,
                 config: dict[str, Any] | None = None) -> list[str]: ...

    async def setup(self, ctr: ContainerRef, netns_path: str | None, background: bool = False) -> dict[str, Any]: ...

    async def ready(self, ctr: ContainerRef) -> None: ...

    async def teardown(self, ctr: ContainerRef, netns_path: str | None = None) -> None: ...

    def resolv_conf(self, ctr_id: str) -> str | None: ...


class VolumesForContainers(Protocol):
    """Named and anonymous volumes: prepared at create, mounted at every start, released after a stop,
    forgotten at removal; `mountpoints` is inspect's `Mounts`."""

    async def prepare(self, ctr: ContainerRef, image_volumes: dict[str, Any] | None = None) -> object: ...

    async def mounts_for(self, ctr: ContainerRef, rootfs: str | Path | None = None) -> list[dict[str, Any]]: ...

    async def release(self, ctr: ContainerRef) -> None: ...

    async def forget(self, ctr: ContainerRef, remove_anonymous: bool = False) -> None: ...

    def mountpoints(self, ctr: ContainerRef) -> list[dict[str, Any]]: ...


class ImagesForBuild(Protocol):
    """A build's images: FROM and COPY --from resolve one (pulling it when missing, or always with --pull),
    each step's image is made over the previous one, and the result is tagged."""

    async def resolve(self, ref_or_id: str) -> Image: ...

    def get(self, ref_or_id: str) -> Image: ...

    async def pull(self, ref: str, auth: dict[str, Any] | None = None, platform: str | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> Image: ...

    async def create_from_diff(self, diff_tar_path: Path | None, parent: Image | None, config: dict[str, Any],
                               history_entry: dict[str, Any], tags: list[str], layer: str | None = None) -> Image: ...

    async def tag(self, source: str, repo: str, tag: str | None) -> Image: ...


class ContainersForBuild(Protocol):
    """A RUN step's container: created from the step's image, started, its output followed into the build
    stream until it exits (killed if the build is cancelled), then removed (its upper dir is the layer)."""

    async def create(self, body: dict[str, Any], name: str | None = None,
                     platform: str | None = None) -> tuple[Container, list[str]]: ...

    async def start_container(self, ref: str) -> None: ...

    def wait_future(self, ref: str, condition: str | None) -> asyncio.Future[dict[str, Any]]: ...

    def log_entries(self, c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int | None,
                    since: float | None, until: float | None) -> AsyncIterator[Entry]: ...

    async def kill(self, ref: str, sig: str | None = None) -> None: ...

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, background: bool = False) -> None: ...


class ContainersForTasks(Protocol):
    """A swarm task runs as an ordinary container: created and started, watched until it exits, its logs read,
    stopped when the task is shut down and removed with it."""

    async def create(self, body: dict[str, Any], name: str | None = None,
                     platform: str | None = None) -> tuple[Container, list[str]]: ...

    async def start_container(self, ref: str) -> None: ...

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None: ...

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, background: bool = False) -> None: ...

    def get(self, ref: str) -> Container: ...

    async def list(self, *, all_: bool, limit: int | None, size: bool,
                   filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...

    def exit_future(self, c: Container) -> asyncio.Future[dict[str, Any]]: ...

    def log_entries(self, c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int | None,
                    since: float | None, until: float | None) -> AsyncIterator[Entry]: ...


class ImagesForTasks(Protocol):
    """A task's image: used when present, pulled (through the registry mirrors) when not."""

    async def resolve(self, ref_or_id: str) -> Image: ...

    async def pull(self, ref: str, auth: dict[str, Any] | None = None, platform: str | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> Image: ...


class NetworksForTasks(Protocol):
    """A service's networks by name or ID (the record's `Id` and `Name`; NotFound otherwise)."""

    def resolve(self, ref: str) -> dict[str, Any]: ...


# What the network and volume services accept as a container: the containers service's object, or its record as
# a plain dict (Docker's shape; the network tests drive the service with records). Read with
# guest/network/store.py's container_field, which handles both.
ContainerLike = ContainerRef | dict[str, Any]
