"""Keep a generation's parameters inside the saved image, and save it under a findable name.

The parameters travel as one UTF-8 JSON object with a `"version": 1` key, stored where common
viewers and `exiftool` show it, and written WITHOUT decoding or re-encoding any pixel:

* PNG:  an `iTXt` chunk with the keyword `image-studio`, inserted before `IEND`.
* JPEG: the Exif `ImageDescription` tag (0x010E) in an APP1 segment placed after SOI (and after a
        leading JFIF APP0, where Pillow and cameras put it). Tags already in the file's Exif,
        such as Orientation, are kept; the old Exif segment is replaced by the merged one. Exif
        ASCII cannot carry UTF-8, so the JSON is written with `\\uXXXX` escapes (still valid
        JSON that decodes to the same text).
* WebP: the same Exif block in a RIFF `EXIF` chunk. A simple (`VP8 `/`VP8L`) file gets the
        extended `VP8X` header that chunk requires; the bitstream is copied unchanged. We chose
        this over "return as is" (the parameters would be lost) and over converting to PNG (a
        new encode, a bigger file, and a different extension than the service produced).

An APP1 segment holds at most 64 KiB; when a very long prompt does not fit, the stored copy of
the prompt is shortened and `"prompt_truncated": true` is added (the rest is kept whole).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image

PARAMETERS_VERSION = 1
PNG_KEYWORD = b"image-studio"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
_IMAGE_DESCRIPTION = 0x010E
_MAX_SEGMENT_PAYLOAD = 0xFFFF - 2  # a JPEG segment's length field counts its own two bytes


# ---- public API ---------------------------------------------------------------------------------


def embed_parameters(data: bytes, mime: str, params: Mapping[str, object]) -> bytes:
    """Return `data` with `params` embedded; the pixel data is copied byte for byte.

    `"version": 1` is added unless `params` has a version. Values must be JSON-serialisable
    (TypeError otherwise). Raises ValueError when `data` is not a well-formed file of `mime`.
    """
    payload: dict[str, Any] = {"version": PARAMETERS_VERSION, **params}
    if mime == "image/png":
        return _embed_png(data, payload)
    if mime == "image/jpeg":
        return _embed_jpeg(data, payload)
    if mime == "image/webp":
        return _embed_webp(data, payload)
    raise ValueError(f"cannot embed parameters in {mime!r}")


def read_parameters(data: bytes) -> dict[str, Any] | None:
    """The parameters embedded by `embed_parameters`, or None (absent, foreign, or garbage)."""
    try:
        if data.startswith(_PNG_SIGNATURE):
            text = _read_png(data)
        elif data.startswith(b"\xff\xd8"):
            text = _read_exif_description(_jpeg_exif_payload(data))
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            text = _read_exif_description(_webp_exif_payload(data))
        else:
            return None
        if text is None:
            return None
        params = json.loads(text)
    except Exception:
        # Any file can reach this (a user's folder, a half-written download): never raise.
        return None
    if not isinstance(params, dict) or not isinstance(params.get("version"), int):
        return None
    return params


# ---- fitting the JSON ---------------------------------------------------------------------------


def _fitted_json(payload: dict[str, Any], encode: Any, limit: int) -> bytes:
    """`encode(json_text)` within `limit` bytes, shortening the prompt copy if it must."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    block = encode(text)
    prompt = payload.get("prompt")
    while len(block) > limit:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("the parameters are too large to embed in this image")
        prompt = prompt[: len(prompt) * 3 // 4]
        shortened = {**payload, "prompt": prompt, "prompt_truncated": True}
        block = encode(json.dumps(shortened, ensure_ascii=True, separators=(",", ":")))
    return block


def _exif_with_description(existing: bytes | None, description: str) -> bytes:
    """An Exif block (starting with `Exif\\0\\0`) with the old tags and our description."""
    exif = Image.Exif()
    if existing:
        try:
            exif.load(existing)  # `tobytes` writes the Exif and GPS sub-IFDs back too
        except Exception:
            exif = Image.Exif()  # unreadable old Exif: start again rather than fail
    exif[_IMAGE_DESCRIPTION] = description
    return exif.tobytes()


def _read_exif_description(exif_block: bytes | None) -> str | None:
    if not exif_block:
        return None
    exif = Image.Exif()
    exif.load(exif_block)
    value = exif.get(_IMAGE_DESCRIPTION)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


# ---- PNG ----------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, data, raw chunk bytes) for each chunk up to and including IEND."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks = []
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        chunks.append((kind, data[pos + 8 : pos + 8 + length], data[pos:end]))
        pos = end
        if kind == b"IEND":
            return chunks
    raise ValueError("PNG without IEND")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _is_our_text_chunk(kind: bytes, body: bytes) -> bool:
    return kind in (b"iTXt", b"tEXt", b"zTXt") and body.split(b"\x00", 1)[0] == PNG_KEYWORD


def _embed_png(data: bytes, payload: dict[str, Any]) -> bytes:
    chunks = _png_chunks(data)
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # keyword, NUL, compression flag 0, method 0, empty language tag + NUL, empty translation + NUL
    body = PNG_KEYWORD + b"\x00\x00\x00" + b"\x00" + b"\x00" + text.encode("utf-8")
    kept = [raw for kind, chunk, raw in chunks if not _is_our_text_chunk(kind, chunk)]
    return b"".join([_PNG_SIGNATURE, *kept[:-1], _png_chunk(b"iTXt", body), kept[-1]])


def _read_png(data: bytes) -> str | None:
    for kind, body, _raw in _png_chunks(data):
        if kind != b"iTXt" or not _is_our_text_chunk(kind, body):
            continue
        rest = body[len(PNG_KEYWORD) + 1 :]
        compressed, _method = rest[0], rest[1]
        _language, _translated, text = rest[2:].split(b"\x00", 2)
        if compressed:
            text = zlib.decompressobj().decompress(text, 1 << 20)  # bounded: never a bomb
        return text.decode("utf-8")
    return None


# ---- JPEG ---------------------------------------------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The header segments as (marker, raw bytes), and the offset where SOS (scan data) starts."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG file")
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise ValueError("malformed JPEG header")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xDA:
            return segments, pos
        if marker == 0xD9 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise ValueError("JPEG without scan data")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise ValueError("truncated JPEG segment")
        segments.append((marker, data[pos:end]))
        pos = end


def _is_exif_segment(marker: int, raw: bytes) -> bool:
    return marker == 0xE1 and raw[4:10] == _EXIF_HEADER


def _jpeg_exif_payload(data: bytes) -> bytes | None:
    segments, _ = _jpeg_segments(data)
    for marker, raw in segments:
        if _is_exif_segment(marker, raw):
            return raw[4:]
    return None


def _embed_jpeg(data: bytes, payload: dict[str, Any]) -> bytes:
    segments, scan = _jpeg_segments(data)
    existing = next((raw[4:] for m, raw in segments if _is_exif_segment(m, raw)), None)
    block = _fitted_json(
        payload,
        lambda text: _exif_with_description(existing, text),
        _MAX_SEGMENT_PAYLOAD,
    )
    app1 = b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
    others = [(m, raw) for m, raw in segments if not _is_exif_segment(m, raw)]
    leading = 0
    while leading < len(others) and others[leading][0] == 0xE0:  # JFIF/JFXX APP0 first
        leading += 1
    head = [raw for _, raw in others[:leading]] + [app1] + [raw for _, raw in others[leading:]]
    return b"\xff\xd8" + b"".join(head) + data[scan:]


# ---- WebP ---------------------------------------------------------------------------------------


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + riff_size)
    chunks = []
    pos = 12
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if pos + 8 + size > end:
            raise ValueError("truncated WebP chunk")
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    if not chunks:
        raise ValueError("empty WebP file")
    return chunks


def _webp_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_exif_payload(data: bytes) -> bytes | None:
    return next((body for kind, body in _webp_chunks(data) if kind == b"EXIF"), None)


def _vp8x_for_simple(kind: bytes, body: bytes) -> bytes:
    """The VP8X header for a simple-format file: canvas size and alpha from the bitstream."""
    if kind == b"VP8L":
        if len(body) < 5 or body[0] != 0x2F:
            raise ValueError("malformed VP8L bitstream")
        (bits,) = struct.unpack("<I", body[1:5])
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool(bits >> 28 & 1)
    else:
        if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("malformed VP8 bitstream")
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", body[6:10]))
        alpha = False
    flags = 0x10 if alpha else 0
    return (
        bytes([flags, 0, 0, 0])
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


def _embed_webp(data: bytes, payload: dict[str, Any]) -> bytes:
    chunks = _webp_chunks(data)
    first_kind, first_body = chunks[0]
    if first_kind == b"VP8X":
        if len(first_body) < 10:
            raise ValueError("malformed VP8X chunk")
        vp8x = first_body
        rest = chunks[1:]
    elif first_kind in (b"VP8 ", b"VP8L"):
        vp8x = _vp8x_for_simple(first_kind, first_body)
        rest = chunks
    else:
        raise ValueError("unknown WebP layout")
    existing = next((body for kind, body in rest if kind == b"EXIF"), None)
    block = _fitted_json(
        payload,
        lambda text: _exif_with_description(existing, text),
        # A RIFF chunk could hold more, but one limit for both formats keeps the rule simple.
        _MAX_SEGMENT_PAYLOAD,
    )
    exif_chunk = (b"EXIF", block[len(_EXIF_HEADER) :])  # WebP stores the TIFF data bare
    vp8x = bytes([vp8x[0] | 0x08]) + vp8x[1:]  # the "has Exif" flag
    rest = [(kind, body) for kind, body in rest if kind != b"EXIF"]
    # The container order is image data, EXIF, XMP: go before any XMP chunk.
    at = next((i for i, (kind, _) in enumerate(rest) if kind == b"XMP "), len(rest))
    rest.insert(at, exif_chunk)
    body = b"WEBP" + _webp_chunk(b"VP8X", vp8x) + b"".join(_webp_chunk(k, b) for k, b in rest)
    return b"RIFF" + struct.pack("<I", len(body)) + body
