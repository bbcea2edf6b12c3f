"""API keys: which ones a header can carry, and scrubbing every key we hold from service text.

A key only ever travels in the `Authorization` header, but a service may echo it back in an
error message or a fail message, and whatever a service says is logged, stored in the ledger
and shown on the page. So every text that comes from a service passes through `KeyRing.scrub`
at the boundary (`providers.transport`), which removes every key the process holds at that
moment: the owner's keys from the environment (held for the whole run) and each visitor's key
(held as long as a client made with it exists). Removing all of them, not only the one the
request carried, matters: a hostile service could echo one visitor's key in an answer meant for
another visitor.

Keys are checked where they enter (`studio.backends` for a visitor's, `providers.settings` for
the owner's): printable ASCII without spaces, so a line break can never split a header, and a
sane length.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
import weakref
from collections import deque
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "[key removed]"
MIN_VISITOR_KEY_CHARS = 8
MAX_KEY_CHARS = 256
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # printable ASCII: no space, no CR/LF, no Unicode


def key_problem(key: str, label: str) -> str | None:
    """Why a visitor's `key` (already stripped) cannot be used, as a sentence; None if it can.

    `label` names the service in the sentence ("The GemPix2 key ...")."""
    if not MIN_VISITOR_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        return (
            f"The {label} key must be {MIN_VISITOR_KEY_CHARS} to {MAX_KEY_CHARS} characters "
            f"long ({len(key)} given): paste only the key."
        )
    if not _HEADER_SAFE.fullmatch(key):
        return (
            f"The {label} key may hold only printable ASCII characters, without spaces, line "
            "breaks or accented letters: paste only the key."
        )
    return None


def is_header_safe(key: str) -> bool:
    """Whether `key` can travel in an Authorization header as it is (used for the owner's)."""
    return len(key) <= MAX_KEY_CHARS and _HEADER_SAFE.fullmatch(key) is not None


class KeyRing:
    """The keys held right now, each with a count of who holds it; thread-safe."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._patterns: tuple[str, ...] = ()
        # Releases by garbage collection wait here: a finalizer may run at any allocation,
        # even inside `hold` with the lock taken, so it must not take the lock itself.
        self._released: deque[str] = deque()

    def hold(self, key: str) -> None:
        """Scrub `key` (and its URL-encoded form) until it is released as often as held."""
        if not key:
            return
        with self._lock:
            self._held[key] = self._held.get(key, 0) + 1
            self._settle()

    def release(self, key: str) -> None:
        self._released.append(key)
        with self._lock:
            self._settle()

    def hold_while(self, owner: object, key: str) -> None:
        """Hold `key` as long as `owner` exists (a transport made with it)."""
        if key:
            self.hold(key)
            weakref.finalize(owner, self._released.append, key)

    def __len__(self) -> int:
        with self._lock:
            self._settle()
            return len(self._held)

    def _settle(self) -> None:
        """Apply the waiting releases and rebuild the patterns; call with the lock taken."""
        while self._released:
            key = self._released.popleft()
            count = self._held.get(key, 0) - 1
            if count > 0:
                self._held[key] = count
            else:
                self._held.pop(key, None)
        self._rebuild()

    def _rebuild(self) -> None:
        forms = {form for key in self._held for form in (key, urllib.parse.quote(key, safe=""))}
        # Longest first, so a key that contains another is removed whole.
        self._patterns = tuple(sorted(forms, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for pattern in self._patterns:  # a tuple swapped whole: safe to read without the lock
            if pattern in text:
                text = text.replace(pattern, MASK)
        return text

    def scrub_data(self, value: T) -> T:
        """`value` with every string in it scrubbed: strings, JSON-like dicts and lists (in
        place: they were just parsed from an answer and belong to the caller), and frozen
        dataclasses (rebuilt). Anything else is returned as it is."""
        if not self._patterns:
            return value
        if isinstance(value, str):
            return self.scrub(value)  # type: ignore[return-value]
        if is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: self.scrub(item)
                for f in fields(value)
                if isinstance(item := getattr(value, f.name), str)
            }
            return replace(value, **changes)
        if isinstance(value, dict | list):
            self._scrub_containers(value)
        return value

    def _scrub_containers(self, root: dict[Any, Any] | list[Any]) -> None:
        # Iterative: parsed JSON can nest nearly as deep as the recursion limit.
        stack: list[dict[Any, Any] | list[Any]] = [root]
        while stack:
            container = stack.pop()
            items = list(container.items()) if isinstance(container, dict) else enumerate(container)
            renamed: list[tuple[Any, Any]] = []
            for slot, item in items:
                if isinstance(item, str):
                    container[slot] = self.scrub(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
                if isinstance(container, dict) and isinstance(slot, str):
                    clean = self.scrub(slot)
                    if clean != slot:
                        renamed.append((slot, clean))
            for old, new in renamed:
                assert isinstance(container, dict)
                container[new] = container.pop(old)

    def scrub_error(self, exc: BaseException) -> BaseException:
        """`exc` with its message (and `message` attribute, if any) scrubbed, in place."""
        if self._patterns:
            exc.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in exc.args)
            message = getattr(exc, "message", None)
            if isinstance(message, str):
                exc.message = self.scrub(message)  # type: ignore[attr-defined]
        return exc


# The process's one ring: every transport holds its key here, so each scrubs all of them.
KEYRING = KeyRing()
