"""The app's settings, read once from the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from providers.catalog import Catalog
from providers.services import CATALOG
from providers.settings import ServiceConfig, service_configs
from studio.logins import Logins, logins_from_env
from studio.spending import (
    NO_LIMITS,
    PriceTable,
    SpendingRules,
    parse_price_table,
    spending_rules_from_env,
)
from studio.visitors import VisitorPolicy, parse_trusted_proxies

PROJECT_DIR = Path(__file__).resolve().parent.parent
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class AppConfig:
    data_dir: Path
    services: dict[str, ServiceConfig] = field(repr=False)
    catalog: Catalog = CATALOG
    public_url: str | None = None
    multi_user: bool = False
    simulator_time_scale: float = 0.25
    watch_deadline: float = 600.0
    # Generations running at once across all visitors; None = no limit (the work is remote and
    # I/O-bound). Gradio's own default would be 1, making each visitor wait for the others.
    concurrency_limit: int | None = None
    # The public endpoints (/generate and the history tools) as an MCP server for agents.
    mcp_server: bool = True
    # The limits on the owner's keys, who a visitor is, who may log in, and the credits shown
    # as an estimate for services that report none (studio.spending, .visitors, .logins).
    spending: SpendingRules = NO_LIMITS
    visitors: VisitorPolicy = field(default_factory=VisitorPolicy)
    logins: Logins | None = field(default=None, repr=False)
    prices: PriceTable = field(default_factory=PriceTable)

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def references_dir(self) -> Path:
        return self.data_dir / "references"  # hosted for the services, for an hour

    @property
    def kept_references_dir(self) -> Path:
        return self.data_dir / "kept-references"  # by hash, as long as history uses them

    @property
    def experiments_dir(self) -> Path:
        return self.data_dir / "experiments"  # each experiment's plan and cells, as JSON

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    def browser_secret(self) -> str:
        """A per-installation secret for browser storage, made once and kept in the data dir.

        Gradio ships it to the browser, so it only obfuscates; fixing it lets the stored key
        survive restarts (a random secret per start would make it unreadable)."""
        path = self.data_dir / "browser-storage-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()


def default_data_dir(env: Mapping[str, str]) -> Path:
    """`DATA_DIR`, else `/data` on a Hugging Face Space with persistent storage, else ./data."""
    if env.get("DATA_DIR"):
        return Path(env["DATA_DIR"]).expanduser().resolve()
    if env.get("SPACE_ID") and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/image-studio")
    return PROJECT_DIR / "data"


def public_url_from_env(env: Mapping[str, str]) -> str | None:
    """`PUBLIC_URL`, else the first of `SPACE_HOST` on Hugging Face Spaces, else None.

    A private Space is not fetchable by the services even though SPACE_HOST is set; set
    PUBLIC_URL to a reachable address in that case.
    """
    public = (env.get("PUBLIC_URL") or "").strip().rstrip("/")
    if public:
        return public
    hosts = [h.strip() for h in (env.get("SPACE_HOST") or "").split(",") if h.strip()]
    return f"https://{hosts[0]}" if hosts else None


def load_config(environ: Mapping[str, str] | None = None, catalog: Catalog = CATALOG) -> AppConfig:
    """The settings; raises ValueError with a sentence naming a variable it cannot read."""
    env = os.environ if environ is None else environ
    multi = env.get("MULTI_USER", "").lower()
    # Shared unless explicitly single-user: on a Space, or when listening beyond this machine.
    listens_publicly = (env.get("GRADIO_SERVER_NAME") or "127.0.0.1") not in _LOOPBACK_NAMES
    on_space = bool(env.get("SPACE_ID"))
    services = service_configs(catalog, env)
    logins = logins_from_env(env)
    return AppConfig(
        data_dir=default_data_dir(env),
        services=services,
        catalog=catalog,
        public_url=public_url_from_env(env),
        multi_user=multi in ("1", "true", "yes")
        or (multi == "" and (bool(env.get("SPACE_ID")) or listens_publicly)),
        simulator_time_scale=float(env.get("SIMULATOR_TIME_SCALE") or 0.25),
        watch_deadline=float(env.get("WATCH_DEADLINE") or 600),
        concurrency_limit=int(env["CONCURRENCY_LIMIT"]) if env.get("CONCURRENCY_LIMIT") else None,
        mcp_server=env.get("MCP_SERVER", "1").lower() not in ("0", "false", "no", "off"),
        spending=spending_rules_from_env(
            env,
            public=on_space or listens_publicly,
            owner_keys=any(config.has_key for config in services.values()),
        ),
        visitors=VisitorPolicy(
            parse_trusted_proxies(env.get("TRUSTED_PROXIES"), on_space=on_space),
            named_logins=bool(logins and logins.named),
        ),
        logins=logins,
        prices=parse_price_table(env.get("PRICE_TABLE"), catalog.models),
    )
