"""Result images: a calm gradient, the prompt, a SIMULATOR label and the references.

The cost of a render is bounded whatever the prompt: at most MAX_PROMPT_CHARS characters are
drawn, and a word too long for a line is cut where it fits by bisection, so a 1,200-character
word without a space costs a few dozen text measurements per line (it once cost one per
character per line, minutes of CPU that stalled every other visitor's preview).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

MAX_PROMPT_CHARS = 1200
_GRADIENT_STEPS = 48


@dataclass(frozen=True)
class RenderRequest:
    text: str
    model: str
    resolution: str
    size: tuple[int, int]
    output_format: str  # "png" or "jpeg"
    references: tuple[Image.Image, ...] = ()


def content_type(output_format: str) -> str:
    return "image/jpeg" if output_format == "jpeg" else "image/png"


def file_extension(output_format: str) -> str:
    return "jpg" if output_format == "jpeg" else "png"


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _gradient(size: tuple[int, int], digest: bytes) -> Image.Image:
    # Bright, low-saturation ends keep the picture calm and never dark enough to look blank.
    hue = digest[0] / 255
    saturation = 0.25 + digest[2] / 255 * 0.2
    start = _rgb(hue, saturation, 0.93)
    end = _rgb(hue + 0.08 + digest[1] / 255 * 0.2, saturation + 0.1, 0.66)
    steps = _GRADIENT_STEPS
    small = Image.new("RGB", (steps, steps))
    pixels: list[tuple[int, int, int]] = []
    for y in range(steps):
        for x in range(steps):
            t = (x + y) / (2 * (steps - 1))
            pixels.append(
                (
                    round(start[0] + (end[0] - start[0]) * t),
                    round(start[1] + (end[1] - start[1]) * t),
                    round(start[2] + (end[2] - start[2]) * t),
                )
            )
    small.putdata(pixels)
    # Upscaling a tiny gradient is far cheaper than computing every pixel of a 4K image.
    return small.resize(size, Image.Resampling.BICUBIC)


def _decorate(draw: ImageDraw.ImageDraw, size: tuple[int, int], digest: bytes) -> None:
    width, height = size
    unit = min(width, height)
    for index in range(3):
        cx = digest[4 + index] / 255 * width
        cy = digest[8 + index] / 255 * height
        radius = unit * (0.15 + digest[12 + index] / 255 * 0.3)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(255, 255, 255, 34))


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Without FreeType Pillow falls back to a fixed 11 px bitmap font, unreadable at 4K.
        raise RuntimeError("Pillow was built without FreeType; the simulator needs it")
    return font


Measure = Callable[[str], float]


def wrap_text(text: str, measure: Measure, max_width: float) -> list[str]:
    """Lines of `text`, each measuring at most `max_width` (a single character always fits).

    A word wider than a line is cut at its longest prefix that fits, found by bisection."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > 1 and measure(word) > max_width:
            cut = _longest_fitting_prefix(word, measure, max_width)
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if measure(candidate) <= max_width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _longest_fitting_prefix(word: str, measure: Measure, max_width: float) -> int:
    """The length of the longest prefix of `word` that fits (at least 1, at most len - 1)."""
    low, high = 1, len(word) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if measure(word[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low


def _layout_text(
    text: str, max_width: float, max_height: float, unit: int
) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    for divisor in (14, 18, 24, 32, 44):
        size = max(12, unit // divisor)
        font = _font(size)
        lines = wrap_text(text, font.getlength, max_width)
        line_height = round(size * 1.3)
        if len(lines) * line_height <= max_height:
            return font, lines, line_height
    fitting = max(1, int(max_height // line_height))
    if len(lines) > fitting:
        lines = [*lines[: fitting - 1], lines[fitting - 1].rstrip(".,;: ") + " …"]
    return font, lines, line_height


def _draw_label(draw: ImageDraw.ImageDraw, request: RenderRequest, margin: int, unit: int) -> int:
    width, height = request.size
    size = max(12, round(unit * 0.024))
    font = _font(size)
    label = f"SIMULATOR · {request.model} · {request.resolution} · {width}x{height}"
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = size // 2
    box = (margin, margin, margin + right - left + 2 * pad, margin + bottom - top + 2 * pad)
    draw.rounded_rectangle(box, radius=pad, fill=(20, 20, 28, 150))
    draw.text((margin + pad - left, margin + pad - top), label, font=font, fill=(255, 255, 255))
    return int(box[3])


def _draw_references(
    image: Image.Image, draw: ImageDraw.ImageDraw, request: RenderRequest, margin: int
) -> int:
    """Thumbnails along the bottom edge; returns the strip's top y."""
    width, height = request.size
    count = len(request.references)
    strip_height = round(height * 0.15)
    gap = max(4, margin // 3)
    border = max(2, strip_height // 40)
    box_width = min(strip_height * 1.5, (width - 2 * margin - (count - 1) * gap) / count)
    top = height - margin - strip_height
    x = float(margin)
    for reference in request.references:
        inner = (max(1, round(box_width) - 2 * border), max(1, strip_height - 2 * border))
        thumb = ImageOps.contain(reference, inner)
        frame_w, frame_h = thumb.width + 2 * border, thumb.height + 2 * border
        left = round(x)
        frame_top = top + (strip_height - frame_h) // 2
        draw.rectangle(
            (left, frame_top, left + frame_w - 1, frame_top + frame_h - 1), fill=(255, 255, 255)
        )
        image.paste(thumb, (left + border, frame_top + border))
        x += frame_w + gap
    return top


def render_image(request: RenderRequest) -> bytes:
    """Encode the result image; runs in a worker thread (it can take a second at 4K)."""
    text = request.text.strip()[:MAX_PROMPT_CHARS] or "(no prompt text)"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    width, height = request.size
    unit = min(width, height)
    margin = max(8, round(unit * 0.05))

    image = _gradient(request.size, digest)
    draw = ImageDraw.Draw(image, "RGBA")
    _decorate(draw, request.size, digest)
    label_bottom = _draw_label(draw, request, margin, unit)
    text_bottom = height - margin
    if request.references:
        text_bottom = _draw_references(image, draw, request, margin) - margin

    pad = max(8, unit // 40)
    area_top = label_bottom + margin
    max_width = width - 2 * margin - 2 * pad
    max_height = max(1, text_bottom - area_top - 2 * pad)
    font, lines, line_height = _layout_text(text, max_width, max_height, unit)
    block_height = len(lines) * line_height
    block_width = max(font.getlength(line) for line in lines)
    block_top = area_top + max(0, (text_bottom - area_top - block_height) // 2)
    panel = (
        (width - block_width) / 2 - pad,
        block_top - pad,
        (width + block_width) / 2 + pad,
        block_top + block_height + pad,
    )
    draw.rounded_rectangle(panel, radius=pad, fill=(15, 15, 25, 120))
    for index, line in enumerate(lines):
        draw.text(
            (width / 2, block_top + index * line_height + line_height / 2),
            line,
            font=font,
            fill=(255, 255, 255),
            anchor="mm",
        )

    buffer = io.BytesIO()
    if request.output_format == "jpeg":
        image.save(buffer, "JPEG", quality=90)
    else:
        # Level 1 keeps 4K PNGs fast to produce; gradients compress well anyway.
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


class RenderCache:
    """A small LRU of encoded results, bounded by count and by bytes (4K PNGs are large)."""

    def __init__(self, max_items: int = 64, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._items and (
                len(self._items) > self._max_items or self._bytes > self._max_bytes
            ):
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
