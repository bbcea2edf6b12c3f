"""Files the studio writes: one atomic write for results and references, and result file names.

Every file a reader may open while it is being written (a saved result the gallery shows, a
reference a service fetches) goes through `write_atomically`, so the final name never holds half
a file. A process killed between the write and the rename leaves a hidden `.name.XXXX.part`
file; `remove_partial_files` clears those at start-up and `is_partial_file` names them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from datetime import datetime
from pathlib import Path

_PARTIAL_SUFFIX = ".part"


def write_atomically(
    folder: Path, filename: str, data: bytes, *, mtime: float | None = None
) -> Path:
    """Write `data` to `folder/filename` so that the final name never holds a partial file.

    The bytes go to a hidden temporary file in the same folder (same file system, so the rename
    is atomic), are fsynced, and then `os.replace`d onto the final name, replacing an existing
    file of that name. The folder is created if needed. `filename` must be a bare file name.
    `mtime`, when given, is set before the rename (the reference host keeps publish times there).
    """
    if not filename or filename in (".", "..") or "/" in filename or "\\" in filename:
        raise ValueError(f"not a plain file name: {filename!r}")
    if "\x00" in filename:
        raise ValueError("file name contains a NUL character")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / filename
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=_PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide it from others
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mtime is not None:
            os.utime(temp_name, (mtime, mtime))
        os.replace(temp_name, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(folder)
    return final


def is_partial_file(name: str) -> bool:
    """Whether `name` is a temporary file `write_atomically` left behind."""
    return name.startswith(".") and name.endswith(_PARTIAL_SUFFIX)


def remove_partial_files(root: Path) -> int:
    """Delete the temporary files that `write_atomically` leaves when the process dies between
    its write and its rename; returns how many. Run at start-up, before any new save."""
    removed = 0
    for path in Path(root).rglob(f".*{_PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def result_filename(
    created: datetime, model: str, prompt: str, task_id: str, index: int, extension: str
) -> str:
    """A safe, sortable, human-findable name, e.g.
    `2026-11-21_0712_nano-banana-pro_a-cozy-cyberpunk-cafe_task_1234abcd_1.png`.

    `created` is formatted as given (pass the zone you want shown). Only ASCII letters, digits,
    `-`, `_` and the one `.` before the extension appear.
    """
    ext = extension.lower().lstrip(".")
    if not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        raise ValueError(f"not a file extension: {extension!r}")
    parts = [
        created.strftime("%Y-%m-%d_%H%M"),
        _slug(model.rsplit("/", 1)[-1], max_words=8, max_chars=40) or "model",
        _slug(prompt, max_words=6, max_chars=48) or "untitled",
        _short_task_id(task_id),
        str(int(index)),
    ]
    return "_".join(parts) + "." + ext


def _ascii_words(text: str) -> list[str]:
    # NFKD splits "é" into "e" + accent, so accented Latin text keeps its letters.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.findall(r"[a-z0-9]+", ascii_text.lower())


def _slug(text: str, *, max_words: int, max_chars: int) -> str:
    slug = ""
    for word in _ascii_words(text)[:max_words]:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_chars:
            return slug or word[:max_chars]
        slug = candidate
    return slug


def _short_task_id(task_id: str) -> str:
    """`task_1234abcd…` → `task_1234abcd`: a readable prefix plus the first 8 characters."""
    clean = re.sub(r"[^A-Za-z0-9]+", "_", task_id).strip("_")
    match = re.fullmatch(r"([A-Za-z]{1,8}_)?(.*)", clean)
    prefix, rest = (match.group(1) or "", match.group(2)) if match else ("", clean)
    rest = rest.replace("_", "")[:8]
    if not rest:
        return "task_unknown"
    return f"{prefix or 'task_'}{rest}"


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, so best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
