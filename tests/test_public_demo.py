"""A public demo that cannot be drained, over HTTP as a caller sees it: the API follows the
same limits as the page, forwarded addresses count only from trusted proxies, closing streams
early does not lift MAX_RUNNING, VISITOR_KEYS_ONLY keeps the owner's keys for the owner, and
APP_PASSWORD / APP_USERS ask for a login.

The owner's keys point at a simulator inside the app (tests/keyed_service.py), which counts
the submits it receives and tells the owner's key from a visitor's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from keyed_service import (
    VISITOR_APIXO_KEY,
    KeyedApp,
    owner_submits,
    running_keyed_app,
    submits_with,
)

pytestmark = [pytest.mark.slow]

NEVER = "[sim:never_finish] a lighthouse that never ends"


def keyed_fixture(env: dict[str, str]):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="module")
    def _keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedApp]:
        with running_keyed_app(env, tmp_path_factory.mktemp("keyed")) as keyed:
            yield keyed

    return _keyed


no_proxy = keyed_fixture({"VISITOR_QUOTA": "1/day"})
behind_proxy = keyed_fixture({"VISITOR_QUOTA": "1/day", "TRUSTED_PROXIES": "127.0.0.1"})
busy = keyed_fixture({"MAX_RUNNING": "2"})
keys_only = keyed_fixture({"VISITOR_KEYS_ONLY": "1"})
password = keyed_fixture({"APP_PASSWORD": "team-secret"})
accounts = keyed_fixture({"APP_USERS": "ada:pw-ada,bob:pw-bob"})


def client(app: KeyedApp, **options: object) -> Client:
    return Client(app.url, analytics_enabled=False, verbose=False, download_files=False, **options)


def generate(api: Client, prompt: str = "a lighthouse at dusk", **keys: str) -> str:
    """/generate on Nano Banana Pro at 1K; returns the status text."""
    _, status = api.predict(
        model="nano-banana-pro",
        prompt=prompt,
        aspect_ratio="1:1",
        resolution="1K",
        api_name="/generate",
        **keys,
    )
    return str(status)


def wait_until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- which address counts ------------------------------------------------------------------


def test_a_forwarded_address_is_not_believed_from_an_untrusted_peer(no_proxy: KeyedApp) -> None:
    first = client(no_proxy, headers={"X-Forwarded-For": "81.2.69.160"})
    assert "done" in generate(first)
    # Another claimed address, but the same connection's address: the quota is spent.
    second = client(no_proxy, headers={"X-Forwarded-For": "81.2.69.161"})
    with pytest.raises(AppError) as refused:
        generate(second)
    assert "You have used your 1 task today on the studio's key" in str(refused.value)
    assert "00:00 UTC" in str(refused.value)
    assert owner_submits(no_proxy.sim) == 1  # the refusal sent nothing


def test_a_forwarded_address_counts_behind_a_trusted_proxy(behind_proxy: KeyedApp) -> None:
    for address in ("81.2.69.160", "81.2.69.161"):  # two visitors behind the proxy
        assert "done" in generate(client(behind_proxy, headers={"X-Forwarded-For": address}))
    again = client(behind_proxy, headers={"X-Forwarded-For": "81.2.69.160"})
    with pytest.raises(AppError, match="from your network address"):
        generate(again)
    assert owner_submits(behind_proxy.sim) == 2


# ---- running at once, with every stream closed after its first update -------------------------


def start_and_hang_up(app: KeyedApp, prompt: str) -> None:
    """A raw API call whose stream is closed after its first message, as a hostile script
    would: the job is not stopped, only no longer watched by anyone."""
    data = ["nano-banana-pro", prompt, None, "", "1:1", "1K", "png", "auto", 1, "", "", ""]
    with httpx.Client(base_url=app.url, timeout=10) as http:
        event = http.post("gradio_api/call/generate", json={"data": data}).json()["event_id"]
        with http.stream("GET", f"gradio_api/call/generate/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    break


def test_max_running_holds_when_every_stream_is_closed_early(busy: KeyedApp) -> None:
    for _ in range(6):
        start_and_hang_up(busy, NEVER)
    ledger = busy.server.app.ledger
    wait_until(lambda: len(ledger.history(None)) == 6)
    wait_until(lambda: owner_submits(busy.sim) == 2)
    time.sleep(0.3)
    assert owner_submits(busy.sim) == 2
    states = sorted(str(row.state) for row in ledger.history(None))
    assert states.count("recorded") == 4, states  # waiting in line: recorded, nothing sent


# ---- VISITOR_KEYS_ONLY --------------------------------------------------------------------------


def test_visitor_keys_only_serves_visitors_the_preview_or_their_own_key(
    keys_only: KeyedApp,
) -> None:
    api = client(keys_only)
    assert generate(api).startswith("Offline preview")
    assert owner_submits(keys_only.sim) == 0
    assert "done" in generate(api, apixo_key=VISITOR_APIXO_KEY)
    assert submits_with(keys_only.sim, VISITOR_APIXO_KEY) == 1
    assert owner_submits(keys_only.sim) == 0


# ---- logins -------------------------------------------------------------------------------------


def test_a_password_guards_the_page_and_the_api(password: KeyedApp) -> None:
    config = httpx.get(f"{password.url}config", timeout=10)
    assert config.status_code == 401 or json.loads(config.text).get("auth_required") is True
    with pytest.raises(Exception, match=r"(?i)login|auth|401"):
        client(password)
    api = client(password, auth=("anyone", "team-secret"))
    assert "done" in generate(api)
    with pytest.raises(Exception, match=r"(?i)login|auth|401|credentials"):
        client(password, auth=("anyone", "guess"))


def test_accounts_each_have_their_own_password(accounts: KeyedApp) -> None:
    assert "done" in generate(client(accounts, auth=("ada", "pw-ada")))
    with pytest.raises(Exception, match=r"(?i)login|auth|401|credentials"):
        client(accounts, auth=("ada", "pw-bob"))
