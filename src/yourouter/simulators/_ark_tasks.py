"""Ark video-generation tasks in memory: timing, outcome, the task object and the list endpoint's filtering.

A task's status is a pure function of wall-clock time since it was created (`Task.transitions`): `queued` for
`queue_s`, `running` for `run_s`, then `succeeded` or `failed` — or `expired` when its expiry comes first, or
`cancelled` from the moment a queued task is cancelled. Nothing runs in the background to move tasks along;
callbacks are scheduled from the same timeline by the app.

Usage: Ark bills video output as tokens = width x height x frames / 1024, where frames = duration x fps + 1 (or
the requested `frames`); input is free, so `total_tokens == completion_tokens`. 720p 16:9 for 5 s at 24 fps is
1280 x 720 x 121 / 1024 = 108900 tokens, the figure in Ark's documentation.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._ark_validation import DEFAULT_EXPIRES_AFTER, ListQuery, TaskSpec

TERMINAL = ("succeeded", "failed", "cancelled", "expired")
QUERY_WINDOW_S = 7 * 86400  # only the last 7 days of tasks are queryable
CANCELLED_PURGE_S = 86400  # cancelled tasks are purged after 24 h
DEFAULT_FAILURE = ("InternalServiceError", "The service encountered an unexpected internal error.")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_DIRECTIVE = re.compile(r"\[sim:([a-z_]+)(?:=([^\]]*))?\]")
_SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080}


@dataclass(frozen=True)
class ArkSettings:
    """Ark-specific behaviour of the simulator (timings in seconds); see `simulators.ark` for the directives."""

    queue_s: float = 0.2
    run_s: float = 0.5
    task_fail_rate: float = 0.0  # share of tasks that end `failed`
    models: tuple[str, ...] | None = None  # when set, other models get 404 InvalidEndpointOrModel.NotFound
    media_host: str = "ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com"
    callback_timeout_s: float = 5.0
    callback_attempts: int = 3  # tries for terminal-status callbacks (non-terminal ones are sent once)
    callback_retry_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.queue_s < 0 or self.run_s < 0:
            raise ValueError("queue_s and run_s must not be negative")
        if not 0.0 <= self.task_fail_rate <= 1.0:
            raise ValueError("task_fail_rate must be between 0 and 1")
        if self.callback_attempts < 1 or self.callback_timeout_s <= 0 or self.callback_retry_delay_s < 0:
            raise ValueError("callback_attempts must be >= 1, callback_timeout_s > 0, callback_retry_delay_s >= 0")


@dataclass(frozen=True)
class TaskDirectives:
    """`[sim:...]` directives in a task's prompt that shape its life."""

    queue_s: float | None = None
    run_s: float | None = None
    fail: str | None = None  # the error code of a forced failure ("" = the default code)
    expire_s: float | None = None  # real seconds until the task expires (instead of execution_expires_after)


def parse_task_directives(text: str) -> TaskDirectives:
    values: dict[str, Any] = {}
    for name, raw in _DIRECTIVE.findall(text):
        if name == "fail":
            values["fail"] = raw
        elif name in ("queue_s", "run_s", "expire_s"):
            try:
                number = float(raw)
            except ValueError:
                continue
            if number >= 0:
                values[name] = number
    return TaskDirectives(**values)


def dimensions(resolution: str, ratio: str) -> tuple[int, int]:
    """Width and height: the short side is the resolution, the long side follows the ratio (multiple of 16)."""
    short = _SHORT_SIDE[resolution]
    wide, high = (int(part) for part in ratio.split(":"))
    long = round(short * max(wide, high) / min(wide, high) / 16) * 16 if wide != high else short
    return (long, short) if wide >= high else (short, long)


def video_tokens(resolution: str, ratio: str, frames: int) -> int:
    width, height = dimensions(resolution, ratio)
    return width * height * frames // 1024


def new_task_id(rng: random.Random, now: float) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    return f"cgt-{stamp}-" + "".join(rng.choice(_ID_ALPHABET) for _ in range(5))


@dataclass
class Task:
    id: str
    spec: TaskSpec
    created: float
    queue_s: float
    run_s: float
    expire_s: float
    seed: int
    failure: tuple[str, str] | None  # (code, message) when the task is to fail
    resolution: str
    ratio: str
    fps: int
    media_host: str = ArkSettings.media_host
    cancelled_at: float | None = None

    def transitions(self) -> list[tuple[str, float]]:
        """Every status the task goes through with the wall-clock time it starts, in order."""
        finish = self.created + self.queue_s + self.run_s
        expiry = self.created + self.expire_s
        steps = [("queued", self.created)]
        if self.created + self.queue_s < expiry:
            steps.append(("running", self.created + self.queue_s))
        if finish < expiry:
            steps.append(("failed" if self.failure else "succeeded", finish))
        else:
            steps.append(("expired", expiry))
        if self.cancelled_at is not None:
            steps = [step for step in steps if step[1] < self.cancelled_at] + [("cancelled", self.cancelled_at)]
        return steps

    def status_at(self, now: float) -> tuple[str, float]:
        """The status at `now` and when it began."""
        steps = self.transitions()
        started = [step for step in steps if step[1] <= now]
        return started[-1] if started else steps[0]

    def render(self, now: float) -> dict[str, Any]:
        """The task object of `GET /contents/generations/tasks/{id}` (and of callbacks) at `now`."""
        return self.render_status(*self.status_at(now))

    def render_status(self, status: str, since: float) -> dict[str, Any]:
        spec = self.spec
        task: dict[str, Any] = {"id": self.id, "model": spec.model, "status": status, "error": None}
        if status == "failed" and self.failure:
            task["error"] = {"code": self.failure[0], "message": self.failure[1]}
        if status == "succeeded":
            task["content"] = self._content()
        task.update(seed=self.seed, resolution=self.resolution, ratio=self.ratio)
        if spec.frames is not None:
            task["frames"] = spec.frames
        else:
            task["duration"] = spec.duration if spec.duration is not None else 5
        task["framespersecond"] = self.fps
        if status == "succeeded":
            tokens = self.tokens()
            task["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        task.update(created_at=int(self.created), updated_at=int(since),
                    service_tier=spec.service_tier or "default",
                    execution_expires_after=spec.execution_expires_after or DEFAULT_EXPIRES_AFTER)
        if spec.draft_task_id is not None:
            task["draft_task_id"] = spec.draft_task_id
        task.update(spec.extra)
        return task

    def tokens(self) -> int:
        frames = self.spec.frames if self.spec.frames is not None else (self.spec.duration or 5) * self.fps + 1
        return video_tokens(self.resolution, self.ratio, frames)

    def _content(self) -> dict[str, str]:
        digest = hashlib.sha256(self.id.encode()).hexdigest()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.created))
        query = (f"X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Credential=AKLTsimulator%2F{stamp[:8]}%2F"
                 f"ap-southeast-1%2Ftos%2Frequest&X-Tos-Date={stamp}&X-Tos-Expires=86400"
                 f"&X-Tos-Signature={digest}&X-Tos-SignedHeaders=host")
        base = f"https://{self.media_host}/{self.spec.model}/{self.id}"
        content = {"video_url": f"{base}.mp4?{query}"}
        if self.spec.return_last_frame:
            content["last_frame_url"] = f"{base}-last-frame.png?{query}"
        return content


def plan_task(task_id: str, spec: TaskSpec, settings: ArkSettings, rng: random.Random, now: float) -> Task:
    """Decide a new task's timing, outcome and generation parameters (defaults filled as Ark reports them)."""
    directives = parse_task_directives(spec.prompt)
    failure: tuple[str, str] | None = None
    if directives.fail is not None:
        code = directives.fail or DEFAULT_FAILURE[0]
        failure = DEFAULT_FAILURE if code == DEFAULT_FAILURE[0] else (code, f"Simulated task failure ({code}).")
    elif settings.task_fail_rate and rng.random() < settings.task_fail_rate:
        failure = DEFAULT_FAILURE
    default_resolution = "1080p" if "seedance-1-0-pro" in spec.model else "720p"
    ratio = spec.ratio if spec.ratio not in (None, "adaptive", "keep_ratio") else "16:9"
    assert ratio is not None
    task = Task(
        id=task_id,
        spec=spec,
        created=now,
        queue_s=directives.queue_s if directives.queue_s is not None else settings.queue_s,
        run_s=directives.run_s if directives.run_s is not None else settings.run_s,
        expire_s=(directives.expire_s if directives.expire_s is not None
                  else float(spec.execution_expires_after or DEFAULT_EXPIRES_AFTER)),
        seed=spec.seed if spec.seed is not None and spec.seed >= 0 else rng.randint(0, 2**32 - 1),
        failure=failure,
        resolution=spec.resolution or default_resolution,
        ratio=ratio,
        fps=spec.framespersecond or 24,
        media_host=settings.media_host,
    )
    return task


class TaskStore:
    """The simulator's tasks, oldest first; reads purge what Ark would no longer show."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> None:
        self._tasks[task.id] = task

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def get(self, task_id: str, now: float) -> Task | None:
        self._purge(now)
        return self._tasks.get(task_id)

    def remove(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def all(self) -> Iterable[Task]:
        return list(self._tasks.values())

    def page(self, query: ListQuery, now: float) -> tuple[int, list[Task]]:
        """(total matching, the requested page), newest first."""
        self._purge(now)
        matching = [task for task in reversed(self._tasks.values()) if _matches(task, query, now)]
        start = (query.page_num - 1) * query.page_size
        return len(matching), matching[start:start + query.page_size]

    def _purge(self, now: float) -> None:
        for task in list(self._tasks.values()):
            cancelled_long_ago = task.cancelled_at is not None and now - task.cancelled_at > CANCELLED_PURGE_S
            if now - task.created > QUERY_WINDOW_S or cancelled_long_ago:
                del self._tasks[task.id]


def _matches(task: Task, query: ListQuery, now: float) -> bool:
    return ((query.status is None or task.status_at(now)[0] == query.status)
            and (query.model is None or task.spec.model == query.model)
            and (query.service_tier is None or (task.spec.service_tier or "default") == query.service_tier)
            and (not query.task_ids or task.id in query.task_ids))
