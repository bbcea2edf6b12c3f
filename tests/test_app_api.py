"""The whole app over HTTP, as an API caller sees it: gradio_client against a live server.

No key is set, so both services run on the in-process simulator at 1/100 of real time.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from app_server import RunningApp, app_server_fixture
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError
from PIL import Image

from studio.metadata import read_parameters

pytestmark = [pytest.mark.slow]

SECRET_KEY = "dk-SECRETSECRET123456"

server = app_server_fixture()
keyed_server = app_server_fixture({"DEFAPI_API_KEY": SECRET_KEY})

GENERATE_PARAMETERS = [
    "model",
    "prompt",
    "reference_images",
    "reference_urls",
    "aspect_ratio",
    "resolution",
    "output_format",
    "routing",
    "variants",
    "defapi_key",
    "apixo_key",
]
PRIVATE_ENDPOINTS = [
    "/stop",
    "/start",
    "/feed",
    "/reshape",
    "/trim_references",
    "/preview_references",
]


@pytest.fixture(scope="module")
def client(server: RunningApp, tmp_path_factory: pytest.TempPathFactory) -> Client:
    downloads = tmp_path_factory.mktemp("downloads")
    return Client(server.url, analytics_enabled=False, verbose=False, download_files=downloads)


@pytest.fixture(scope="module")
def reference_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five small, distinct PNGs (distinct so deduplication keeps them all)."""
    folder = tmp_path_factory.mktemp("refs")
    paths = []
    for i in range(5):
        path = folder / f"ref{i}.png"
        Image.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 90)).save(path)
        paths.append(path)
    return paths


def gallery_files(gallery: list[dict]) -> list[Path]:
    return [Path(item["image"]) for item in gallery]


def task_ids(status: str) -> list[str]:
    return re.findall(r"· task (\S+)", status)


# ---- generation ----------------------------------------------------------------------------------


def test_nano_banana_pro_two_variants_as_16_9_jpeg(client: Client, server: RunningApp) -> None:
    gallery, status = client.predict(
        model="nano-banana-pro",
        prompt="a lighthouse at dusk",
        aspect_ratio="16:9",
        resolution="1K",
        output_format="jpeg",
        variants=2,
        api_name="/generate",
    )

    assert "Offline preview" in status
    assert status.count(": done") == 2, status
    files = gallery_files(gallery)
    assert len(files) == 2
    for path in files:
        assert path.is_file()
        with Image.open(path) as img:
            assert (img.format, img.size) == ("JPEG", (1376, 768))
    ids = task_ids(status)
    assert len(set(ids)) == 2, status

    # The files carry their parameters, both as downloaded and as kept in the data folder.
    for path in files:
        params = read_parameters(path.read_bytes())
        assert params is not None, path
        assert params["model"] == "nano-banana-pro"
        assert params["prompt"] == "a lighthouse at dusk"
        assert params["aspect_ratio"] == "16:9"
        assert params["resolution"] == "1K"
        assert params["output_format"] == "jpeg"
        assert params["task_id"] in ids
    saved = sorted((server.data_dir / "outputs").rglob("*lighthouse*"))
    assert len(saved) == 2
    assert {read_parameters(p.read_bytes())["task_id"] for p in saved} == set(ids)


def test_gempix2_with_two_reference_files(client: Client, reference_pngs: list[Path]) -> None:
    gallery, status = client.predict(
        model="google/gempix2",
        prompt="blend these two swatches",
        reference_images=[handle_file(str(p)) for p in reference_pngs[:2]],
        api_name="/generate",
    )

    assert "Offline preview" in status
    assert "done" in status
    files = gallery_files(gallery)
    assert len(files) == 1
    with Image.open(files[0]) as img:
        assert (img.format, img.size) == ("PNG", (1024, 1024))
    params = read_parameters(files[0].read_bytes())
    assert params is not None
    assert params["model"] == "google/gempix2"
    assert params["prompt"] == "blend these two swatches"
    assert [params["task_id"]] == task_ids(status)
    assert len(params["reference_hashes"]) == 2
    # GemPix2 takes no aspect ratio: it is not sent, so not recorded either.
    assert params["aspect_ratio"] is None


# ---- refusals ------------------------------------------------------------------------------------


def test_five_references_to_gempix2_are_refused(client: Client, reference_pngs: list[Path]) -> None:
    # The event's validator answers before the handler's own check (which says the same), so
    # the caller gets a ValidationError; either layer's refusal would satisfy the message check.
    with pytest.raises(
        (ValidationError, AppError), match=r"at most 4 reference images \(5 given\)"
    ):
        client.predict(
            model="google/gempix2",
            prompt="too many",
            reference_images=[handle_file(str(p)) for p in reference_pngs],
            api_name="/generate",
        )


def test_a_setting_the_model_does_not_take_gets_a_sentence(client: Client) -> None:
    with pytest.raises(AppError) as caught:
        client.predict(
            model="nano-banana-pro", prompt="a fox", aspect_ratio="7:3", api_name="/generate"
        )
    assert "Nano Banana Pro cannot take aspect ratio '7:3'; choices: 1:1, 16:9" in str(caught.value)


def test_pdf_renamed_png_is_refused_by_name(client: Client, tmp_path: Path) -> None:
    fake = tmp_path / "invoice-scan.png"
    fake.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    with pytest.raises(AppError) as caught:
        client.predict(
            model="google/gempix2",
            prompt="use this",
            reference_images=[handle_file(str(fake))],
            api_name="/generate",
        )
    message = str(caught.value)
    assert "invoice-scan.png" in message
    assert "not an image" in message


def test_content_violation_reports_policy_and_task_id(client: Client) -> None:
    gallery, status = client.predict(
        model="google/gempix2",
        prompt="something [sim:content_violation]",
        api_name="/generate",
    )
    assert gallery == []
    assert "declined the prompt or a reference image under its content policy" in status
    assert task_ids(status), status
    assert "done" not in status


# An invalid key is not testable here: it needs the real service (the simulator takes any key).


# ---- what the server exposes ---------------------------------------------------------------------


def test_api_lists_generate_experiment_and_the_history_tools_only(client: Client) -> None:
    info = client.view_api(return_format="dict", print_info=False)
    assert list(info["named_endpoints"]) == [
        "/generate",
        "/experiment",
        "/list_generations",
        "/get_generation",
    ]
    assert info["unnamed_endpoints"] == {}
    generate = info["named_endpoints"]["/generate"]
    names = [p["parameter_name"] for p in generate["parameters"]]
    # The documented parameters, in their positional order; anything after them (the page's
    # browser id) must be optional so documented calls keep working.
    assert names[: len(GENERATE_PARAMETERS)] == GENERATE_PARAMETERS
    assert all(
        p["parameter_has_default"] for p in generate["parameters"][len(GENERATE_PARAMETERS) :]
    )
    assert not generate["parameters"][1]["parameter_has_default"]  # the prompt is required
    assert [r["label"] for r in generate["returns"]] == ["Results", "Status"]
    for private in PRIVATE_ENDPOINTS:
        assert private not in info["named_endpoints"]


def test_run_history_is_off(server: RunningApp) -> None:
    config = httpx.get(server.url + "config", timeout=10).json()
    assert "run_history" in config  # else this check would pass vacuously
    assert config["run_history"] is False


@pytest.mark.parametrize("path", ["", "config", "gradio_api/info"])
def test_environment_key_never_reaches_the_browser(keyed_server: RunningApp, path: str) -> None:
    assert keyed_server.app.config.services["gempix2"].api_key == SECRET_KEY  # really set
    response = httpx.get(keyed_server.url + path, timeout=10)
    assert response.status_code == 200
    assert len(response.text) > 500  # a real page or config, not an empty answer
    assert SECRET_KEY not in response.text
    assert "SECRETSECRET" not in response.text
