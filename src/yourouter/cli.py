"""The `yourouter` command: serve, check-config, keys, usage, routes, simulate."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from yourouter.config import SETTINGS_ENV, ConfigError, Settings, load_settings, settings_from_mapping
from yourouter.prefork import STARTUP_FAILURE

if TYPE_CHECKING:
    from yourouter.app import Gateway

app = typer.Typer(add_completion=False, no_args_is_help=True, help="YouRouter: a self-hosted LLM API gateway.")
keys_app = typer.Typer(no_args_is_help=True, help="Manage client keys (stored hashed in the database).")
app.add_typer(keys_app, name="keys")
# Not a terminal (pipes, scripts): wide enough that tables never wrap ids.
console = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Config file (default: $YOUROUTER_CONFIG, "
                                                   "then ./yourouter.yaml, then environment variables).")]
DEMO_MODELS = {"openai": ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"],
               "anthropic": ["claude-sonnet-4-5"], "google": ["gemini-2.5-flash", "gemini-embedding-001"]}


def _settings(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _demo_settings(base: Settings | None, host: str, port: int) -> tuple[Settings, str]:
    demo_key = "sk-yr-demo-" + secrets.token_hex(12)
    raw: dict[str, Any] = base.model_dump() if base is not None else {}
    if base is None or not base.database_url or base.database_url == Settings().database_url:
        raw["database_url"] = "sqlite:///" + str(Path(tempfile.gettempdir()) / "yourouter-demo.db")
    raw.update(host=host, port=port, demo=True)
    raw["keys"] = [*raw.get("keys", []), {"key": demo_key, "name": "demo", "models": ["*"]}]
    upstream = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/_demo/upstream"
    raw["providers"] = [*raw.get("providers", []),
                        {"name": "demo-openai", "vendor": "openai", "type": "openai", "base_url": upstream + "/v1",
                         "api_key": "sk-simulator", "models": DEMO_MODELS["openai"]},
                        {"name": "demo-anthropic", "vendor": "anthropic", "type": "anthropic", "base_url": upstream,
                         "api_key": "sk-simulator", "models": DEMO_MODELS["anthropic"]},
                        {"name": "demo-google", "vendor": "google", "type": "google", "base_url": upstream,
                         "api_key": "sk-simulator", "models": DEMO_MODELS["google"]}]
    if importlib.util.find_spec("botocore") is not None:  # Bedrock signs with botocore (the `bedrock` extra)
        from yourouter.simulators.bedrock import ACCESS_KEY_ID

        raw["providers"].append({"name": "demo-bedrock", "vendor": "aws", "base_url": upstream, "region": "us-east-1",
                                 "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": "sk-simulator",
                                 "models": [{"name": "claude-3-5-haiku",
                                             "upstream": "anthropic.claude-3-5-haiku-20241022-v1:0"}]})
    return settings_from_mapping(raw, env={}), demo_key


def _uvicorn_options(settings: Settings, log_level: str) -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {"host": settings.host, "port": settings.port, "loop": loop, "http": "httptools", "access_log": False,
            "log_level": log_level.lower(), "timeout_keep_alive": 75, "timeout_graceful_shutdown": 30,
            "lifespan": "on", "server_header": False,  # no `server: uvicorn`: one header less, nothing disclosed
            "proxy_headers": False}  # nothing reads the client address or scheme: one ASGI layer less per request


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config: 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Wire the gateway to a built-in simulator (no keys needed).")]
    = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the gateway."""
    import uvicorn

    from yourouter.observability.logs import configure_logging

    configure_logging(log_level)
    settings = _settings(config) if (config or not demo or os.environ.get("YOUROUTER_CONFIG")
                                     or Path("yourouter.yaml").exists()) else None
    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    if settings is not None and overrides:
        settings = settings.model_copy(update=overrides)
    demo_key = None
    if demo:
        settings, demo_key = _demo_settings(settings, host or (settings.host if settings else "127.0.0.1"),
                                            port or (settings.port if settings else 8080))
        if workers:
            settings = settings.model_copy(update={"workers": workers})
    assert settings is not None
    if settings.workers > 1 and settings.limits.backend is None and any(
            k.rpm or k.tpm or k.max_concurrency or k.budget_usd is not None for k in settings.keys):
        err.print("[yellow]warning:[/yellow] with several workers and `limits.backend: memory`, every worker counts "
                  "limits and budgets on its own; use a redis:// backend to share them.", highlight=False)
    if not settings.providers:
        err.print("[yellow]warning:[/yellow] no providers configured; set OPENAI_API_KEY, write a config file, "
                  "or try --demo.", highlight=False)

    def announce() -> None:
        """Printed once the socket accepts connections, so the demo's curl, pasted at once, is answered."""
        base = f"http://{settings.host}:{settings.port}"
        err.print(f"YouRouter listening on {base} ({settings.workers} worker(s), "
                  f"{len(settings.providers)} provider(s))", highlight=False)
        if demo_key:
            err.print(f"Demo key: {demo_key}\nTry:\n  curl {base}/v1/chat/completions -H 'Authorization: Bearer "
                      f"{demo_key}' -H 'Content-Type: application/json' -d '{{\"model\": \"gpt-4o-mini\", "
                      f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'",
                      highlight=False, soft_wrap=True)

    options = _uvicorn_options(settings, "warning" if log_level.lower() == "info" else log_level)
    if settings.workers > 1 and hasattr(os, "fork"):
        _serve_forked(settings, options, announce)
    elif settings.workers > 1:  # no fork(): uvicorn spawns fresh interpreters that each import the app
        _migrate(settings)
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        announce()  # before uvicorn.run binds (here uvicorn binds, then spawns): the banner may come a moment early
        uvicorn.run("yourouter.app:app_from_environment", factory=True, workers=settings.workers, **options)
    else:
        _serve_one(_gateway(settings), options, announce)


def _serve_one(gateway: Gateway, options: dict[str, Any], announce: Callable[[], None]) -> None:
    """`uvicorn.run` for one process, with `announce` called once the socket listens (uvicorn's own line is at
    INFO, which `serve` keeps quiet)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                announce()

    server = Server(uvicorn.Config(gateway, **options))
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown; `uvicorn.run` ignores it too
        pass
    if not server.started:  # the gateway's start-up failed (already logged), or the port was taken
        raise typer.Exit(STARTUP_FAILURE)


def _gateway(settings: Settings) -> Gateway:
    from yourouter.app import Gateway  # here, not at the top: `yourouter keys ...` need not import the app

    try:
        return Gateway(settings)
    except ConfigError as exc:  # e.g. a Bedrock deployment without botocore or AWS credentials
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _migrate(settings: Settings) -> None:
    """The parent's one migration before the workers start; an unreachable database is an error, not a traceback."""
    from yourouter.storage.db import create_engine, migrate

    async def migrate_once() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(migrate_once())
    except Exception as exc:
        err.print(f"[red]error:[/red] cannot prepare the database ({settings.database_url.split('://')[0]}): "
                  f"{type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(STARTUP_FAILURE) from None


def _serve_forked(settings: Settings, options: dict[str, Any], announce: Callable[[], None]) -> None:
    """Import and migrate here, once; then fork the workers (see yourouter/prefork.py)."""
    from yourouter import prefork
    from yourouter.app import Gateway  # noqa: F401  imported before the fork, so no worker imports it again

    prefork.preload_server_modules(options)
    _migrate(settings)
    try:
        sock = prefork.bind(settings.host, settings.port)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {settings.host}:{settings.port}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    announce()  # connections wait in the listen backlog until a worker accepts them

    def build() -> Gateway:
        try:
            return _gateway(settings)
        except typer.Exit as exc:
            raise SystemExit(exc.exit_code) from None

    code = prefork.Supervisor(build, options, settings.workers, sock).run()
    if code:
        raise typer.Exit(code)


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate a config file without starting the gateway."""
    settings = _settings(config)
    from yourouter.providers.registry import build_provider

    try:
        for provider in settings.providers:
            build_provider(provider)  # what only building tells: botocore present, AWS credentials found
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"OK: {len(settings.providers)} provider(s), {len(settings.keys)} static key(s), "
                  f"database {settings.database_url.split('://')[0]}", highlight=False)


def _key_store(settings: Settings) -> Any:
    from yourouter.auth.keys import KeyStore
    from yourouter.storage.db import create_engine, migrate
    from yourouter.storage.repositories import KeyRepository

    class _Session:
        async def __aenter__(self) -> KeyStore:
            self.engine = create_engine(settings.database_url)
            await migrate(self.engine)
            return KeyStore([], KeyRepository(self.engine), 0)

        async def __aexit__(self, *exc: object) -> None:
            await self.engine.dispose()

    return _Session()


Csv = Annotated[str | None, typer.Option(help="Comma-separated; '*' = all.")]
Limit = Annotated[int | None, typer.Option(min=0, help="0 = unlimited.")]


def _key_changes(models: str | None, vendors: str | None, rpm: int | None, tpm: int | None,
                 max_concurrency: int | None, budget_usd: float | None, budget_period: str | None,
                 expires_at: str | None, disabled: bool | None, metadata: str | None) -> dict[str, Any]:
    """The attributes given on the command line (validated as `KeyAttributes`), for create and update."""
    from pydantic import ValidationError

    from yourouter.config.schema import KeyAttributes

    raw: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "max_concurrency": max_concurrency, "budget_usd": budget_usd,
                           "budget_period": budget_period, "expires_at": expires_at, "disabled": disabled}
    raw = {name: value for name, value in raw.items() if value is not None}
    for name in ("rpm", "tpm", "max_concurrency"):
        if raw.get(name) == 0:
            raw[name] = None  # 0 on the command line lifts the limit
    for name, value in (("models", models), ("vendors", vendors)):
        if value is not None:
            raw[name] = [item.strip() for item in value.split(",") if item.strip()]
    if budget_period == "lifetime":
        raw["budget_period"] = None
    if expires_at == "never":
        raw["expires_at"] = None
    if metadata is not None:
        raw["metadata"] = json.loads(metadata)
    try:
        validated = KeyAttributes.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]error:[/red] {'.'.join(map(str, first['loc']))}: {first['msg']}", highlight=False)
        raise typer.Exit(2) from None
    return validated.model_dump(include=set(raw))


def _print_key(view: dict[str, Any]) -> None:
    for name, value in view.items():
        if value not in (None, [], {}, ["*"]) or name in ("models", "status"):
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            console.print(f"{name + ':':<17}{shown}", highlight=False, soft_wrap=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (shown in logs and usage).")],
    models: Csv = None, vendors: Csv = None, rpm: Limit = None, tpm: Limit = None, max_concurrency: Limit = None,
    budget_usd: Annotated[float | None, typer.Option(min=0, help="Budget in USD.")] = None,
    budget_period: Annotated[str | None, typer.Option(help="day, month or lifetime (default).")] = None,
    expires_at: Annotated[str | None, typer.Option(help="ISO time (UTC unless it has an offset).")] = None,
    metadata: Annotated[str | None, typer.Option(help="A JSON object.")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key; its value is printed once and never stored."""
    from yourouter.config.schema import KeyAttributes
    from yourouter.surfaces.admin import key_view

    settings = _settings(config)
    attributes = KeyAttributes.model_validate(_key_changes(models, vendors, rpm, tpm, max_concurrency, budget_usd,
                                                           budget_period, expires_at, None, metadata))

    async def run() -> Any:
        async with _key_store(settings) as store:
            return await store.create(name, attributes)

    created = asyncio.run(run())
    _print_key({**key_view(created.record), "key": created.key})
    err.print("Store the key now: it cannot be shown again.")


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    models: Csv = None, vendors: Csv = None, rpm: Limit = None, tpm: Limit = None, max_concurrency: Limit = None,
    budget_usd: Annotated[float | None, typer.Option(min=0, help="Budget in USD.")] = None,
    budget_period: Annotated[str | None, typer.Option(help="day, month or lifetime.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="ISO time, or `never`.")] = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled", help="Turn the key off or on.")] = None,
    metadata: Annotated[str | None, typer.Option(help="A JSON object (replaces the old one).")] = None,
    config: ConfigOption = None,
) -> None:
    """Change a key's attributes (only those given); applies within key_cache_ttl_s in running gateways."""
    from yourouter.surfaces.admin import key_view

    settings = _settings(config)
    changes = _key_changes(models, vendors, rpm, tpm, max_concurrency, budget_usd, budget_period, expires_at,
                           disabled, metadata)

    async def run() -> Any:
        async with _key_store(settings) as store:
            return await store.update(key_id, changes, name=name)

    record = asyncio.run(run())
    if record is None:
        err.print(f"[red]error:[/red] no active key with id {key_id}", highlight=False)
        raise typer.Exit(1)
    _print_key(key_view(record))


@keys_app.command("rotate")
def keys_rotate(key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
                config: ConfigOption = None) -> None:
    """Replace a key's secret (same id, limits and spend); the new value is printed once."""
    from yourouter.surfaces.admin import key_view

    settings = _settings(config)

    async def run() -> Any:
        async with _key_store(settings) as store:
            return await store.rotate(key_id)

    rotated = asyncio.run(run())
    if rotated is None:
        err.print(f"[red]error:[/red] no active key with id {key_id}", highlight=False)
        raise typer.Exit(1)
    _print_key({**key_view(rotated.record), "key": rotated.key})
    err.print("Store the key now: it cannot be shown again. The old one stops working.")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List keys (never their values)."""
    settings = _settings(config)

    async def run() -> Any:
        async with _key_store(settings) as store:
            return await store.all()

    table = Table("id", "name", "prefix", "models", "vendors", "rpm", "tpm", "budget", "expires", "created", "status")

    def budget(amount: Any, period: str | None) -> str:
        return "-" if amount is None else f"${amount:f}".rstrip("0").rstrip(".") + (f"/{period}" if period else "")

    for record in asyncio.run(run()):
        status = "revoked" if record.revoked_at else "disabled" if record.disabled else "active"
        table.add_row(record.id, record.name, record.key_prefix + "…", ",".join(record.models),
                      ",".join(record.vendors), str(record.rpm or "-"), str(record.tpm or "-"),
                      budget(record.budget_usd, record.budget_period),
                      record.expires_at.strftime("%Y-%m-%d %H:%M") if record.expires_at else "-",
                      record.created_at.strftime("%Y-%m-%d %H:%M"), status)
    for key in settings.keys:
        table.add_row("static:" + key.name, key.name, "(config)", ",".join(key.models), ",".join(key.vendors),
                      str(key.rpm or "-"), str(key.tpm or "-"), budget(key.budget_usd, key.budget_period),
                      key.expires_at.strftime("%Y-%m-%d %H:%M") if key.expires_at else "-", "-",
                      "disabled" if key.disabled else "active")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
                config: ConfigOption = None) -> None:
    """Revoke a key: it stops working at once in this process, within key_cache_ttl_s elsewhere."""
    settings = _settings(config)

    async def run() -> Any:
        async with _key_store(settings) as store:
            return await store.revoke(key_id)

    record = asyncio.run(run())
    if record is None:
        err.print(f"[red]error:[/red] no key with id {key_id}", highlight=False)
        raise typer.Exit(1)
    console.print(f"revoked {record.id} ({record.name})", highlight=False)


@app.command()
def usage(
    key: Annotated[str | None, typer.Option(help="Only this key (by name).")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (as clients named it).")] = None,
    vendor: Annotated[str | None, typer.Option(help="Only this vendor.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint (e.g. chat.completions).")] = None,
    since: Annotated[str | None, typer.Option(help="ISO date or time, UTC unless it has an offset.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date or time (exclusive).")] = None,
    group_by: Annotated[str | None, typer.Option(help="day (UTC), model, key, vendor or endpoint.")] = None,
    output: Annotated[str, typer.Option("--format", help="table, json (as GET /admin/usage) or csv (one line per "
                                                         "group, no totals line).")] = "table",
    config: ConfigOption = None,
) -> None:
    """Report usage from the ledger: requests, tokens, cost and errors, in total and per group."""
    from decimal import Decimal

    from yourouter.storage.db import create_engine, migrate
    from yourouter.storage.reports import UsageQuery, UsageQueryError, UsageReport, UsageSummary, UsageTotals

    if output not in ("table", "json", "csv"):
        err.print(f"[red]error:[/red] --format must be table, json or csv, not {output!r}", highlight=False)
        raise typer.Exit(2)
    options = {"key": key, "model": model, "vendor": vendor, "endpoint": endpoint, "since": since, "until": until,
               "group_by": group_by}
    try:
        query = UsageQuery.parse({name: value for name, value in options.items() if value is not None})
    except UsageQueryError as exc:
        err.print(f"[red]error:[/red] --{exc.param.replace('_', '-')}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    settings = _settings(config)

    async def run() -> UsageSummary:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return await UsageReport(engine).summarize(query)
        finally:
            await engine.dispose()

    summary = asyncio.run(run())
    if output == "json":
        sys.stdout.write(json.dumps(summary.as_dict(), indent=2) + "\n")
        return

    def cells(totals: UsageTotals) -> list[str]:
        cost = f"{totals.cost_usd.quantize(Decimal('1e-9')):f}"
        return [str(totals.requests), str(totals.prompt_tokens), str(totals.completion_tokens),
                str(totals.cached_tokens), cost, str(totals.errors)]

    measures = ["requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "errors"]
    if output == "csv":  # data only: the groups' lines add up to the totals, so no totals line
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([group_by, *measures] if group_by else measures)
        for row in summary.rows:
            writer.writerow([row.group or "", *cells(row.totals)])
        if not group_by:
            writer.writerow(cells(summary.totals))
        return
    window = f"{query.since.isoformat() if query.since else 'the start'} to " \
             f"{query.until.isoformat() if query.until else 'now'}"
    table = Table(*([group_by] if group_by else []), title=f"Usage from {window}")
    for name in measures:
        table.add_column(name.replace("_", " "), justify="right")
    for index, row in enumerate(summary.rows):
        table.add_row(row.group or "(none)", *cells(row.totals), end_section=index == len(summary.rows) - 1)
    table.add_row(*(["total"] if group_by else []), *cells(summary.totals), style="bold")
    console.print(table)


@app.command()
def routes(
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option(help="A running gateway (e.g. http://127.0.0.1:8080): show its live "
                                                 "health via /admin/routes with the master key.")] = None,
) -> None:
    """Print the catalog: model -> deployments with priority, and (with --url) health and cooldown state."""
    import urllib.request

    from yourouter.providers.registry import build_provider
    from yourouter.routing.catalog import Catalog
    from yourouter.surfaces.admin import routes_view

    settings = _settings(config)
    if url:
        if not settings.master_key:
            err.print("[red]error:[/red] --url needs the master_key from the config", highlight=False)
            raise typer.Exit(2)
        request = urllib.request.Request(url.rstrip("/") + "/admin/routes",
                                         headers={"Authorization": f"Bearer {settings.master_key}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                view = json.loads(response.read())
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot read {url}/admin/routes: {exc}", highlight=False)
            raise typer.Exit(1) from None
    else:
        view = routes_view(Catalog(build_provider(p) for p in settings.providers), None)
    table = Table("model", "deployment", "vendor", "type", "upstream", "priority", "state", "in flight",
                  "ttfb ms", "cooldown s")
    for model in view["models"]:
        for d in model["deployments"]:
            table.add_row(model["model"], d["name"], d["vendor"], str(d["type"]), d["upstream"], str(d["priority"]),
                          d.get("state", "-"), str(d.get("in_flight", "-")), str(d.get("ttfb_ewma_ms") or "-"),
                          str(d.get("cooldown_remaining_s", "-")))
    console.print(table)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Listen port.")] = 9000,
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    api_key: Annotated[str | None, typer.Option(help="Require this key (Bedrock: the SigV4 secret of access key "
                                                     "AKIAYOUROUTERSIM0001, or a Bedrock API key).")] = None,
    latency_ms: Annotated[float, typer.Option(help="Delay before each response / first SSE event.")] = 0.0,
    chunk_delay_ms: Annotated[float, typer.Option(help="Delay between SSE events.")] = 0.0,
    fail_rate: Annotated[float, typer.Option(help="Fraction of requests that fail (0..1).")] = 0.0,
    fail_status: Annotated[int, typer.Option(help="Status of injected failures.")] = 500,
) -> None:
    """Run the upstream simulators (OpenAI, Anthropic, Gemini and Bedrock protocols) on one port."""
    from yourouter.simulators.combined import run
    from yourouter.simulators.openai import SimulatorSettings

    err.print(f"Simulators on http://{host}:{port}: OpenAI /v1/chat/completions, Anthropic /v1/messages, "
              "Gemini /v1beta/models/{model}:generateContent", highlight=False)
    run(SimulatorSettings(api_key=api_key, latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                          fail_rate=fail_rate, fail_status=fail_status), host=host, port=port)


def main() -> None:
    app(prog_name="yourouter")


if __name__ == "__main__":
    main()
