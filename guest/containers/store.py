"""Container records: one JSON file per container, written atomically, plus an in-memory names index.

`<data-root>/containers/<id>/container.json` holds the Docker-shaped record (Config, HostConfig, State,
NetworkSettings, Mounts, …) and a `Skiff` section with what the engine needs to re-adopt a running
container after a restart (conmon pid, runtime, netns path). Runtime-only state (locks, waiters, the exit
watch) lives on the `Container` object and is rebuilt at daemon start.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound, no_such_container
from skiffbox.guest.util.atomicfile import atomic_write, atomic_write_json
from skiffbox.guest.util.timefmt import now_rfc3339

NAME_RX = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = ("admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold boring brave busy "
         "charming clever compassionate competent condescending confident cool cranky crazy dazzling determined "
         "distracted dreamy eager ecstatic elastic elated elegant eloquent epic exciting fervent festive flamboyant "
         "focused friendly frosty funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry "
         "infallible inspiring intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
         "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive "
         "practical priceless quirky quizzical recursing relaxed reverent romantic sad serene sharp silly sleepy "
         "stoic strange stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant "
         "vigorous wizardly wonderful xenodochial youthful zealous zen").split()
_RIGHT = ("agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen bartik bassi "
          "beaver bell benz bhabha bhaskara black blackburn blackwell bohr booth borg bose bouman boyd brahmagupta "
          "brattain brown buck burnell cannon carson cartwright carver cerf chandrasekhar chaplygin chatelet "
          "chatterjee chaum chebyshev clarke cohen colden cori cray curie darwin davinci dewdney dhawan diffie "
          "dijkstra dirac driscoll dubinsky easley edison einstein elbakyan elgamal elion ellis engelbart euclid "
          "euler faraday feistel fermat fermi feynman franklin gagarin galileo galois ganguly gates gauss germain "
          "goldberg goldstine goldwasser golick goodall gould greider grothendieck haibt hamilton haslett hawking "
          "heisenberg hellman hermann herschel hertz heyrovsky hodgkin hofstadter hoover hopper hugle hypatia "
          "jackson jang jemison jennings jepsen johnson joliot jones kalam kapitsa kare keldysh keller kepler "
          "khayyam khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt lederberg lehmann "
          "lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell mayer mccarthy mcclintock "
          "mclaren mclean mcnulty meitner mendel mendeleev meninsky merkle mestorf mirzakhani montalcini moore "
          "morse moser murdock napier nash neumann newton nightingale nobel noether northcutt noyce panini pare "
          "pascal pasteur payne perlman pike poincare poitras proskuriakova ptolemy raman ramanujan rhodes ride "
          "ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi shamir shannon shaw shirley "
          "shockley shtern sinoussi snyder solomon spence stonebraker sutherland swanson swartz swirles taussig "
          "tesla tharp thompson torvalds tu turing varahamihira vaughan villani visvesvaraya volhard wescoff "
          "wilbur wiles williams williamson wilson wing wozniak wright wu yalow yonath zhukovsky").split()


def random_name() -> str:
    return f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"


class Container:
    """A container: its persisted record plus runtime-only state."""

    def __init__(self, rec: dict[str, Any], data_dir: Path, bundle: Path) -> None:
        self.rec = rec
        self.dir = data_dir
        self.bundle = bundle
        self.lock = asyncio.Lock()
        self.exit_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self.remove_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self.attachers: list[Any] = []  # attach sessions waiting for the container's start
        self.watch: Any = None  # monitor.ExitWatch of the running conmon
        self.exit_task: asyncio.Task[None] | None = None
        self.health_task: asyncio.Task[None] | None = None
        self.restart_task: asyncio.Task[None] | None = None
        self.exec_ids: set[str] = set()
        self.removed = False
        self.mount_refs = 0  # temporary rootfs mounts of a stopped container (cp, export)
        self.on_disk: str | None = None  # the record as last written or read (ContainerStore.revert)

    # identity ------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        v: str = self.rec["Id"]
        return v

    @property
    def name(self) -> str:
        v: str = self.rec["Name"].lstrip("/")
        return v

    @property
    def config(self) -> dict[str, Any]:
        v: dict[str, Any] = self.rec["Config"]
        return v

    @property
    def host_config(self) -> dict[str, Any]:
        v: dict[str, Any] = self.rec["HostConfig"]
        return v

    @property
    def state(self) -> dict[str, Any]:
        v: dict[str, Any] = self.rec["State"]
        return v

    @property
    def skiff(self) -> dict[str, Any]:
        v: dict[str, Any] = self.rec.setdefault("Skiff", {})
        return v

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def paused(self) -> bool:
        return bool(self.state.get("Paused"))

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    # paths ---------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.dir / "ctr.log"

    @property
    def upper(self) -> Path:
        return self.dir / "fs" / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "fs" / "work"

    @property
    def init_layer(self) -> Path:
        return self.dir / "fs" / "init"

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def netns_path(self) -> str | None:
        return self.skiff.get("Netns")

    def attributes(self, **extra: str) -> dict[str, str]:
        """Event attributes: image, name and all labels (compose filters events by label)."""
        attrs = {k: str(v) for k, v in (self.config.get("Labels") or {}).items()}
        attrs.update(image=self.config.get("Image", ""), name=self.name)
        attrs.update(extra)
        return attrs


class ContainerStore:
    def __init__(self, data_root: Path, run_root: Path) -> None:
        self.root = data_root / "containers"
        self.run_root = run_root / "containers"
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_root.mkdir(parents=True, exist_ok=True)
        self.by_id: dict[str, Container] = {}
        self.names: dict[str, str] = {}

    def load(self) -> list[Container]:
        out = []
        for d in sorted(self.root.iterdir()):
            f = d / "container.json"
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                # A half-created container (crash between mkdir and the first write): nothing to keep.
                shutil.rmtree(d, ignore_errors=True)
                continue
            c = Container(rec, d, self.run_root / rec["Id"])
            c.on_disk = json.dumps(rec)
            self.by_id[c.id] = c
            self.names[c.name] = c.id
            out.append(c)
        return out

    def save(self, c: Container) -> None:
        """Write the record as it is in memory. For a change a request makes, prefer save_changes (or revert
        after a failed save): memory must not keep what the disk refused."""
        if not c.removed:
            self._write(c, c.rec)

    def save_changes(self, c: Container, **fields: Any) -> None:
        """Set top-level fields of the record on disk first, then in memory: a failed write (a full disk) leaves
        the container as it was, in both."""
        if not c.removed:
            self._write(c, {**c.rec, **fields})
        c.rec.update(fields)

    def revert(self, c: Container) -> None:
        """Memory back to the record on disk, after a save of changes made in memory first failed."""
        if c.on_disk is not None:
            c.rec.clear()
            c.rec.update(json.loads(c.on_disk))

    def _write(self, c: Container, rec: dict[str, Any]) -> None:
        text = json.dumps(rec)  # serialised first: a bad record never touches the disk
        atomic_write(c.dir / "container.json", text)
        c.on_disk = text

    def new_id(self) -> str:
        while True:
            cid = os.urandom(32).hex()
            if cid not in self.by_id and not cid[:12].isdigit():
                return cid

    def reserve_name(self, name: str | None, cid: str) -> str:
        if name:
            if not NAME_RX.match(name):
                raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            if name in self.names:
                other = self.names[name]
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                               "You have to remove (or rename) that container to be able to reuse that name.")
        else:
            for _ in range(100):
                name = random_name()
                if name not in self.names:
                    break
            else:
                name = f"{random_name()}_{random.randint(0, 9999)}"
        assert name is not None
        self.names[name] = cid
        return name

    def release_name(self, name: str) -> None:
        self.names.pop(name, None)

    def add(self, c: Container) -> None:
        self.by_id[c.id] = c
        self.names[c.name] = c.id

    def drop(self, c: Container) -> None:
        self.by_id.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            self.names.pop(c.name, None)

    def get(self, ref: str) -> Container:
        """By full id, name (with or without '/'), or unique id prefix — Docker's order."""
        if not ref:
            raise no_such_container(ref)
        c = self.by_id.get(ref)
        if c is not None:
            return c
        cid = self.names.get(ref.lstrip("/"))
        if cid is not None:
            return self.by_id[cid]
        matches = [c for i, c in self.by_id.items() if i.startswith(ref)] if re.fullmatch(r"[0-9a-f]+", ref) else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise no_such_container(ref)

    def all(self) -> list[Container]:
        return list(self.by_id.values())


__all__ = ["Container", "ContainerStore", "NotFound", "atomic_write_json", "now_rfc3339", "random_name"]
