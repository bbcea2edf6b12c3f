"""Reference images: check, clean and shrink uploads, then make them fetchable by the services.

Both services take references as URLs that *they* download (GemPix2: up to 4; Nano Banana Pro:
up to 10, JPG/PNG/WebP, at most 10 MB each), so every upload is turned into a small, plain file
either service can read.

What `prepare_reference` produces (the policy in one place):

* Input is recognised by content, never by file name: JPEG, PNG, WebP and HEIC/HEIF are accepted.
  Animated PNG/WebP and multi-image HEIC contribute their first (primary) image only.
* Output is only ever JPEG or PNG, the two formats every fetcher and model decodes:
  - an image that really uses transparency stays PNG (RGBA);
  - an opaque PNG stays PNG (screenshots and line art survive losslessly) unless the PNG is over
    the byte limit, in which case it becomes JPEG;
  - everything else (JPEG, HEIC, opaque WebP) becomes JPEG at quality 90. WebP is not kept:
    re-encoding to lossy WebP gains little here and JPEG/PNG are the safest for remote fetchers.
* EXIF orientation is applied to the pixels. All metadata is then dropped: EXIF (with GPS), XMP,
  PNG text chunks, comments and the ICC profile. An embedded ICC profile is first used to convert
  the pixels to sRGB, so wide-gamut phone photos (Display P3) keep their colours without it.
* The long side is at most `max_side`, and the file at most `max_bytes` (lower JPEG quality first,
  then smaller sizes).

Memory is bounded before anything is allocated: the pixel count is read from the header and
refused past `max_pixels` (25 MP: either service makes at most a 4K image, about 17 MP, and every
reference is shrunk to 2048 px before it is sent; 25 MP still admits a 24 MP camera photo). A
JPEG is decoded at a reduced scale when it is larger than needed (`draft`), and at most
`MAX_CONCURRENT_DECODES` images are decoded at once in the whole process, whoever uploads them.

`discard_upload` removes the original from Gradio's upload cache once its reference is prepared,
so an original with its GPS metadata intact is not left there to be served to whoever has its
path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import stat
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

ACCEPTED = "use JPG, PNG, WebP or HEIC"

_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
_JPEG_QUALITIES = (90, 80, 70, 60)
_SHRINK_STEP = 0.75
_MIN_SIDE = 64
_HIGH_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

# Formats people commonly try, recognised only to say what they are in the refusal.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x01\x00", "ICO"),
)


class BadReferenceError(ValueError):
    """The upload cannot be used as a reference; the message names the file and says why."""


@dataclass(frozen=True)
class ReferenceLimits:
    """`max_bytes` is 9.5 MB in decimal units so it is under 10 MB whichever way it is counted."""

    max_pixels: int = 25_000_000
    max_side: int = 2048
    max_bytes: int = 9_500_000
    max_input_bytes: int = 60_000_000


DEFAULT_LIMITS = ReferenceLimits()
# Full decodes at once across the process: each holds up to a few hundred MB at 25 MP.
MAX_CONCURRENT_DECODES = 2
_decoding = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


@dataclass(frozen=True)
class PreparedReference:
    """A cleaned image ready to send. `extension` has its leading dot (".jpg" or ".png")."""

    data: bytes = field(repr=False)
    mime: str
    extension: str
    width: int
    height: int
    sha256: str
    source_name: str

    def as_data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif() -> None:
    # Lazily, so importing this module stays cheap and pillow_heif loads only when needed.
    global _heif_registered
    with _heif_lock:
        if not _heif_registered:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_registered = True


def _display_name(filename: str) -> str:
    # Uploads often arrive as temp paths; users know their file by its base name.
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:120] or "unnamed file"


def _looks_like_document(data: bytes) -> bool:
    if b"%PDF-" in data[:1024]:
        return True
    head = data[:512].lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n")
    # HTML, SVG and any XML start with "<"; no accepted image format does.
    return head.startswith(b"<")


def _refused_format(data: bytes) -> str | None:
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    return None


def _too_large(name: str, width: int, height: int, limit: int) -> BadReferenceError:
    return BadReferenceError(
        f"{name} is too large: {width}×{height} is {width * height / 1e6:.0f} megapixels, "
        f"the limit is {limit / 1e6:.0f}"
    )


def prepare_reference(
    data: bytes, filename: str, *, limits: ReferenceLimits = DEFAULT_LIMITS
) -> PreparedReference:
    """Check and clean one upload. CPU-bound: run it in a worker thread from async code."""
    name = _display_name(filename)
    if not data:
        raise BadReferenceError(f"{name} is empty (0 bytes)")
    if len(data) > limits.max_input_bytes:
        raise BadReferenceError(
            f"{name} is {len(data) / 1e6:.0f} MB; files over "
            f"{limits.max_input_bytes / 1e6:.0f} MB are not accepted"
        )
    if _looks_like_document(data):
        raise BadReferenceError(
            f"{name} is not an image (PDF/HTML/SVG are not accepted): {ACCEPTED}"
        )
    _register_heif()
    picture, source_format = _decode(data, name, limits)
    return _encode(picture, source_format, name, limits)


def _decode(data: bytes, name: str, limits: ReferenceLimits) -> tuple[Image.Image, str]:
    """Fully decode the first image and return it as clean RGB or RGBA pixels."""
    try:
        # Image.open raises on a bomb header itself (or warns, which a warnings filter may turn
        # into an exception). warnings.catch_warnings is not thread-safe, and neither is changing
        # Image.MAX_IMAGE_PIXELS, so our own limit is checked below instead.
        img = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except UnidentifiedImageError:
        kind = _refused_format(data)
        if kind is not None:
            raise BadReferenceError(
                f"{name} is a {kind} image, which is not accepted: {ACCEPTED}"
            ) from None
        raise BadReferenceError(f"{name} is not a supported image: {ACCEPTED}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadReferenceError(
            f"{name} is too large: it has far more than {limits.max_pixels / 1e6:.0f} megapixels"
        ) from None
    except Exception as exc:
        raise BadReferenceError(f"{name} could not be read: the file looks damaged") from exc
    with img:
        width, height = img.size
        # Checked from the header, before any pixel is decoded.
        if width * height > limits.max_pixels:
            raise _too_large(name, width, height, limits.max_pixels)
        source_format = str(img.format)
        longest = max(width, height)
        if source_format == "JPEG" and longest > limits.max_side:
            # Decode at the smallest DCT scale still at least max_side on the long side.
            scale = limits.max_side / longest
            img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        try:
            # A full decode, so a truncated file fails here rather than becoming a grey half.
            with _decoding:
                img.load()
                picture = _clean_pixels(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(name, width, height, limits.max_pixels) from None
        except Exception as exc:
            raise BadReferenceError(
                f"{name} could not be decoded: the file is truncated or damaged"
            ) from exc
    return picture, source_format


def _clean_pixels(img: Image.Image) -> Image.Image:
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:
        # Unreadable EXIF is no reason to refuse a photo; it just cannot be rotated.
        oriented = img.copy()
    icc = oriented.info.get("icc_profile")
    if oriented.mode in _HIGH_BIT_MODES:
        # 16-bit greyscale PNG: convert("RGB") would clip everything above 255 to white.
        oriented = oriented.convert("I").point(lambda v: v / 256).convert("L")
    target = "RGBA" if oriented.has_transparency_data else "RGB"
    if oriented.mode not in ("RGB", "RGBA", "CMYK", "L"):
        oriented = oriented.convert(target)
    if icc:
        oriented = _to_srgb(oriented, icc, target)
    if oriented.mode != target:
        oriented = oriented.convert(target)
    alpha = oriented.getchannel("A") if target == "RGBA" else None
    if alpha is not None and alpha.getextrema() == (255, 255):
        oriented = oriented.convert("RGB")
    return oriented


def _to_srgb(img: Image.Image, icc: bytes, target: str) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(img, source, srgb, outputMode=target)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A broken or mismatched profile: keep the pixels as they are.
        return img
    return converted if converted is not None else img


def _without_metadata(img: Image.Image) -> Image.Image:
    # Rebuilt from raw pixels: no info dict, no cached EXIF, nothing a saver could copy over.
    return Image.frombytes(img.mode, img.size, img.tobytes())


def _fit_side(img: Image.Image, max_side: int) -> Image.Image:
    width, height = img.size
    longest = max(width, height)
    if longest <= max_side:
        return img
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _shrink(img: Image.Image, name: str, limits: ReferenceLimits) -> Image.Image:
    width, height = img.size
    if max(width, height) * _SHRINK_STEP < _MIN_SIDE:
        raise BadReferenceError(
            f"{name} cannot be made smaller than {limits.max_bytes / 1e6:.1f} MB"
        )
    size = (max(1, round(width * _SHRINK_STEP)), max(1, round(height * _SHRINK_STEP)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _save(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        img.save(out, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _encode(
    img: Image.Image, source_format: str, name: str, limits: ReferenceLimits
) -> PreparedReference:
    img = _without_metadata(_fit_side(img, limits.max_side))
    keep_png = img.mode == "RGBA" or source_format == "PNG"
    while True:
        if keep_png:
            data = _save(img, "PNG")
            if len(data) <= limits.max_bytes:
                return _prepared(data, "PNG", img, name)
            # An opaque PNG over the limit becomes JPEG rather than a smaller PNG.
            keep_png = img.mode == "RGBA"
        if img.mode == "RGB":
            for quality in _JPEG_QUALITIES:
                data = _save(img, "JPEG", quality)
                if len(data) <= limits.max_bytes:
                    return _prepared(data, "JPEG", img, name)
        img = _shrink(img, name, limits)


def _prepared(data: bytes, fmt: str, img: Image.Image, name: str) -> PreparedReference:
    mime, extension = ("image/png", ".png") if fmt == "PNG" else ("image/jpeg", ".jpg")
    return PreparedReference(
        data=data,
        mime=mime,
        extension=extension,
        width=img.width,
        height=img.height,
        sha256=hashlib.sha256(data).hexdigest(),
        source_name=name,
    )


def deduplicate(
    refs: Iterable[PreparedReference],
) -> tuple[list[PreparedReference], list[str]]:
    """Keep the first of byte-identical prepared images; also return the dropped files' names."""
    kept: list[PreparedReference] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for ref in refs:
        if ref.sha256 in seen:
            dropped.append(ref.source_name)
        else:
            seen.add(ref.sha256)
            kept.append(ref)
    return kept, dropped


def upload_cache_dir() -> Path:
    """Gradio's upload cache, where visitors' originals land: GRADIO_TEMP_DIR, else
    <temp dir>/gradio (Gradio's own rule, read here so that studio needs no gradio import)."""
    folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def discard_upload(path: str | os.PathLike[str], cache_dir: Path | None = None) -> bool:
    """Delete an uploaded original from Gradio's upload cache once its reference is prepared.

    Only a regular file inside `cache_dir` (default `upload_cache_dir()`) is removed, never a
    symlink and nothing outside it, so a path from an API caller cannot delete anything else;
    its folder (Gradio makes one per upload) goes too when left empty. Returns whether a file
    was removed. Gradio names the folder by the content's hash, so two visitors who upload the
    same bytes share one file: the second one's upload is then gone as well, and that visitor
    is asked to add the image again, which is the price of not keeping originals.
    """
    root = (cache_dir or upload_cache_dir()).resolve()
    candidate = Path(path)
    try:
        parent = candidate.parent.resolve(strict=True)
        info = candidate.lstat()
    except (OSError, RuntimeError):
        return False
    if not parent.is_relative_to(root) or not stat.S_ISREG(info.st_mode):
        return False
    try:
        (parent / candidate.name).unlink()
    except OSError:
        return False
    if parent != root:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            pass
    return True
