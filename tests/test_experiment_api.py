"""`/experiment` over HTTP as an API caller (gradio_client) and an agent (MCP) see it, and the
app taking up an experiment its last run left unfinished.

No key is set, so both services run on the in-process simulator at 1/100 of real time.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from app_server import RunningApp, app_server_fixture, running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from providers.services import CATALOG
from studio.experiment_prompts import read_prompts
from studio.experiment_store import ExperimentRun, ExperimentStore, RunState
from studio.experiments import plan

pytestmark = [pytest.mark.slow]

server = app_server_fixture({"MULTI_USER": "1"})
CLIENT_ID = "experiment-api-caller-0123456789abcdef"


@pytest.fixture(scope="module")
def client(server: RunningApp, tmp_path_factory: pytest.TempPathFactory) -> Client:
    downloads = tmp_path_factory.mktemp("downloads")
    return Client(server.url, analytics_enabled=False, verbose=False, download_files=downloads)


def test_an_experiment_over_the_api_returns_the_grid_files(client: Client, tmp_path: Path) -> None:
    prompts_csv = tmp_path / "more.csv"
    prompts_csv.write_text('prompt,aspect_ratio\n"a kite, seen from below",16:9\n')
    status, sheet, manifest, archive = client.predict(
        prompts="a tern on a post\n\na lighthouse at dusk",
        models=["google/gempix2", "nano-banana-pro"],
        aspect_ratios=["1:1"],
        prompts_csv=handle_file(str(prompts_csv)),
        client_id=CLIENT_ID,
        api_name="/experiment",
    )
    assert status.startswith("Experiment ")
    assert "6 cells (3 prompts × 2 columns, 1 variant each): 6 tasks" in status
    assert "Finished: 6 of 6 cells settled" in status
    with Image.open(sheet) as image:
        assert json.loads(image.text["columns"]) == [  # type: ignore[attr-defined]
            "GemPix2 (Nano Banana)",
            "Nano Banana Pro · 1:1",
        ]
        assert json.loads(image.text["rows"])[2] == "a kite, seen from below"  # type: ignore[attr-defined]
    csv_path, json_path = sorted(manifest, key=lambda p: Path(p).suffix)
    lines = list(csv.DictReader(io.StringIO(Path(csv_path).read_text())))
    assert len(lines) == 6 and all(line["state"] == "done" for line in lines)
    assert len(json.loads(Path(json_path).read_text())["tasks"]) == 6
    with zipfile.ZipFile(archive) as zipped:
        images = [n for n in zipped.namelist() if n.startswith("images/")]
    assert sorted(images) == sorted(line["file"] for line in lines)

    # Its cells are ordinary generations in the caller's history.
    listed = json.loads(client.predict(limit=10, client_id=CLIENT_ID, api_name="/list_generations"))
    assert {entry["prompt"] for entry in listed} == {
        "a tern on a post",
        "a lighthouse at dusk",
        "a kite, seen from below",
    }
    assert len(listed) == 6


def test_an_experiment_that_cannot_run_is_refused_with_a_sentence(client: Client) -> None:
    with pytest.raises(AppError, match="Nano Banana Pro cannot take aspect ratio '7:3'"):
        client.predict(
            prompts="a kite",
            models=["nano-banana-pro"],
            aspect_ratios=["7:3"],
            api_name="/experiment",
        )
    with pytest.raises(AppError, match="Pick at least one model"):
        client.predict(prompts="a kite", models=[], api_name="/experiment")


def test_the_experiment_tool_is_described_for_agents(server: RunningApp) -> None:
    tools = httpx.get(server.url + "gradio_api/mcp/schema", timeout=10).json()
    [tool] = [t for t in tools if t["name"] == "experiment"]
    assert tool["description"].startswith("Run a prompt experiment")
    properties = tool["inputSchema"]["properties"]
    assert properties["models"]["type"] == "array"
    assert "nano-banana-pro" in properties["models"]["description"]
    assert properties["variants"]["type"] == "integer"
    assert all(p.get("description") for p in properties.values())


def test_the_app_takes_up_an_experiment_left_unfinished(tmp_path: Path) -> None:
    # As if the app had stopped right after persisting the plan: nothing was sent yet.
    rows, _ = read_prompts("a fox\nan owl")
    planned = plan(CATALOG, rows, ["google/gempix2", "google/gemini-2.5-flash-image"])
    store = ExperimentStore(tmp_path / "experiments")
    store.save(ExperimentRun(plan=planned, owner="", created_at=1.0))

    with running_app(tmp_path) as app:
        studio = app.app.studio
        sim = app.app.backends.simulator
        assert sim is not None

        def finished() -> bool:
            saved = store.load(planned.experiment_id, None)
            return saved is not None and saved.state is RunState.FINISHED

        started = time.monotonic()
        while not finished() and time.monotonic() - started < 30:
            time.sleep(0.05)
        assert finished()
        assert sim.submission_count == 4
        assert len(studio.runner.ledger.history(None, limit=10)) == 4
