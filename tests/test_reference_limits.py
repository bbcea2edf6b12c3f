"""References bounded before they cost memory, and originals not left in Gradio's cache."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from app_server import stray_event_loops_closed
from PIL import Image

from studio.references import (
    DEFAULT_LIMITS,
    BadReferenceError,
    discard_upload,
    prepare_reference,
    upload_cache_dir,
)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_the_pixel_limit_is_what_the_services_need() -> None:
    assert DEFAULT_LIMITS.max_pixels == 25_000_000


def test_a_30_megapixel_image_is_refused_with_a_sentence_naming_the_limit() -> None:
    data = encoded(Image.new("L", (6000, 5000)), "PNG")  # 30 MP in a small file
    with pytest.raises(BadReferenceError) as caught:
        prepare_reference(data, "phone-photo.png")
    assert str(caught.value) == (
        "phone-photo.png is too large: 6000×5000 is 30 megapixels, the limit is 25"
    )


def test_a_large_jpeg_decoded_at_a_reduced_scale_still_comes_out_at_2048() -> None:
    image = Image.linear_gradient("L").resize((5000, 4000)).convert("RGB")
    prepared = prepare_reference(encoded(image, "JPEG"), "camera.jpg")
    assert (prepared.width, prepared.height) == (2048, 1638)
    with Image.open(io.BytesIO(prepared.data)) as result:
        # The gradient survives the reduced decode: dark at the top, light at the bottom.
        top, bottom = result.getpixel((1024, 5)), result.getpixel((1024, 1632))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] < 40 < 215 < bottom[0]


# --- Gradio's upload cache ---------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    folder = tmp_path / "gradio-cache"
    folder.mkdir()
    return folder


def test_an_original_is_removed_with_its_folder(cache: Path) -> None:
    upload = cache / "3f2a9c" / "IMG_0001.jpg"
    upload.parent.mkdir()
    upload.write_bytes(b"original with GPS")
    assert discard_upload(upload, cache) is True
    assert not upload.exists() and not upload.parent.exists()
    assert cache.exists()


def test_a_folder_holding_other_files_stays(cache: Path) -> None:
    upload = cache / "ab12" / "a.png"
    upload.parent.mkdir()
    upload.write_bytes(b"a")
    (upload.parent / "b.png").write_bytes(b"b")
    assert discard_upload(str(upload), cache) is True
    assert (upload.parent / "b.png").exists()


def test_nothing_outside_the_cache_is_ever_removed(cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "ledger.sqlite3"
    outside.write_bytes(b"precious")
    (cache / "x").mkdir()
    link = cache / "x" / "link.png"
    link.symlink_to(outside)
    assert discard_upload(outside, cache) is False
    assert discard_upload(cache / "x" / ".." / ".." / "ledger.sqlite3", cache) is False
    assert discard_upload(link, cache) is False  # a symlink is not an upload
    assert discard_upload(cache / "x" / "missing.png", cache) is False
    assert outside.read_bytes() == b"precious" and link.is_symlink()


def test_the_cache_is_where_gradio_puts_uploads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "here"))
    assert upload_cache_dir() == (tmp_path / "here").resolve()
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    assert upload_cache_dir().name == "gradio"


def test_the_app_sweeps_gradios_cache_on_a_schedule(tmp_path: Path) -> None:
    from app import UPLOAD_CACHE_SWEEP, build_app
    from studio.config import load_config

    with stray_event_loops_closed():
        app = build_app(load_config({"DATA_DIR": str(tmp_path)}))
        try:
            assert app.page.demo.delete_cache == UPLOAD_CACHE_SWEEP == (600, 3600)
        finally:
            app.ledger.close()
    assert os.environ.get("GRADIO_TEMP_DIR")  # the suite's own cache folder, never the user's
