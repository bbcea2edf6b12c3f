"""Image Studio: the composition root. Read settings, build the parts, build the page, launch.

Run `python app.py`. Without DEFAPI_API_KEY / APIXO_API_KEY each service runs on the built-in
simulator (an offline preview with placeholder images).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from studio.config import AppConfig, default_data_dir, load_config

# Set before gradio is imported anywhere: it must not phone home, and its file cache belongs in
# the data folder with everything else the app writes.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_TEMP_DIR", str(default_data_dir(os.environ) / "cache"))
# Uvicorn would otherwise take X-Forwarded-For from any loopback peer as the client's address.
# Which proxies to believe is this app's decision (TRUSTED_PROXIES, studio.visitors): the
# limits on the owner's keys count visitors by address.
os.environ.setdefault("FORWARDED_ALLOW_IPS", "")

import gradio as gr
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from components.browser import CSS, PAGE_JS
from components.handlers import Studio
from components.page import Page, build_page
from studio.backends import Backends
from studio.callbacks import CALLBACK_PATH, CallbackTooLarge, read_callback_body
from studio.experiment_runner import ExperimentRunner
from studio.experiment_store import ExperimentStore
from studio.jobs import JobRunner
from studio.ledger import Ledger
from studio.reference_host import ReferenceHost
from studio.reference_store import ReferenceStore
from studio.spending import describe

log = logging.getLogger("image_studio")

# Gradio's upload cache holds visitors' originals (GPS metadata and all) and copies of what the
# page shows: every 10 minutes, what is older than an hour goes, and all of it at shutdown.
# An original is removed sooner, once its reference is prepared (studio.references
# .discard_upload); a copy Gradio hands out again is touched, so what a page shows stays.
UPLOAD_CACHE_SWEEP = (600, 3600)


@dataclass
class App:
    config: AppConfig
    backends: Backends
    ledger: Ledger
    runner: JobRunner
    studio: Studio
    page: Page

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Runs in the server's event loop: resume unfinished jobs, and close cleanly."""
        resumed = await self.runner.resume_unfinished()
        if resumed:
            log.info("took up %d unfinished job(s) from the ledger", len(resumed))
        # After the jobs: a cell caught mid-send is settled from the jobs the ledger has.
        experiments = await self.studio.experiments.resume_unfinished()
        if experiments:
            log.info("took up %d unfinished experiment(s)", len(experiments))
        sweeper = asyncio.create_task(self.sweep_references())
        yield
        sweeper.cancel()
        await self.studio.experiments.close()  # no more cells are sent; the files are current
        await self.runner.close()
        await self.backends.aclose()
        self.ledger.close()

    async def sweep_references(self, every: float = 600.0) -> None:
        """Delete expired reference files now and then (their URLs no longer resolve)."""
        while True:
            removed = await asyncio.to_thread(self.studio.reference_host.sweep)
            if removed:
                log.info("removed %d expired reference file(s)", removed)
            await asyncio.sleep(every)

    async def receive_callback(self, job_id: str, token: str, request: Request) -> JSONResponse:
        """A service's callback: it only wakes the job's watcher, which re-reads the status.
        Its body is read with a cap (studio.callbacks.MAX_CALLBACK_BYTES) before any parsing."""
        try:
            payload = await read_callback_body(request.headers, request.stream())
        except CallbackTooLarge as exc:
            return JSONResponse({"received": False, "error": str(exc)}, status_code=413)
        woken = await self.runner.receive_callback(job_id, token, payload)
        # The same answer either way: a caller learns nothing about which jobs exist.
        return JSONResponse({"received": True}, headers={"X-Woken": "1" if woken else "0"})

    def routes(self) -> list[tuple[str, Callable[..., object], list[str]]]:
        """The app's own HTTP routes beside Gradio's: (path, endpoint, methods). The callback
        route exists only when callbacks are on (a public address is set): without one no
        service is ever given a callback URL, so the route would only be a door left open."""
        routes: list[tuple[str, Callable[..., object], list[str]]] = [
            ("/refs/{name}", self.serve_reference, ["GET"])
        ]
        if self.config.public_url:
            routes.append((CALLBACK_PATH, self.receive_callback, ["POST"]))
        return routes

    def serve_reference(self, name: str) -> FileResponse:
        """Prepared reference images, by unguessable expiring name, for the services to fetch."""
        path = self.studio.reference_host.resolve(name)
        if path is None:
            raise HTTPException(status_code=404)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})


def build_app(config: AppConfig | None = None, *, backends: Backends | None = None) -> App:
    config = config or load_config()
    for folder in (config.outputs_dir, config.references_dir):
        folder.mkdir(parents=True, exist_ok=True)
    backends = backends or Backends(
        config.catalog,
        config.services,
        simulator_time_scale=config.simulator_time_scale,
        visitor_keys_only=config.spending.visitor_keys_only,
    )
    ledger = Ledger(config.ledger_path, known_services=[s.id for s in config.catalog.services])
    runner = JobRunner(
        backends=backends,
        ledger=ledger,
        outputs_dir=config.outputs_dir,
        deadline=config.watch_deadline,
        public_url=config.public_url,
        rules=config.spending,  # quotas, budget and running caps on the owner's keys
    )
    reference_host = ReferenceHost(config.references_dir, config.public_url)
    reference_store = ReferenceStore(config.kept_references_dir)
    studio = Studio(
        runner=runner,
        reference_host=reference_host,
        multi_user=config.multi_user,
        reference_store=reference_store,
        visitors=config.visitors,
        prices=config.prices,
        experiments=ExperimentRunner(
            runner, ExperimentStore(config.experiments_dir), reference_store, reference_host
        ),
    )
    offline = [config.catalog.service(s).label for s in backends.offline_services()]
    page = build_page(
        studio,
        offline_services=offline,
        browser_secret=config.browser_secret(),
        concurrency_limit=config.concurrency_limit,
    )
    page.demo.queue(default_concurrency_limit=None, max_size=500)
    page.demo.delete_cache = UPLOAD_CACHE_SWEEP  # read by Gradio when it launches
    return App(config, backends, ledger, runner, studio, page)


def launch(app: App, **overrides: object) -> None:
    """Launch without blocking; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are read by Gradio."""
    options: dict[str, object] = {
        "prevent_thread_lock": True,
        "run_history": False,  # it would keep inputs, keys included, in the browser's storage
        "max_threads": 200,
        "max_file_size": "25mb",
        # Results, and the kept references that Recall puts back into the form.
        "allowed_paths": [str(app.config.outputs_dir), str(app.config.kept_references_dir)],
        "app_kwargs": {"lifespan": app.lifespan},
        "theme": gr.themes.Soft(
            font=["ui-sans-serif", "system-ui", "sans-serif"],
            font_mono=["ui-monospace", "monospace"],
        ),
        "css": CSS,
        "js": PAGE_JS,
        "footer_links": ["api"],
        "ssr_mode": False,
        # The public endpoints as MCP tools, at /gradio_api/mcp/ (MCP_SERVER=0 turns it off).
        "mcp_server": app.config.mcp_server,
    }
    if app.config.logins is not None:  # APP_PASSWORD / APP_USERS: the page and the API log in
        options["auth"] = app.config.logins.check
        options["auth_message"] = "This studio is private: log in to use it."
    options.update(overrides)
    app.page.demo.launch(**options)  # type: ignore[arg-type]
    for path, endpoint, methods in app.routes():
        app.page.demo.app.add_api_route(path, endpoint, methods=methods)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO; status polls would drown everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_config()
    except ValueError as exc:  # a setting that cannot be read: say which, and stop
        raise SystemExit(f"Image Studio cannot start: {exc}") from None
    if config.spending.defaults_applied:
        log.info(
            "public, with the owner's keys: %s take their defaults (%s); see the README",
            ", ".join(config.spending.defaults_applied),
            describe(config.spending),
        )
    app = build_app(config)
    launch(app)
    app.page.demo.block_thread()


if __name__ == "__main__":
    main()
