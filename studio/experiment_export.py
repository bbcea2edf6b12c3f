"""An experiment's exports: a contact sheet, a manifest (CSV and JSON), and a zip of it all.

* The contact sheet is one PNG of the grid: a header row with each column's label (model and
  settings), a first column with each row's prompt, and in each cell its images side by side
  with the cell's state, time and credits below them, or its plain sentence when it gave none.
  Its row and column labels are also in the PNG's text chunks (`rows`, `columns`, JSON).
* The manifest has one line per task (a cell with no task, such as one not sent, has one too):
  row, column, prompt, model, settings, state, task id, start time, seconds, credits, file
  name, and the sentence of a task that failed.
* The zip holds the contact sheet, both manifests, and every saved image under `images/`.

Synchronous (Pillow and files): callers run `export` in a thread.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from providers.catalog import Catalog
from studio.experiment_views import CellView, ExperimentView
from studio.files import write_atomically

THUMB = 240  # px: the side of one image's box on the sheet
MIN_THUMB = 96
MAX_SIDE = 16_000  # px: the sheet's widest side, thumbnails shrink to fit
LABEL_WIDTH = 280
HEADER_HEIGHT = 72
CAPTION_HEIGHT = 40
PAD = 8
BACKGROUND, INK, FAINT, ALERT = (250, 250, 249), (28, 25, 23), (120, 113, 108), (185, 28, 28)
MANIFEST_FIELDS = (
    "row",
    "column",
    "prompt",
    "model",
    "column_label",
    "aspect_ratio",
    "resolution",
    "output_format",
    "routing",
    "variant",
    "state",
    "task_id",
    "job_id",
    "started_at",
    "seconds",
    "credits",
    "file",
    "message",
)


@dataclass(frozen=True)
class Exports:
    contact_sheet: Path
    manifest_csv: Path
    manifest_json: Path
    zip: Path


def export(view: ExperimentView, catalog: Catalog, folder: Path) -> Exports:
    """Write the four exports of `view` into `folder` (each atomically); returns their paths."""
    stem = f"experiment-{view.experiment_id[:8]}"
    sheet = contact_sheet(view)
    entries = manifest(view, catalog)
    csv_text = manifest_csv(entries)
    json_text = json.dumps(
        {
            "experiment": view.experiment_id,
            "state": str(view.state),
            "created_at": _iso(view.created_at),
            "rows": list(view.row_labels),
            "columns": list(view.column_labels),
            "tasks": entries,
        },
        ensure_ascii=False,
        indent=1,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}-contact-sheet.png", sheet)
        archive.writestr(f"{stem}-manifest.csv", csv_text)
        archive.writestr(f"{stem}-manifest.json", json_text)
        for cell in view.cells:
            for path in cell.files:
                if path.is_file():
                    archive.write(path, f"images/{path.name}")
    return Exports(
        contact_sheet=write_atomically(folder, f"{stem}-contact-sheet.png", sheet),
        manifest_csv=write_atomically(folder, f"{stem}-manifest.csv", csv_text.encode()),
        manifest_json=write_atomically(folder, f"{stem}-manifest.json", json_text.encode()),
        zip=write_atomically(folder, f"{stem}.zip", buffer.getvalue()),
    )


# ---- the manifest ------------------------------------------------------------------------------


def manifest(view: ExperimentView, catalog: Catalog) -> list[dict[str, Any]]:
    """One entry per task, row by row; a cell without tasks gets one entry of its own."""
    entries = []
    for cell_view in view.cells:
        cell = cell_view.cell
        base: dict[str, Any] = {
            "row": cell.row + 1,
            "column": cell.column + 1,
            "prompt": cell.prompt,
            "model": cell.model,
            "column_label": view.column_labels[cell.column],
            **cell.settings.as_dict(),
        }
        if not cell_view.tasks:
            entries.append(
                {
                    **base,
                    "variant": None,
                    "state": cell_view.words(),
                    "task_id": None,
                    "job_id": None,
                    "started_at": None,
                    "seconds": None,
                    "credits": None,
                    "file": None,
                    "message": cell_view.message,
                }
            )
        for task in cell_view.tasks:
            files: list[str | None] = [f"images/{p.name}" for p in task.files] or [None]
            for file in files:
                entries.append(
                    {
                        **base,
                        "variant": task.variant,
                        "state": task.state.value,
                        "task_id": task.task_id,
                        "job_id": task.job_id,
                        "started_at": _iso(task.started_at),
                        "seconds": round(task.seconds(cell_view.now), 1),
                        "credits": task.credits,
                        "file": file,
                        "message": task.message,
                    }
                )
    return entries


def manifest_csv(entries: list[dict[str, Any]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: "" if entry.get(k) is None else entry[k] for k in MANIFEST_FIELDS})
    return out.getvalue()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


# ---- the contact sheet -------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetLayout:
    """Where everything is on the sheet, in pixels."""

    rows: int
    columns: int
    variants: int
    thumb: int

    @property
    def cell_width(self) -> int:
        return self.variants * (self.thumb + PAD) + PAD

    @property
    def cell_height(self) -> int:
        return self.thumb + CAPTION_HEIGHT + 2 * PAD

    @property
    def size(self) -> tuple[int, int]:
        return (
            LABEL_WIDTH + self.columns * self.cell_width,
            HEADER_HEIGHT + self.rows * self.cell_height,
        )

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        left = LABEL_WIDTH + column * self.cell_width
        top = HEADER_HEIGHT + row * self.cell_height
        return left, top, left + self.cell_width, top + self.cell_height

    def image_box(self, row: int, column: int, index: int) -> tuple[int, int, int, int]:
        left, top, _, _ = self.cell_box(row, column)
        x = left + PAD + index * (self.thumb + PAD)
        return x, top + PAD, x + self.thumb, top + PAD + self.thumb


def sheet_layout(view: ExperimentView) -> SheetLayout:
    rows, columns, variants = len(view.row_labels), len(view.column_labels), view.plan.variants
    widest = max(columns * variants, 1)
    thumb = max(MIN_THUMB, min(THUMB, (MAX_SIDE - LABEL_WIDTH) // widest - PAD))
    thumb = max(MIN_THUMB, min(thumb, (MAX_SIDE - HEADER_HEIGHT) // max(rows, 1) - 64))
    return SheetLayout(rows, columns, variants, thumb)


def contact_sheet(view: ExperimentView) -> bytes:
    """The grid as one PNG, labelled: prompts down the left, columns across the top."""
    layout = sheet_layout(view)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(15), _font(12)
    width, height = layout.size
    for column, label in enumerate(view.column_labels):
        left, _, right, _ = layout.cell_box(0, column)
        _text(draw, (left + PAD, PAD), label, font, right - left - 2 * PAD, 3, INK)
        draw.line([(left, 0), (left, height)], fill=(214, 211, 209))
    for row, label in enumerate(view.row_labels):
        _, top, _, bottom = layout.cell_box(row, 0)
        lines = (bottom - top - 2 * PAD) // 19
        _text(draw, (PAD, top + PAD), label, font, LABEL_WIDTH - 2 * PAD, lines, INK)
        draw.line([(0, top), (width, top)], fill=(214, 211, 209))
    for cell_view in view.cells:
        _draw_cell(sheet, draw, layout, cell_view, small)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("experiment", view.experiment_id)
    info.add_itxt("rows", json.dumps(list(view.row_labels), ensure_ascii=False))
    info.add_itxt("columns", json.dumps(list(view.column_labels), ensure_ascii=False))
    out = io.BytesIO()
    sheet.save(out, "PNG", pnginfo=info, optimize=False)
    return out.getvalue()


def _draw_cell(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    layout: SheetLayout,
    cell_view: CellView,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    row, column = cell_view.cell.row, cell_view.cell.column
    left, top, right, _ = layout.cell_box(row, column)
    inner = right - left - 2 * PAD
    shown = 0
    for index, path in enumerate(cell_view.files[: layout.variants]):
        box = layout.image_box(row, column, index)
        try:
            with Image.open(path) as image:
                image.draft("RGB", (layout.thumb, layout.thumb))  # JPEGs decode smaller
                thumb = image.convert("RGB")
                thumb.thumbnail((layout.thumb, layout.thumb))
        except OSError:
            continue
        x = box[0] + (layout.thumb - thumb.width) // 2
        y = box[1] + (layout.thumb - thumb.height) // 2
        sheet.paste(thumb, (x, y))
        shown += 1
    caption_top = top + PAD + layout.thumb + 4
    message = cell_view.message
    if not shown and message:
        lines = layout.thumb // 16
        _text(draw, (left + PAD, top + PAD), message, font, inner, lines, ALERT)
    _text(draw, (left + PAD, caption_top), cell_view.words(), font, inner, 2, FAINT)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
    max_lines: int,
    fill: tuple[int, int, int],
) -> None:
    """`text` wrapped to `width` px, at most `max_lines` lines (the last ends with … if cut)."""
    lines: list[str] = []
    words = " ".join(text.split()).split(" ")
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        if len(lines) > max_lines:
            break
    if current and len(lines) <= max_lines:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[: max(max_lines, 1)]
        lines[-1] = lines[-1].rstrip() + "…"
    x, y = at
    size = getattr(font, "size", 12)
    for line in lines:
        draw.text((x, y), _fit(draw, line, font, width), font=font, fill=fill)
        y += int(size * 1.3)


def _fit(
    draw: ImageDraw.ImageDraw,
    line: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> str:
    """`line`, cut with … to fit `width` (a word longer than the width), found by bisection
    so a long word costs a few measurements, not one per character."""
    if draw.textlength(line, font=font) <= width:
        return line
    low, high = 0, len(line)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(line[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return line[:low] + "…"
