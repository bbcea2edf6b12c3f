"""Run the simulator as a server: python -m simulator --port 8900."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from simulator import Simulator, SimulatorConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve the GemPix2 and Nano Banana Pro API simulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiplies every simulated duration"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this Bearer token (repeatable); default: any non-empty token",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--public-url", default=None, help="base of result URLs (default: the request's own)"
    )
    parser.add_argument(
        "--gempix2-data-uri", action="store_true", help="GemPix2 results as data: URIs"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every API response"
    )
    parser.add_argument(
        "--reuse-renders",
        action="store_true",
        help="draw one image per model and settings and serve it for every such task",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    config = SimulatorConfig(
        time_scale=args.time_scale,
        seed=args.seed,
        api_keys=frozenset(args.api_keys) if args.api_keys else None,
        public_url=args.public_url,
        gempix2_data_uri=args.gempix2_data_uri,
        reuse_renders=args.reuse_renders,
    )
    simulator = Simulator(config)
    simulator.faults.latency = args.latency
    uvicorn.run(simulator.app, host=args.host, port=args.port, log_level=args.log_level.lower())


if __name__ == "__main__":
    main()
