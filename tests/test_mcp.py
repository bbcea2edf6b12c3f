"""The studio as an MCP tool server: the tools agents see, their descriptions, and a call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from app_server import RunningApp, app_server_fixture

server = app_server_fixture()
TOOLS = {"generate", "experiment", "list_generations", "get_generation"}


def schema(server: RunningApp) -> list[dict[str, Any]]:
    response = httpx.get(server.url + "gradio_api/mcp/schema", timeout=10)
    response.raise_for_status()
    return response.json()


def test_the_tools_are_the_public_endpoints_with_descriptions(server: RunningApp) -> None:
    tools = {tool["name"]: tool for tool in schema(server)}
    assert set(tools) == TOOLS  # nothing of the page's own events
    generate = tools["generate"]
    assert generate["description"].startswith("Generate images from a prompt")
    properties = generate["inputSchema"]["properties"]
    assert {"model", "prompt", "aspect_ratio", "variants", "apixo_key", "client_id"} <= set(
        properties
    )
    assert "nano-banana-pro" in properties["model"]["description"]
    assert "1 to 4" in properties["variants"]["description"]
    listing = tools["list_generations"]
    assert listing["description"].startswith("List your most recent generations")
    assert listing["inputSchema"]["properties"]["limit"]["type"] == "integer"


async def call_tool(
    server: RunningApp, name: str, arguments: dict[str, Any], progress: Any = None
) -> Any:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(server.url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = {tool.name for tool in (await session.list_tools()).tools}
            assert listed == TOOLS
            return await session.call_tool(name, arguments, progress_callback=progress)


def test_an_agent_generates_and_reads_the_generation_back(server: RunningApp) -> None:
    async def run() -> tuple[Any, Any]:
        made = await call_tool(server, "generate", {"model": "google/gempix2", "prompt": "a tern"})
        text = " ".join(getattr(c, "text", "") for c in made.content)
        listed = await call_tool(server, "list_generations", {"limit": 5})
        return text, listed

    text, listed = asyncio.run(asyncio.wait_for(run(), 60))
    assert "done" in text, text
    entries = json.loads(" ".join(getattr(c, "text", "") for c in listed.content))
    assert entries[0]["prompt"] == "a tern" and entries[0]["state"] == "done"
    assert entries[0]["files"], entries[0]
    assert entries[0]["job_id"] in text  # the job ids come with the status


def test_an_agent_runs_an_experiment_and_gets_its_grid(server: RunningApp) -> None:
    arguments = {
        "prompts": "a tern\na heron",
        "models": ["google/gempix2", "google/gemini-2.5-flash-image"],
    }
    steps: list[str | None] = []

    async def progress(_done: float, _total: float | None, message: str | None) -> None:
        steps.append(message)

    async def run() -> tuple[Any, Any]:
        plain = await call_tool(server, "experiment", arguments)
        # A client that asks for progress gets the outputs apart: the contact sheet as an image.
        followed = await call_tool(server, "experiment", arguments, progress=progress)
        return plain, followed

    plain, followed = asyncio.run(asyncio.wait_for(run(), 120))
    for result in (plain, followed):
        text = " ".join(getattr(c, "text", "") for c in result.content)
        assert not result.isError, text
        assert "4 cells (2 prompts × 2 columns, 1 variant each)" in text
        assert "Finished: 4 of 4 cells settled, 4 images saved" in text
        assert "-contact-sheet.png" in text and ".zip" in text  # links to every file
    images = [c for c in followed.content if getattr(c, "type", "") == "image"]
    assert [image.mimeType for image in images] == ["image/png"]
    assert steps, "no progress was reported"


def test_a_bad_model_gets_a_plain_error(server: RunningApp) -> None:
    result = asyncio.run(
        asyncio.wait_for(
            call_tool(server, "experiment", {"prompts": "a kite", "models": ["dall-e"]}), 30
        )
    )
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.isError
    assert "dall-e" in text, text
