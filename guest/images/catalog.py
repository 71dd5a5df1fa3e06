"""Finding a stored image by what a user typed, and the snapshot of it the rest of the engine sees.

`lookup` resolves like docker: a full ID (with or without `sha256:`), a reference (name[:tag] or name@digest,
`latest` when no tag is given), else a unique short-ID prefix. `image` turns a stored record into the Image
snapshot (guest/images/image.py): its references split into tags and digests, its size and layer directories.
"""

from __future__ import annotations

from skiffbox.guest.errors import no_such_image
from skiffbox.guest.images.image import Image, familiar, is_tag_ref, parse_created
from skiffbox.guest.images.reference import ReferenceError_, is_full_id, parse_normalized
from skiffbox.guest.images.store import ImageRec, Store


class ImageCatalog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def image(self, rec: ImageRec) -> Image:
        refs = self.store.refs_for(rec.id)
        chains = rec.chain_ids
        return Image(
            id=rec.id,
            config=rec.config,
            repo_tags=[familiar(r) for r in refs if is_tag_ref(r)],
            repo_digests=[familiar(r) for r in refs if not is_tag_ref(r)],
            created=parse_created(rec.config.get("created")),
            parent=rec.parent,
            size=self.size(rec),
            chain_ids=chains,
            _dirs=[self.store.layer_path(c) for c in chains],
        )

    def size(self, rec: ImageRec) -> int:
        """What its layers take unpacked (shared layers counted in full, as docker's `Size`)."""
        return sum(self.store.layers[c].size for c in rec.chain_ids)

    def lookup(self, ref_or_id: str, hidden_ok: bool = False) -> ImageRec:
        """`hidden_ok`: also an image `rmi -f` deleted while a container still uses it (by full ID only)."""
        s = (ref_or_id or "").strip()
        if not s:
            raise no_such_image(ref_or_id)
        images = self.store.images
        if is_full_id(s):
            iid = s if s.startswith("sha256:") else f"sha256:{s}"
            if iid in images:
                return images[iid]
            if hidden_ok and iid in self.store.hidden:
                return self.store.hidden[iid]
            raise no_such_image(iid)
        shown = s
        try:
            ref = parse_normalized(s)
            shown = ref.tag_or_latest().familiar()
            tagged = self.store.refs.get(str(ref.tag_or_latest()))
            if tagged in images:
                return images[tagged]
        except ReferenceError_:
            pass
        found = self.store.search(s)
        if len(found) == 1:
            return images[found[0]]
        raise no_such_image(shown)
