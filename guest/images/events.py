"""The image events `/events` shows (pull, tag, untag, delete, push, save, load, import, prune)."""

from __future__ import annotations

from skiffbox.guest.contracts import EventSink
from skiffbox.guest.errors import EngineError
from skiffbox.guest.images.catalog import ImageCatalog
from skiffbox.guest.images.store import ImageRec


class ImageEvents:
    def __init__(self, catalog: ImageCatalog, sink: EventSink) -> None:
        self.catalog = catalog
        self.sink = sink

    def publish(self, action: str, actor: str, name: str | None) -> None:
        """moby's LogImageEvent: the image's labels ride along (when it still exists), plus `name`."""
        rec: ImageRec | None = None
        if action != "delete":
            rec = self.catalog.store.images.get(actor)
            if rec is None:
                try:
                    rec = self.catalog.lookup(actor)
                except EngineError:
                    rec = None
        attrs: dict[str, str] = {}
        if rec is not None:
            attrs.update({str(k): str(v) for k, v in ((rec.config.get("config") or {}).get("Labels") or {}).items()})
        if name:
            attrs["name"] = name
        self.sink.publish("image", action, actor, attrs)

    def pruned(self, reclaimed: int) -> None:
        self.sink.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
