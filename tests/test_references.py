"""The reference pipeline; every input is built here with Pillow or by hand."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin

from studio.config import public_url_from_env
from studio.netguard import UnsafeUrlError
from studio.reference_host import ReferenceHost, check_reference_url
from studio.references import (
    BadReferenceError,
    PreparedReference,
    ReferenceLimits,
    deduplicate,
    prepare_reference,
)

# --- builders -------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    # Random pixels barely compress, which makes byte limits bite at small sizes.
    channels = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))


def two_halves(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue: shows which way an image was turned."""
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return img


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming `width`×`height`, with no real pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def jpeg_with_claimed_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is rewritten to claim a different size."""
    data = bytearray(encode(Image.new("RGB", (16, 16), "gray"), "JPEG"))
    pos = 2
    while data[pos + 1] != 0xC0:  # walk the segments to the baseline frame header
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    struct.pack_into(">HH", data, pos + 5, height, width)
    return bytes(data)


def swapped_primaries_profile() -> bytes:
    """An ICC profile that is sRGB with its red and blue primaries exchanged."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    profile[red + 4 : red + 12], profile[blue + 4 : blue + 12] = (
        profile[blue + 4 : blue + 12],
        profile[red + 4 : red + 12],
    )
    return bytes(profile)


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple), value
    return value


def reopen(ref: PreparedReference) -> Image.Image:
    img = Image.open(io.BytesIO(ref.data))
    img.load()
    return img


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any attempt to decode pixels, to prove a refusal came from the header alone."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        calls.append(str(self.format))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


# --- refusals -------------------------------------------------------------------------------


def test_empty_file_is_refused() -> None:
    with pytest.raises(BadReferenceError, match=r"^holiday\.jpg is empty"):
        prepare_reference(b"", "holiday.jpg")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("photo.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"),
        ("photo.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),  # a PDF renamed to .jpg
        ("page.png", b"<!DOCTYPE html><html><body><img src=x></body></html>"),
        ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        ("logo.webp", b'\xef\xbb\xbf\n  <?xml version="1.0"?><svg></svg>'),
    ],
)
def test_documents_are_refused_by_content(name: str, data: bytes) -> None:
    with pytest.raises(BadReferenceError) as caught:
        prepare_reference(data, name)
    assert str(caught.value) == (
        f"{name} is not an image (PDF/HTML/SVG are not accepted): use JPG, PNG, WebP or HEIC"
    )


@pytest.mark.parametrize(("fmt", "kind"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_formats_are_refused_by_name(fmt: str, kind: str) -> None:
    data = encode(Image.new("RGB", (8, 8), "red"), fmt)
    with pytest.raises(BadReferenceError) as caught:
        prepare_reference(data, "picture.jpg")  # the extension lies; the content decides
    assert str(caught.value) == (
        f"picture.jpg is a {kind} image, which is not accepted: use JPG, PNG, WebP or HEIC"
    )


def test_unknown_bytes_are_refused() -> None:
    with pytest.raises(BadReferenceError, match=r"^blob\.png is not a supported image: use JPG"):
        prepare_reference(b"\x00\x01\x02\x03" * 64, "blob.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_refused(fmt: str) -> None:
    data = encode(noise((256, 256)), fmt)
    with pytest.raises(BadReferenceError, match=r"^cut\.img could not be (decoded|read)"):
        prepare_reference(data[: len(data) // 2], "cut.img")


def test_file_name_in_messages_is_the_base_name() -> None:
    with pytest.raises(BadReferenceError, match=r"^report\.pdf is not an image"):
        prepare_reference(b"%PDF-1.5\n", "C:\\Users\\me\\Downloads\\report.pdf")
    with pytest.raises(BadReferenceError, match=r"^scan\.pdf is not an image"):
        prepare_reference(b"%PDF-1.5\n", "/tmp/gradio/abc123/scan.pdf")


def test_oversized_upload_is_refused_before_opening() -> None:
    limits = ReferenceLimits(max_input_bytes=1000)
    data = encode(noise((64, 64)), "PNG")
    with pytest.raises(BadReferenceError, match=r"^big\.png is .* MB; files over"):
        prepare_reference(data, "big.png", limits=limits)


@pytest.mark.parametrize(
    "data",
    [png_header_only(10_000, 6_000), jpeg_with_claimed_size(65_000, 1_000)],
    ids=["png-60MP", "jpeg-65MP"],
)
def test_bomb_header_is_refused_without_decoding(data: bytes, no_decoding: list[str]) -> None:
    with pytest.raises(BadReferenceError, match=r"^bomb\.img is too large: .* the limit is 25"):
        prepare_reference(data, "bomb.img")
    assert no_decoding == []


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (20_000, 10_000)])
def test_headers_past_pillows_own_bomb_limits_are_refused(
    width: int, height: int, no_decoding: list[str]
) -> None:
    # 100 MP trips Pillow's DecompressionBombWarning (an error under this suite's filters),
    # 200 MP its DecompressionBombError; both must become a plain refusal.
    with pytest.raises(BadReferenceError, match=r"^huge\.png is too large"):
        prepare_reference(png_header_only(width, height), "huge.png")
    assert no_decoding == []


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (200, 100), "white"), "PNG")
    limits = ReferenceLimits(max_pixels=19_999)
    with pytest.raises(BadReferenceError, match=r"^small\.png is too large: 200×100"):
        prepare_reference(data, "small.png", limits=limits)
    assert prepare_reference(data, "small.png", limits=ReferenceLimits(max_pixels=20_000))


# --- cleaning -------------------------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90° clockwise to display"
    data = encode(two_halves((200, 100)), "JPEG", exif=exif, quality=95)
    ref = prepare_reference(data, "turned.jpg")
    assert (ref.width, ref.height) == (100, 200)
    img = reopen(ref)
    assert img.size == (100, 200)
    top, bottom = pixel(img, (50, 20)), pixel(img, (50, 180))
    assert top[0] > 200 and top[2] < 60, top  # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert ExifTags.Base.Orientation not in img.getexif()


def test_all_metadata_is_stripped_from_jpeg() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 1.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(
        two_halves((64, 32)),
        "JPEG",
        exif=exif,
        xmp=b"<x:xmpmeta>secret-xmp</x:xmpmeta>",
        comment=b"secret-comment",
        icc_profile=icc,
    )
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input really carries GPS

    ref = prepare_reference(data, "gps.jpg")
    img = reopen(ref)
    assert len(img.getexif()) == 0
    assert not img.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "xmp", "comment", "icc_profile"} & set(img.info)
    for secret in (b"Exif", b"SecretCam", b"secret-xmp", b"secret-comment", b"lcms"):
        assert secret not in ref.data


def test_png_text_chunks_are_stripped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "secret-author")
    info.add_itxt("Comment", "secret-itxt")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.new("RGB", (32, 32), "green"), "PNG", pnginfo=info, icc_profile=icc)
    assert b"iCCP" in data
    ref = prepare_reference(data, "notes.png")
    assert ref.mime == "image/png"
    assert b"secret-author" not in ref.data and b"secret-itxt" not in ref.data
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"iCCP", b"eXIf"):
        assert chunk not in ref.data


def test_png_transparency_is_kept() -> None:
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    img.paste((0, 128, 255, 200), (10, 10, 30, 30))
    ref = prepare_reference(encode(img, "PNG"), "sticker.png")
    assert (ref.mime, ref.extension) == ("image/png", ".png")
    out = reopen(ref)
    assert out.mode == "RGBA"
    assert pixel(out, (0, 0))[3] == 0
    assert out.getpixel((20, 20)) == (0, 128, 255, 200)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_colour_profile_is_applied_then_dropped(fmt: str) -> None:
    # Pixel (255, 0, 0) means blue under this profile; without the conversion it would stay red.
    data = encode(
        Image.new("RGB", (16, 16), (255, 0, 0)), fmt, icc_profile=swapped_primaries_profile()
    )
    out = reopen(prepare_reference(data, "wide-gamut." + fmt.lower()))
    red, _, blue = pixel(out, (8, 8))
    assert blue > 200 and red < 60, (red, blue)
    assert "icc_profile" not in out.info


def test_palette_transparency_becomes_rgba_png() -> None:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 8, 16))
    data = encode(img, "PNG", transparency=0)
    out = reopen(prepare_reference(data, "palette.png"))
    assert out.mode == "RGBA"
    assert pixel(out, (12, 8))[3] == 0
    assert out.getpixel((2, 8)) == (200, 0, 0, 255)


def test_opaque_png_stays_lossless_png_without_alpha() -> None:
    img = noise((32, 32)).convert("RGBA")  # an alpha channel that is fully opaque
    ref = prepare_reference(encode(img, "PNG"), "screenshot.png")
    out = reopen(ref)
    assert ref.mime == "image/png" and out.mode == "RGB"
    assert out.tobytes() == img.convert("RGB").tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_opaque_photos_become_jpeg(fmt: str) -> None:
    ref = prepare_reference(encode(two_halves((64, 48)), fmt), "named-wrong.png")
    assert (ref.mime, ref.extension, ref.width, ref.height) == ("image/jpeg", ".jpg", 64, 48)
    assert ref.data.startswith(b"\xff\xd8")


def test_webp_with_alpha_becomes_png() -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    img.paste((10, 20, 30, 255), (0, 0, 16, 32))
    ref = prepare_reference(encode(img, "WEBP", lossless=True), "cutout.webp")
    out = reopen(ref)
    assert ref.mime == "image/png" and out.mode == "RGBA"
    assert pixel(out, (24, 16))[3] == 0


def test_sixteen_bit_greyscale_is_not_clipped_to_white() -> None:
    data = encode(Image.new("I;16", (16, 16), 32768), "PNG")
    out = reopen(prepare_reference(data, "depth.png"))
    value = pixel(out, (4, 4))
    assert 120 <= value[0] <= 135, value


def test_heic_becomes_jpeg() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        data = encode(two_halves((64, 32)), "HEIF")
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        pytest.skip(f"this libheif build cannot encode HEIC, so there is no input to test: {exc}")
    assert data[4:12] == b"ftypheic"
    ref = prepare_reference(data, "IMG_0001.HEIC")
    assert (ref.mime, ref.width, ref.height) == ("image/jpeg", 64, 32)
    left = pixel(reopen(ref), (8, 16))
    assert left[0] > 180 and left[2] < 80, left


# --- size limits ----------------------------------------------------------------------------


def test_long_side_is_capped_keeping_the_aspect_ratio() -> None:
    ref = prepare_reference(encode(two_halves((3000, 1000)), "PNG"), "wide.png")
    assert (ref.width, ref.height) == (2048, 683)
    assert reopen(ref).size == (2048, 683)


def test_jpeg_is_reencoded_and_shrunk_until_it_fits() -> None:
    limits = ReferenceLimits(max_side=1024, max_bytes=150_000)
    ref = prepare_reference(
        encode(noise((3000, 1000)), "JPEG", quality=95), "noise.jpg", limits=limits
    )
    assert len(ref.data) <= 150_000
    assert max(ref.width, ref.height) <= 1024
    assert reopen(ref).size == (ref.width, ref.height)
    assert abs(ref.width / ref.height - 3) < 0.05


def test_opaque_png_over_the_byte_limit_becomes_jpeg() -> None:
    data = encode(noise((400, 400)), "PNG")  # about 480 KB of incompressible pixels
    ref = prepare_reference(data, "noise.png", limits=ReferenceLimits(max_bytes=200_000))
    assert ref.mime == "image/jpeg" and len(ref.data) <= 200_000


def test_transparent_png_over_the_byte_limit_is_shrunk_as_png() -> None:
    data = encode(noise((400, 400), "RGBA"), "PNG")
    ref = prepare_reference(data, "alpha.png", limits=ReferenceLimits(max_bytes=200_000))
    assert ref.mime == "image/png" and len(ref.data) <= 200_000
    assert ref.width < 400 and reopen(ref).mode == "RGBA"


def test_impossible_byte_limit_is_refused() -> None:
    with pytest.raises(BadReferenceError, match=r"^noise\.jpg cannot be made smaller"):
        prepare_reference(
            encode(noise((300, 300)), "JPEG"), "noise.jpg", limits=ReferenceLimits(max_bytes=50)
        )


# --- identity and deduplication -------------------------------------------------------------


def test_prepared_reference_fields_and_data_uri() -> None:
    data = encode(two_halves((30, 20)), "PNG")
    ref = prepare_reference(data, "dir/a.png")
    assert ref.source_name == "a.png"
    assert len(ref.sha256) == 64
    prefix = "data:image/png;base64,"
    uri = ref.as_data_uri()
    assert uri.startswith(prefix) and base64.b64decode(uri[len(prefix) :]) == ref.data
    assert "data=" not in repr(ref)  # megabytes of bytes never reach a log line


def test_deduplicate_keeps_the_first_and_names_the_rest() -> None:
    one = encode(two_halves((30, 20)), "PNG")
    other = encode(two_halves((20, 30)), "PNG")
    refs = [
        prepare_reference(one, "first.png"),
        prepare_reference(other, "other.png"),
        prepare_reference(one, "copy of first.png"),
        prepare_reference(one, "first again.png"),
    ]
    kept, dropped = deduplicate(refs)
    assert [r.source_name for r in kept] == ["first.png", "other.png"]
    assert dropped == ["copy of first.png", "first again.png"]


# --- hosting --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ref() -> PreparedReference:
    return prepare_reference(encode(two_halves((30, 20)), "JPEG"), "ref.jpg")


def test_publish_writes_an_unguessable_file(tmp_path: Path, ref: PreparedReference) -> None:
    clock = FakeClock()
    host = ReferenceHost(tmp_path / "refs", "https://studio.example/", ttl_seconds=600, clock=clock)
    first, second = host.publish(ref), host.publish(ref)
    assert not first.is_data_uri and first.expires_at == clock.now + 600
    assert first.url.startswith("https://studio.example/refs/") and first.url.endswith(".jpg")
    assert first.url != second.url
    name = first.url.rsplit("/", 1)[1]
    assert len(name) == 32 + len(".jpg")
    path = host.resolve(name)
    assert path is not None and path.read_bytes() == ref.data
    assert [p.name for p in (tmp_path / "refs").iterdir() if p.name.startswith(".")] == []


def test_published_files_expire(tmp_path: Path, ref: PreparedReference) -> None:
    clock = FakeClock()
    host = ReferenceHost(tmp_path, "https://studio.example", ttl_seconds=600, clock=clock)
    old = host.publish(ref).url.rsplit("/", 1)[1]
    clock.now += 300
    new = host.publish(ref).url.rsplit("/", 1)[1]
    clock.now += 299
    assert host.resolve(old) is not None
    clock.now += 1
    assert host.resolve(old) is None
    assert host.resolve(new) is not None
    stray = tmp_path / "notes.txt"
    stray.write_text("not ours")
    os.utime(stray, (0, 0))
    assert host.sweep() == 1
    assert not (tmp_path / old).exists() and (tmp_path / new).exists() and stray.exists()


def test_sweep_removes_an_old_partial_write_left_by_a_crash(tmp_path: Path) -> None:
    clock = FakeClock()
    host = ReferenceHost(tmp_path, "https://studio.example", ttl_seconds=600, clock=clock)
    partial = tmp_path / f".{'a' * 32}.jpg.k3x9.part"
    partial.write_bytes(b"half a file")
    os.utime(partial, (clock.now - 601, clock.now - 601))
    assert host.sweep() == 1 and not partial.exists()


def test_sweep_of_a_missing_folder_is_harmless(tmp_path: Path) -> None:
    assert ReferenceHost(tmp_path / "never-made", "https://s.example").sweep() == 0


@pytest.mark.parametrize(
    "name",
    [
        "../secret.jpg",
        "..%2Fsecret.jpg",
        "/etc/passwd",
        "A" * 31 + "/.jpg",
        "A" * 32 + ".jpg/../../x.jpg",
        "A" * 32 + ".jpg\n",
        "A" * 32 + ".gif",
        "A" * 32,
        "",
    ],
)
def test_resolve_refuses_malformed_names(tmp_path: Path, name: str) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"x")
    host = ReferenceHost(tmp_path / "refs", "https://studio.example")
    assert host.resolve(name) is None


def test_resolve_refuses_unknown_names_and_symlinks(tmp_path: Path) -> None:
    host = ReferenceHost(tmp_path, "https://studio.example")
    assert host.resolve("B" * 32 + ".png") is None
    outside = tmp_path.parent / "outside.png"
    outside.write_bytes(b"private")
    (tmp_path / ("C" * 32 + ".png")).symlink_to(outside)
    assert host.resolve("C" * 32 + ".png") is None


def test_without_public_url_references_are_data_uris(
    tmp_path: Path, ref: PreparedReference
) -> None:
    host = ReferenceHost(tmp_path / "refs", None)
    published = host.publish(ref)
    assert published.is_data_uri and published.expires_at is None
    assert published.url == ref.as_data_uri()
    assert not (tmp_path / "refs").exists()
    assert len(repr(published)) < 200


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"PUBLIC_URL": "https://studio.example/", "SPACE_HOST": "x.hf.space"},
            "https://studio.example",
        ),
        ({"PUBLIC_URL": "  ", "SPACE_HOST": "me-studio.hf.space"}, "https://me-studio.hf.space"),
        ({"SPACE_HOST": "a.hf.space, b.hf.space"}, "https://a.hf.space"),
        ({"SPACE_HOST": ""}, None),
        ({}, None),
    ],
)
def test_public_base_url_from_env(environ: dict[str, str], expected: str | None) -> None:
    assert public_url_from_env(environ) == expected


# --- pasted URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://images.example/cat.png", "http://93.184.216.34/cat.jpg"])
def test_pasted_public_urls_are_accepted(url: str) -> None:
    assert check_reference_url(f" {url}\n") == url


@pytest.mark.parametrize(
    "url",
    [
        "file:///home/me/cat.png",
        "data:image/png;base64,AAAA",
        "http://localhost:7860/refs/x.png",
        "http://127.0.0.1/cat.png",
        "https://[::1]/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "https://user:pw@images.example/cat.png",
        "https://images.example/" + "a" * 2100,
    ],
)
def test_pasted_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        check_reference_url(url)
