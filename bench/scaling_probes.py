"""Scaling benchmark probes: the PostgreSQL database and its counters, and Redis INFO snapshots (used by
bench/scaling.py; see its docstring)."""

from __future__ import annotations

import os
from typing import Any

from chaos import cpu_seconds

NAN = float("nan")
POSTGRES_ADMIN_URL = os.environ.get("YOUROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_fetched", "tup_returned", "blks_hit",
               "blks_read")


# ----------------------------------------------------------------------------------------------- PostgreSQL

async def pg_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def database_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def prepare_database(url: str) -> None:
    """The gateway's migrations, then the bench's column: the transaction that wrote each usage row."""
    import asyncpg

    from yourouter.storage.db import create_engine, migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("ALTER TABLE usage ADD COLUMN ledger_xid xid8 DEFAULT pg_current_xact_id()")
    finally:
        await connection.close()


async def pg_counters(name: str) -> dict[str, int]:
    """The database's cumulative counters, read from the admin database (so reading them never counts)."""
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        row = await connection.fetchrow(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = $1",
                                        name)
        return {k: int(row[k]) for k in PG_COUNTERS}
    finally:
        await connection.close()


async def pg_backends(name: str) -> list[int]:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                                      "pg_backend_pid()", name)
        return [int(r["pid"]) for r in rows]
    finally:
        await connection.close()


async def ledger_facts(url: str, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Rows by key, duplicates, batch sizes (rows per writing transaction), and per phase: the INSERT transactions
    that carried the rows of requests started in it, per instance (a request id starts with its process's prefix)."""
    import datetime as dt

    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        by_key = {r["key_name"]: int(r["n"]) for r in await connection.fetch(
            "SELECT key_name, count(*) AS n FROM usage GROUP BY key_name")}
        statuses = {int(r["status"]): int(r["n"]) for r in await connection.fetch(
            "SELECT status, count(*) AS n FROM usage GROUP BY status")}
        duplicates = int(await connection.fetchval(
            "SELECT count(*) FROM (SELECT request_id FROM usage GROUP BY request_id HAVING count(*) > 1) d"))
        batches = [int(r["n"]) for r in await connection.fetch(
            "SELECT count(*) AS n FROM usage GROUP BY ledger_xid ORDER BY min(id)")]
        size = int(await connection.fetchval("SELECT pg_total_relation_size('usage')"))
        phases = {}
        for name, (start, end) in windows.items():
            rows = await connection.fetch(
                "SELECT left(request_id, 16) AS instance, count(DISTINCT ledger_xid) AS tx, count(*) AS n FROM usage"
                " WHERE created_at >= $1 AND created_at <= $2 GROUP BY 1 ORDER BY 1",
                dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC))
            phases[name] = {"seconds": end - start,
                            "instances": [{"tx": int(r["tx"]), "rows": int(r["n"])} for r in rows]}
        return {"rows_by_key": by_key, "statuses": statuses, "duplicate_request_ids": duplicates, "batches": batches,
                "usage_bytes": size, "phases": phases}
    finally:
        await connection.close()


def pg_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


# ----------------------------------------------------------------------------------------------- Redis

def redis_snapshot(client: Any) -> dict[str, Any]:
    info = client.info("all")
    commands = {name[len("cmdstat_"):]: {"calls": int(v["calls"]), "usec": int(v["usec"])}
                for name, v in info.items() if name.startswith("cmdstat_")}
    commands.pop("info", None)  # ours
    commands.pop("dbsize", None)
    return {"commands": commands, "total_commands_processed": int(info["total_commands_processed"]),
            "net_in": int(info["total_net_input_bytes"]), "net_out": int(info["total_net_output_bytes"]),
            "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "cpu_main": float(info.get("used_cpu_user_main_thread", NAN))
            + float(info.get("used_cpu_sys_main_thread", NAN)),
            "connections_received": int(info["total_connections_received"]),
            "connected_clients": int(info["connected_clients"]), "keys": int(client.dbsize()),
            "used_memory": int(info["used_memory"]), "pid": int(info["process_id"])}


def redis_delta(before: dict[str, Any], after: dict[str, Any], own_info_calls: int) -> dict[str, Any]:
    commands = {}
    for name, v in after["commands"].items():
        b = before["commands"].get(name, {"calls": 0, "usec": 0})
        calls = v["calls"] - b["calls"]
        if calls:
            commands[name] = {"calls": calls, "usec": v["usec"] - b["usec"]}
    return {"commands": commands, "total": sum(c["calls"] for c in commands.values()),
            "total_commands_processed": after["total_commands_processed"] - before["total_commands_processed"]
            - own_info_calls,
            "net_in": after["net_in"] - before["net_in"], "net_out": after["net_out"] - before["net_out"],
            "cpu_s": after["cpu"] - before["cpu"], "cpu_main_s": after["cpu_main"] - before["cpu_main"],
            "connections": after["connections_received"] - before["connections_received"],
            "connected_clients": after["connected_clients"], "keys": after["keys"],
            "used_memory": after["used_memory"]}


