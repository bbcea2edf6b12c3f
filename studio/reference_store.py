"""Prepared references kept by content hash, for as long as a generation in history uses them.

A job records its references by hash (`reference_hashes`). Keeping the cleaned image under that
hash is what lets Recall and Re-run give back exactly the references a job had, and Compare show
a result beside the picture it was made from, long after the service's copy and the hosted
link expired. The images are the prepared ones (metadata stripped, bounded in size), never the
uploaded originals. Each hash is stored once however many jobs use it; deleting a generation
removes the references no other job uses (`forget`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from studio.files import write_atomically
from studio.references import PreparedReference

_EXTENSIONS = (".jpg", ".png")
_HASH = re.compile(r"[0-9a-f]{64}")
URL_PREFIX = "url:"  # a reference given as a link is recorded as "url:<link>", not stored here


class ReferenceStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def keep(self, ref: PreparedReference) -> Path:
        """Store `ref` under its hash (once); returns its path."""
        existing = self.find(ref.sha256)
        if existing is not None:
            return existing
        return write_atomically(self.folder, ref.sha256 + ref.extension, ref.data)

    def find(self, sha256: str) -> Path | None:
        """The stored image for `sha256`, or None (unknown, a link, or removed)."""
        if not _HASH.fullmatch(sha256):
            return None
        for extension in _EXTENSIONS:
            path = self.folder / (sha256 + extension)
            if path.is_file():
                return path
        return None

    def load(self, sha256: str) -> PreparedReference | None:
        """The stored image as a PreparedReference, byte for byte (never prepared again: a
        second encode would change it, and its hash)."""
        path = self.find(sha256)
        if path is None:
            return None
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        mime = "image/png" if path.suffix == ".png" else "image/jpeg"
        return PreparedReference(data, mime, path.suffix, width, height, sha256, path.name)

    def forget(self, hashes: Iterable[str]) -> int:
        """Remove the images of `hashes` (the caller checked no other job uses them)."""
        removed = 0
        for sha256 in hashes:
            path = self.find(sha256)
            if path is not None:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def split_references(
    hashes: Iterable[str], store: ReferenceStore
) -> tuple[list[Path], list[str], list[str]]:
    """A job's recorded references as (stored image files, links, hashes no longer stored)."""
    files: list[Path] = []
    links: list[str] = []
    missing: list[str] = []
    for recorded in hashes:
        if recorded.startswith(URL_PREFIX):
            links.append(recorded[len(URL_PREFIX) :])
        elif (path := store.find(recorded)) is not None:
            files.append(path)
        else:
            missing.append(recorded)
    return files, links, missing
