"""The ledger's write-ahead journal: every row is appended to a local file as soon as it is recorded, so a process
killed before its next database write (`kill -9`, the OOM killer) loses no row; the next start writes them.

Rows recorded in one event-loop iteration go out in one `os.write` right after it (`call_soon`; no fsync: what
is written survives the process, not the machine). The journal is cut into segments at each ledger flush: the
segment sealed then holds exactly the rows that flush writes, and is deleted once they are committed. A row is
therefore on disk from one loop iteration after its request until it is in the database.

Segments are named `journal-<database>-<pid>-<boot>-<n>.jsonl`, `<database>` a digest of the database's identity
(`storage.db.database_identity`): a gateway replays only its own database's segments, those of processes that are
gone and those of its own pid's earlier lives (a container restarted with the same pid), never a live process's. A
segment starts with a header line naming its columns; each further line is one row, its values in that order.
Replays skip rows whose request id is already in the database (the unique index), so a segment replayed twice, or
after part of it was committed, counts nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from yourouter.metering.spill import database_tag, json_lines, process_alive

log = logging.getLogger("yourouter.ledger")
_NAME = re.compile(r"^journal-(?P<db>[0-9a-f]+)-(?P<pid>\d+)-(?P<boot>\d+)-(?P<n>\d+)\.jsonl$")


class UsageJournal:
    def __init__(self, directory: str | Path, database: str, columns: Sequence[str],
                 values: Callable[[Any], Sequence[Any]]) -> None:
        """`database`: the ledger's database, as `storage.db.database_identity` names it."""
        self.directory = Path(directory)
        self._tag = database_tag(database)
        self._pid = os.getpid()
        self._boot = time.time_ns()
        self._header = orjson.dumps({"columns": list(columns)}) + b"\n"
        self._values = values  # a row as a sequence of JSON-able values, in `columns` order
        self._segment = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._unwritten: list[Any] = []
        self._sealed: list[Path] = []  # segments whose rows the running flush writes
        self._loop: asyncio.AbstractEventLoop | None = None
        self.broken = False  # the directory could not be written: rows then reach only the database

    def append(self, row: Any) -> None:
        """Journals a row at the end of this event-loop iteration (with the iteration's other rows). Never
        raises: a journal that cannot be written only loses the crash protection, logged once."""
        if self.broken:
            return
        self._unwritten.append(row)
        if len(self._unwritten) == 1:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.write)

    def write(self) -> None:
        rows, self._unwritten = self._unwritten, []
        if not rows or self.broken:
            return
        values = self._values
        data = b"".join([orjson.dumps(values(row)) + b"\n" for row in rows])
        try:
            if self._fd is None:
                self._open()
                data = self._header + data
            assert self._fd is not None
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            self.broken = True
            log.error("usage journal: cannot write to %s (%s); rows go to the database only, a crash before "
                      "their write loses them", self.directory, exc)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment += 1
        path = self.directory / f"journal-{self._tag}-{self._pid}-{self._boot}-{self._segment}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._path = path

    def seal(self) -> None:
        """Closes the current segment (after writing what it still owes): the ledger flush calling this writes
        every row the segment holds. Rows recorded from here on go to a new segment."""
        self.write()
        if self._fd is not None and self._path is not None:
            os.close(self._fd)
            self._fd = None
            self._sealed.append(self._path)

    def release(self) -> None:
        """The sealed segments' rows are committed (or spilled, fsynced): their files go."""
        for path in self._sealed:
            path.unlink(missing_ok=True)
        self._sealed.clear()

    def close(self) -> None:
        """At shutdown, once every row is committed or spilled."""
        self.seal()
        self.release()

    def replayable(self) -> list[Path]:
        """Segments of this database left by processes that are gone (or by this pid's earlier lives)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if match is None or match.group("db") != self._tag:
                continue
            pid, boot = int(match.group("pid")), int(match.group("boot"))
            if (pid == self._pid and boot != self._boot) or (pid != self._pid and not process_alive(pid)):
                found.append(path)
        return found

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """A segment's rows as column -> value; a torn last line (the process died mid-write) is skipped."""
        columns: list[str] | None = None
        rows = []
        try:
            for item in json_lines(path, "usage journal"):
                if isinstance(item, dict) and isinstance(item.get("columns"), list):
                    columns = item["columns"]
                elif isinstance(item, list) and columns is not None and len(item) == len(columns):
                    rows.append(dict(zip(columns, item, strict=True)))
        except FileNotFoundError:  # another worker replayed it first
            return []
        return rows
