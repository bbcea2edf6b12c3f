"""Hosting prepared references where the services can fetch them, and checking pasted links.

Both services take references as URLs that they download. With a public base URL the app serves
each prepared reference itself for a limited time under an unguessable name; without one it
sends them inline as data URIs.
"""

from __future__ import annotations

import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.files import is_partial_file, write_atomically
from studio.netguard import UnsafeUrlError, check_public_url
from studio.references import PreparedReference

MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class PublishedReference:
    """Where a service can fetch a reference. `expires_at` is None for a data URI."""

    url: str
    expires_at: float | None
    is_data_uri: bool

    def __repr__(self) -> str:
        # A data URI is megabytes of base64; logs only need to know what kind of URL it is.
        shown = f"{self.url[:40]}…" if self.is_data_uri else self.url
        return (
            f"PublishedReference(url={shown!r}, expires_at={self.expires_at!r}, "
            f"is_data_uri={self.is_data_uri!r})"
        )


# secrets.token_urlsafe(24) is exactly 32 URL-safe characters; nothing else is ever served.
_PUBLISHED_NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(?:jpg|png)")


class ReferenceHost:
    """Makes prepared references fetchable by the services for `ttl_seconds`.

    With a public base URL each reference is a file under `folder` with an unguessable name,
    served at `{public_base_url}/refs/{name}` by whoever routes that path to `resolve`. Without
    one, references are sent as data URIs. Neither service documents data URIs as inputs (only
    URLs), so that fallback may be refused by a service (Nano Banana Pro reports
    INVALID_IMAGE_URL); it is the only option when the app is not reachable from the internet.

    The publish time is stored as the file's mtime, so expiry survives a restart.
    """

    def __init__(
        self,
        folder: Path,
        public_base_url: str | None,
        ttl_seconds: float = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = Path(folder)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def publish(self, ref: PreparedReference) -> PublishedReference:
        if self.public_base_url is None:
            return PublishedReference(url=ref.as_data_uri(), expires_at=None, is_data_uri=True)
        now = self.clock()
        name = secrets.token_urlsafe(24) + ref.extension
        write_atomically(self.folder, name, ref.data, mtime=now)
        return PublishedReference(
            url=f"{self.public_base_url}/refs/{name}",
            expires_at=now + self.ttl_seconds,
            is_data_uri=False,
        )

    def _expired(self, mtime: float) -> bool:
        return self.clock() >= mtime + self.ttl_seconds

    def resolve(self, name: str) -> Path | None:
        """The file to serve for `/refs/{name}`, or None if the name is unknown or expired."""
        if not _PUBLISHED_NAME.fullmatch(name):
            return None
        path = self.folder / name
        try:
            info = path.lstat()
        except OSError:
            return None
        # lstat + S_ISREG: a symlink planted in the folder is never followed.
        if not stat.S_ISREG(info.st_mode) or self._expired(info.st_mtime):
            return None
        return path

    def sweep(self) -> int:
        """Delete expired references (and abandoned temp files); return how many were removed."""
        removed = 0
        try:
            entries = list(self.folder.iterdir())
        except FileNotFoundError:
            return 0
        for path in entries:
            if not (_PUBLISHED_NAME.fullmatch(path.name) or is_partial_file(path.name)):
                continue
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and self._expired(info.st_mtime):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def check_reference_url(url: str) -> str:
    """Accept a pasted http(s) reference URL to a public host (literal addresses checked here).

    Host names still need `netguard.resolve_public_addresses` by the caller before use.
    """
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrlError(f"the link is longer than {MAX_URL_LENGTH} characters")
    return check_public_url(url, allow_http=True)
