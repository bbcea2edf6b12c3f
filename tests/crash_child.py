"""Start one generation, then die by SIGKILL at a chosen point (run as a subprocess).

    python tests/crash_child.py --data-dir DIR --base-url http://127.0.0.1:PORT --point POINT
        [--model M] [--prompt TEXT] [--owner ID] [--pace S]

The runner is built as app.py builds it, except that both services have an API key and a base
URL pointing at a standalone simulator (`python -m simulator`): the *real* clients
talk to it over HTTP, so its tasks outlive this process. `--pace` is the simulator's time scale;
the poll schedules shrink by the same factor, as they do for the built-in simulator.

The product code is unchanged: the kill points are wrappers installed here, in this process
only. Each prints `killed at POINT` just before `os.kill(os.getpid(), signal.SIGKILL)`.

    before_submit             the ledger row is written (`recorded`); mark_submitting not yet
    in_submit                 `submitting` is written; the POST is about to be sent (it is not)
    after_submit_no_task_id   the POST answered with a task id; the ledger has not stored it
    after_submit_with_task_id the task id is stored (`queued`)
    watching                  the first status read answered
    downloading               the result's temp file is written and fsynced; not yet renamed
    saved_not_recorded        the result file is in place; the ledger has not recorded it
    kept_not_done             the result is kept and recorded; the job is not yet `done`

With `--visitor-key` the environment has no keys: the job is started with a visitor's own key
(as the page's key fields do), which the app never stores.

Exit status: -9 (killed) when the point was reached; 3 when the job ended without reaching it;
4 when it did not end in time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from providers.capabilities import ImageSettings  # noqa: E402
from providers.services import CATALOG  # noqa: E402
from providers.settings import ServiceConfig  # noqa: E402
from providers.transport import ServiceTransport  # noqa: E402
from studio.backends import Backend, Backends  # noqa: E402
from studio.config import load_config  # noqa: E402
from studio.jobs import JobRunner, JobSpec  # noqa: E402
from studio.ledger import Ledger  # noqa: E402

API_KEY = "sim-crash-test-key"
POINTS = (
    "before_submit",
    "in_submit",
    "after_submit_no_task_id",
    "after_submit_with_task_id",
    "watching",
    "downloading",
    "saved_not_recorded",
    "kept_not_done",
)


def service_env(data_dir: Path, base_url: str, *, keyed: bool = True) -> dict[str, str]:
    """The environment app.py would read: both services on the simulator, keyed or not."""
    key = API_KEY if keyed else ""
    return {
        "DATA_DIR": str(data_dir),
        "DEFAPI_API_KEY": key,
        "DEFAPI_BASE_URL": base_url,
        "APIXO_API_KEY": key,
        "APIXO_BASE_URL": base_url,
        "WATCH_DEADLINE": "30",
    }


class PacedBackends(Backends):
    """Real clients (with a key) whose poll schedules run at the standalone simulator's pace.
    Without any key a service still falls back to the built-in simulator, unchanged."""

    def __init__(self, configs: dict[str, ServiceConfig], *, pace: float, **options: Any) -> None:
        super().__init__(CATALOG, configs, **options)
        self.pace = pace

    def for_service(self, service: str, visitor_key: str | None = None) -> Backend:
        backend = super().for_service(service, visitor_key)
        if backend.offline:
            return backend
        return dataclasses.replace(backend, time_scale=self.pace)


def build_runner(data_dir: Path, base_url: str, pace: float, *, keyed: bool = True) -> JobRunner:
    """A JobRunner wired as app.build_app wires it (the same parts, the same trust)."""
    config = load_config(service_env(data_dir, base_url, keyed=keyed))
    assert all(c.has_key is keyed for c in config.services.values())
    for folder in (config.outputs_dir, config.references_dir):
        folder.mkdir(parents=True, exist_ok=True)
    backends = PacedBackends(config.services, pace=pace)
    return JobRunner(
        backends=backends,
        ledger=Ledger(config.ledger_path),
        outputs_dir=config.outputs_dir,
        deadline=config.watch_deadline,
    )


async def close_runner(runner: JobRunner) -> None:
    await runner.close()
    await runner.backends.aclose()
    if runner.backends.simulator is not None:
        await runner.backends.simulator.aclose()
    runner.ledger.close()


def die(point: str) -> None:
    print(f"killed at {point}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _before(original: Callable[..., Any], point: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        die(point)
        return original(*args, **kwargs)  # pragma: no cover - never reached

    return wrapper


def _after(original: Callable[..., Any], point: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        die(point)
        return result  # pragma: no cover - never reached

    return wrapper


def arm(point: str, runner: JobRunner) -> None:
    """Install the tripwire for `point` (in this process only)."""
    ledger = runner.ledger
    if point == "before_submit":
        ledger.mark_submitting = _before(ledger.mark_submitting, point)  # type: ignore[method-assign]
    elif point == "in_submit":
        original_post = ServiceTransport.post_once

        async def post_once(self: ServiceTransport, *args: Any, **kwargs: Any) -> Any:
            die(point)
            return await original_post(self, *args, **kwargs)  # pragma: no cover

        ServiceTransport.post_once = post_once  # type: ignore[method-assign]
    elif point == "after_submit_no_task_id":
        ledger.set_task_id = _before(ledger.set_task_id, point)  # type: ignore[method-assign]
    elif point == "after_submit_with_task_id":
        ledger.set_task_id = _after(ledger.set_task_id, point)  # type: ignore[method-assign]
    elif point == "watching":
        original_get = ServiceTransport.get_with_retry

        async def get_with_retry(self: ServiceTransport, *args: Any, **kwargs: Any) -> Any:
            answer = await original_get(self, *args, **kwargs)
            die(point)
            return answer  # pragma: no cover

        ServiceTransport.get_with_retry = get_with_retry  # type: ignore[method-assign]
    elif point == "downloading":
        # write_atomically writes and fsyncs a hidden temp file, then os.replace()s it onto the
        # final name: die at that rename, for files going into the outputs folder only.
        outputs = runner.outputs_dir.resolve()
        original_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if Path(dst).resolve().is_relative_to(outputs):
                die(point)
            original_replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif point == "saved_not_recorded":
        ledger.record_result = _before(ledger.record_result, point)  # type: ignore[method-assign]
    elif point == "kept_not_done":
        ledger.record_result = _after(ledger.record_result, point)  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown kill point {point!r}; choose one of {', '.join(POINTS)}")


def spec_for(model: str, prompt: str) -> JobSpec:
    if model == "nano-banana-pro":
        return JobSpec(
            model=model,
            prompt=prompt,
            settings=ImageSettings(
                aspect_ratio="1:1", resolution="1K", output_format="png", routing="auto"
            ),
        )
    return JobSpec(model=model, prompt=prompt)


async def main(args: argparse.Namespace) -> int:
    keyed = not args.visitor_key
    runner = build_runner(Path(args.data_dir), args.base_url, args.pace, keyed=keyed)
    try:
        arm(args.point, runner)
        [job_id] = await runner.start(
            spec_for(args.model, args.prompt),
            owner=args.owner,
            visitor_keys=None if keyed else {CATALOG.service_of(args.model).id: API_KEY},
        )
        print(f"job {job_id}", flush=True)
        try:
            async with asyncio.timeout(args.timeout):
                async for progresses in runner.follow([job_id]):
                    last = progresses[0]
        except TimeoutError:
            print("the job did not end in time", flush=True)
            return 4
        print(f"not killed: the job ended {last.state.value}: {last.message}", flush=True)
        return 3
    finally:
        await close_runner(runner)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--base-url", required=True, help="the standalone simulator's origin")
    parser.add_argument("--point", required=True, choices=POINTS)
    parser.add_argument("--model", default="nano-banana-pro")
    parser.add_argument("--prompt", default="a lighthouse in a storm")
    parser.add_argument("--owner", default="")
    parser.add_argument("--pace", type=float, default=0.02, help="the simulator's time scale")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--visitor-key", action="store_true", help="no keys in the environment; the visitor's"
    )
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parser().parse_args())))
