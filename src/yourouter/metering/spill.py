"""The ledger's overflow: rows the database could not take (its queue full, or still down at shutdown) go to a local
append-only file, one JSON object a line, and are written to the database later (at the next start, or once the
database answers again). Replays skip rows whose request id is already in the database, so a replay interrupted
between its commit and the file's removal never counts a request twice.

Files are named `usage-<database>-<pid>-<start>.jsonl`, `<database>` a digest of the database's identity
(`storage.db.database_identity`): a process replays its own database's files, its own and those of processes that
are gone (another live worker's file is left to that worker), so gateways of different databases may share a
directory. Files named `usage-<pid>-<start>.jsonl` (before the digest was added) are replayed by any database's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("yourouter.ledger")
_NAME = re.compile(r"^usage-(?:(?P<db>[0-9a-f]{16})-)?(?P<pid>\d+)-(?P<start>\d+)\.jsonl$")


def database_tag(database: str) -> str:
    """The digest that names a database's local files (spill files, journals)."""
    return hashlib.sha256(database.encode()).hexdigest()[:16]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpillFile:
    def __init__(self, directory: str | Path, database: str | None = None) -> None:
        """`database`: the ledger's database, as `storage.db.database_identity` names it (None: unnamed files,
        as before the digest was added)."""
        self.directory = Path(directory)
        self._tag = None if database is None else database_tag(database)
        self._prefix = "usage-" if self._tag is None else f"usage-{self._tag}-"
        self._start = time.time_ns()
        self._name = f"{self._prefix}{os.getpid()}-{self._start}.jsonl"

    @property
    def path(self) -> Path:
        return self.directory / self._name

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Appends rows and fsyncs them: once this returns they survive a crash."""
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        if not data:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return data.count(b"\n")

    def replayable(self) -> list[Path]:
        """Spill files this process may replay: its own, and those of processes that are gone. New rows go to a
        fresh file from here on, so a file being replayed is never appended to."""
        if not self.directory.is_dir():
            return []
        self._start = time.time_ns()
        self._name = f"{self._prefix}{os.getpid()}-{self._start}.jsonl"
        found = []
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if match is None or match.group("db") not in (None, self._tag):
                continue
            pid = int(match.group("pid"))
            if pid == os.getpid() or not process_alive(pid):
                found.append(path)
        return found

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The rows of a spill file; a torn last line (a crash mid-write) is skipped."""
        return [row for row in json_lines(path, "spill file") if isinstance(row, dict)]


def json_lines(path: Path, kind: str) -> Iterator[Any]:
    """The JSON value of each line of a local file the ledger wrote (a spill file, a journal segment); a line that
    does not parse, such as a torn last line (a crash mid-write), is logged and skipped."""
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("%s %s: line %d is unreadable and was skipped", kind, path, number)
            continue
        yield value
