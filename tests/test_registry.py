"""The client table and the settings that point each service at its URL and key."""

from __future__ import annotations

import httpx
import pytest
from conftest import read_seed

from providers.capabilities import ImageSettings
from providers.registry import build_client, schedule_for
from providers.services import CATALOG
from providers.services.gempix2 import GemPix2Client
from providers.services.nano_banana_pro import NanoBananaProClient
from providers.settings import ServiceConfig, service_configs
from providers.types import GenerationRequest, TaskState

KEY = "dk-SECRET-1234567890abcdef"
ENV_NAMES = ("DEFAPI_API_KEY", "DEFAPI_BASE_URL", "APIXO_API_KEY", "APIXO_BASE_URL")


@pytest.mark.parametrize("model_id", sorted(CATALOG.models))
async def test_every_model_has_a_client_for_its_service(model_id):
    spec = CATALOG.models[model_id]
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(500))
    ) as http:
        client = build_client(
            CATALOG.service(spec.service), http, base_url="https://example.test", api_key=KEY
        )
    assert client.service == spec.service
    assert client.provider == CATALOG.service(spec.service).label
    assert callable(client.submit) and callable(client.fetch_status)


def test_the_service_registry_is_explicit():
    assert [(s.id, s.label, s.client) for s in CATALOG.services] == [
        ("gempix2", "GemPix2", GemPix2Client),
        ("nano_banana_pro", "Nano Banana Pro", NanoBananaProClient),
    ]
    assert {m.service for m in CATALOG.models.values()} == {s.id for s in CATALOG.services}
    assert CATALOG.key_fields == ("defapi_key", "apixo_key")


@pytest.mark.parametrize(
    ("service", "base_url", "task_id", "expected_url", "answer"),
    [
        (
            "gempix2",
            "https://api.defapi.org/",
            "ta823dfb-eaac-44fd-aec2-3e2c7ba8e071",
            "https://api.defapi.org/api/task/query?task_id=ta823dfb-eaac-44fd-aec2-3e2c7ba8e071",
            {"code": 0, "message": "ok", "data": read_seed("gempix2_callback_success")},
        ),
        (
            "nano_banana_pro",
            "https://api.apixo.ai",
            "task_12345678",
            "https://api.apixo.ai/api/v1/statusTask/nano-banana-pro?taskId=task_12345678",
            read_seed("apixo_status_success"),
        ),
    ],
)
async def test_built_client_reads_status_at_the_documented_url(
    service, base_url, task_id, expected_url, answer
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = build_client(CATALOG.service(service), http, base_url=base_url, api_key=KEY)
        status = await client.fetch_status(task_id)
    assert status.state is TaskState.SUCCEEDED
    assert [(r.method, str(r.url)) for r in seen] == [("GET", expected_url)]
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("service", "expected_url"),
    [
        ("gempix2", "https://api.defapi.org/api/image/gen"),
        ("nano_banana_pro", "https://api.apixo.ai/api/v1/generateTask/nano-banana-pro"),
    ],
)
async def test_built_client_submits_at_the_documented_url(service, expected_url):
    seen: list[httpx.Request] = []
    ok = read_seed("gempix2_submit_ok" if service == "gempix2" else "apixo_submit_ok")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok)

    model = next(spec.id for spec in CATALOG.models.values() if spec.service == service)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = build_client(
            CATALOG.service(service),
            http,
            base_url=service_configs(CATALOG, {})[service].base_url,
            api_key=KEY,
        )
        await client.submit(GenerationRequest(model=model, prompt="p"))
    assert [(r.method, str(r.url)) for r in seen] == [("POST", expected_url)]
    assert seen[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("model", "resolution", "window"),
    [
        ("google/gempix2", None, (8.0, 20.0)),
        ("google/gemini-2.5-flash-image", None, (8.0, 20.0)),
        ("nano-banana-pro", "1K", (20.0, 30.0)),
        ("nano-banana-pro", "2K", (30.0, 45.0)),
        ("nano-banana-pro", "4K", (45.0, 60.0)),
    ],
)
def test_schedule_for_uses_the_models_window(model, resolution, window):
    request = GenerationRequest(
        model=model, prompt="p", settings=ImageSettings(resolution=resolution)
    )
    assert schedule_for(CATALOG.model(request.model), request).window == window
    assert schedule_for(CATALOG.model(request.model), request, time_scale=0.5).window == (
        window[0] / 2,
        window[1] / 2,
    )
    assert schedule_for(CATALOG.model(request.model), request).late_interval == 3.0


# ---------------------------------------------------------------------------- settings


def test_defaults_without_environment():
    configs = service_configs(CATALOG, {})
    assert configs == {
        "gempix2": ServiceConfig("gempix2", "https://api.defapi.org", None),
        "nano_banana_pro": ServiceConfig("nano_banana_pro", "https://api.apixo.ai", None),
    }
    assert not configs["gempix2"].has_key
    assert not configs["nano_banana_pro"].has_key


def test_reads_keys_and_urls_from_the_environment():
    configs = service_configs(
        CATALOG,
        {
            "DEFAPI_API_KEY": "dk-one",
            "DEFAPI_BASE_URL": "http://127.0.0.1:8001/",
            "APIXO_API_KEY": " ak-two ",
            "APIXO_BASE_URL": "http://127.0.0.1:8002",
        },
    )
    gp, nbp = configs["gempix2"], configs["nano_banana_pro"]
    assert (gp.base_url, gp.api_key, gp.has_key) == ("http://127.0.0.1:8001", "dk-one", True)
    assert (nbp.base_url, nbp.api_key, nbp.has_key) == ("http://127.0.0.1:8002", "ak-two", True)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_key_and_url_count_as_none(blank):
    configs = service_configs(
        CATALOG, {"DEFAPI_API_KEY": blank, "DEFAPI_BASE_URL": blank, "APIXO_API_KEY": blank}
    )
    assert configs["gempix2"].api_key is None
    assert configs["gempix2"].base_url == "https://api.defapi.org"
    assert configs["nano_banana_pro"].api_key is None
    assert not configs["nano_banana_pro"].has_key


def test_keys_do_not_cross_services():
    configs = service_configs(CATALOG, {"APIXO_API_KEY": "ak-only"})
    assert configs["gempix2"].api_key is None
    assert configs["nano_banana_pro"].api_key == "ak-only"


def test_reads_os_environ_by_default(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEFAPI_API_KEY", "dk-from-env")
    monkeypatch.setenv("APIXO_BASE_URL", "https://apixo.staging.test")
    configs = service_configs(
        CATALOG,
    )
    assert configs["gempix2"].api_key == "dk-from-env"
    assert configs["gempix2"].base_url == "https://api.defapi.org"
    assert configs["nano_banana_pro"].api_key is None
    assert configs["nano_banana_pro"].base_url == "https://apixo.staging.test"


def test_repr_never_shows_the_key():
    configs = service_configs(CATALOG, {"DEFAPI_API_KEY": KEY, "APIXO_API_KEY": KEY})
    for config in configs.values():
        assert KEY not in repr(config)
        assert KEY not in str(config)
        assert config.base_url in repr(config)
    assert KEY not in repr(configs)
