"""Parameters embedded in saved images, atomic saves and result file names."""

from __future__ import annotations

import io
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from studio import files
from studio.files import result_filename, write_atomically
from studio.metadata import embed_parameters, read_parameters

PARAMS = {
    "model": "nano-banana-pro",
    "prompt": 'A cozy cyberpunk café, "neon" rain ☔ — 夜 😀',
    "aspect_ratio": "16:9",
    "resolution": "2K",
    "output_format": "png",
    "task_id": "task_1234abcd5678",
    "reference_hashes": ["a" * 64, "b" * 64],
    "credits": 0.5,
}
EXPECTED = {"version": 1, **PARAMS}


def encode(fmt: str, mode: str = "RGB", **options) -> bytes:
    """A small image with varied pixels, so that any re-encoding would show."""
    image = Image.new(mode, (41, 23))
    image.putdata(
        [
            (x * 6 % 256, y * 11 % 256, (x * y) % 256, 128 + x)[: len(mode)]
            for y in range(23)
            for x in range(41)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


CASES = [
    ("image/png", encode("PNG")),
    ("image/png", encode("PNG", "RGBA")),
    ("image/jpeg", encode("JPEG", quality=90)),
    ("image/webp", encode("WEBP", lossless=True)),
    ("image/webp", encode("WEBP", quality=80)),
    ("image/webp", encode("WEBP", "RGBA", quality=80)),  # VP8X + ALPH already
]
CASE_IDS = ["png", "png-rgba", "jpeg", "webp-lossless", "webp-lossy", "webp-alpha"]


@pytest.mark.parametrize(("mime", "original"), CASES, ids=CASE_IDS)
def test_parameters_round_trip_and_pixels_are_unchanged(mime: str, original: bytes):
    tagged = embed_parameters(original, mime, PARAMS)

    assert read_parameters(tagged) == EXPECTED
    assert read_parameters(original) is None
    assert pixels(tagged) == pixels(original)


@pytest.mark.parametrize(("mime", "original"), CASES, ids=CASE_IDS)
def test_pillow_itself_reads_what_we_wrote(mime: str, original: bytes):
    """An independent reader: the file is valid and the JSON is where viewers look for it."""
    tagged = embed_parameters(original, mime, PARAMS)

    with Image.open(io.BytesIO(tagged)) as image:
        if mime == "image/png":
            image.load()
            text = image.text["image-studio"]
        else:
            text = image.getexif()[0x010E]
    assert json.loads(text) == EXPECTED
    with Image.open(io.BytesIO(tagged)) as image:
        image.verify()  # PNG: every chunk's CRC


def test_png_chunks_outside_the_new_one_are_copied_verbatim():
    original = encode("PNG")
    tagged = embed_parameters(original, "image/png", PARAMS)

    iend = original.index(b"IEND") - 4
    assert tagged.startswith(original[:iend])
    assert tagged.endswith(original[iend:])


def test_jpeg_scan_data_is_copied_verbatim_and_exif_is_merged():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: viewers must still rotate it
    exif[0x010F] = "Camera maker"
    original = encode("JPEG", exif=exif.tobytes())

    tagged = embed_parameters(original, "image/jpeg", PARAMS)

    assert tagged[tagged.index(b"\xff\xda") :] == original[original.index(b"\xff\xda") :]
    with Image.open(io.BytesIO(tagged)) as image:
        merged = image.getexif()
    assert merged[0x0112] == 6 and merged[0x010F] == "Camera maker"


def test_embedding_again_replaces_the_old_parameters():
    for mime, original in CASES:
        first = embed_parameters(original, mime, PARAMS)
        second = embed_parameters(first, mime, {**PARAMS, "prompt": "second"})

        assert read_parameters(second) == {**EXPECTED, "prompt": "second"}
        assert second.count(b"image-studio") + second.count(b"Exif\x00\x00") <= 1
        assert len(second) < len(first)  # the old copy is gone, not just shadowed


def test_a_version_given_by_the_caller_is_kept():
    tagged = embed_parameters(encode("PNG"), "image/png", {**PARAMS, "version": 2})

    assert read_parameters(tagged) == {**PARAMS, "version": 2}


def test_a_prompt_too_long_for_a_jpeg_segment_is_shortened_not_fatal():
    long_prompt = "😀 zoom " * 20_000
    tagged = embed_parameters(encode("JPEG"), "image/jpeg", {**PARAMS, "prompt": long_prompt})

    stored = read_parameters(tagged)
    assert stored is not None
    assert stored["prompt_truncated"] is True
    assert 0 < len(stored["prompt"]) < len(long_prompt)
    assert long_prompt.startswith(stored["prompt"])
    assert stored["reference_hashes"] == PARAMS["reference_hashes"]


def test_embedding_refuses_what_it_cannot_handle():
    with pytest.raises(ValueError):
        embed_parameters(encode("GIF"), "image/gif", PARAMS)
    with pytest.raises(ValueError):
        embed_parameters(encode("JPEG"), "image/png", PARAMS)
    with pytest.raises(ValueError):
        embed_parameters(b"RIFF\x04\x00\x00\x00WEBP", "image/webp", PARAMS)


def foreign_png_with_text(keyword: str, text: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(keyword, text)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def foreign_jpeg_with_description(text: str) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = text
    return encode("JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(
    "data",
    [
        foreign_png_with_text("parameters", json.dumps(EXPECTED)),  # another tool's keyword
        foreign_png_with_text("image-studio", "not json"),
        foreign_png_with_text("image-studio", '["version", 1]'),
        foreign_jpeg_with_description("Sunset over the bay"),
        foreign_jpeg_with_description('{"model": "x"}'),  # JSON, but no version: not ours
        encode("GIF"),
        b"",
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 40,
        b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00",
        b"RIFF\xff\xff\xff\xffWEBPEXIF\xff\xff\xff\xff",
        bytes(range(256)) * 4,
    ],
)
def test_foreign_images_and_garbage_read_as_none(data: bytes):
    assert read_parameters(data) is None


@pytest.mark.parametrize(("mime", "original"), CASES, ids=CASE_IDS)
def test_truncated_or_corrupted_files_never_raise(mime: str, original: bytes):
    tagged = embed_parameters(original, mime, PARAMS)

    for cut in range(0, len(tagged), 7):
        assert read_parameters(tagged[:cut]) in (None, EXPECTED)
    for at in range(0, len(tagged), 13):
        flipped = tagged[:at] + bytes([tagged[at] ^ 0xFF]) + tagged[at + 1 :]
        result = read_parameters(flipped)
        assert result is None or isinstance(result, dict)


# ---- saving ------------------------------------------------------------------------------------


def test_save_atomically_writes_the_whole_file_and_leaves_no_temp_files(tmp_path: Path):
    data = os.urandom(300_000)

    path = write_atomically(tmp_path / "2026-11-21", "result.png", data)

    assert path == tmp_path / "2026-11-21" / "result.png"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.png"]


def test_the_final_name_only_ever_holds_a_complete_file(tmp_path: Path, monkeypatch):
    data = os.urandom(100_000)
    seen = []
    real_replace = os.replace

    def watching_replace(src, dst):
        # At the moment of the rename the final name does not exist yet and the temp is whole.
        seen.append((Path(dst).exists(), Path(src).read_bytes() == data, Path(src).parent))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", watching_replace)

    write_atomically(tmp_path, "image.jpg", data)

    assert seen == [(False, True, tmp_path)]


def test_a_failed_save_keeps_the_old_file_and_cleans_up(tmp_path: Path):
    write_atomically(tmp_path, "image.png", b"old complete file")

    with pytest.raises(TypeError):
        write_atomically(tmp_path, "image.png", "not bytes")  # type: ignore[arg-type]

    assert (tmp_path / "image.png").read_bytes() == b"old complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


@pytest.mark.parametrize("name", ["", ".", "..", "../escape.png", "a/b.png", "a\\b.png"])
def test_save_atomically_refuses_paths_as_file_names(tmp_path: Path, name: str):
    with pytest.raises(ValueError):
        write_atomically(tmp_path / "out", name, b"data")
    assert not (tmp_path / "escape.png").exists()


# ---- file names --------------------------------------------------------------------------------

CREATED = datetime(2026, 11, 21, 7, 12, 45)
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+\.[a-z0-9]+")


def test_result_filename_is_human_findable():
    name = result_filename(
        CREATED,
        "nano-banana-pro",
        "A cozy cyberpunk cafe at night, neon rain",
        "task_1234abcd9999",
        1,
        "png",
    )

    assert (
        name == "2026-11-21_0712_nano-banana-pro_a-cozy-cyberpunk-cafe-at-night_task_1234abcd_1.png"
    )


def test_result_filename_uses_the_model_name_without_its_vendor():
    name = result_filename(CREATED, "google/gempix2", "Crème brûlée", "ta9f8e7d6c5b4a", 2, "jpg")

    assert name == "2026-11-21_0712_gempix2_creme-brulee_task_ta9f8e7d_2.jpg"


@pytest.mark.parametrize(
    "prompt",
    [
        "😀🔥✨",
        "../../etc/passwd",
        "..\\..\\windows\\system32",
        "\"quotes\" and 'single' and `ticks`",
        "line\nbreak\ttab\x00nul",
        "a " * 500,
        "x" * 500,
        "",
        "  ",
        "日本語のプロンプト",
    ],
)
def test_result_filename_is_safe_for_nasty_prompts(prompt: str):
    name = result_filename(CREATED, "../../model name", prompt, "../task id/..", 3, "png")

    assert SAFE_NAME.fullmatch(name), name
    assert name.isascii() and "/" not in name and " " not in name and ".." not in name
    assert len(name) <= 150
    assert name.startswith("2026-11-21_0712_") and name.endswith("_3.png")


def test_result_filename_refuses_a_strange_extension():
    with pytest.raises(ValueError):
        result_filename(CREATED, "m", "p", "t", 1, "png/../../x")
