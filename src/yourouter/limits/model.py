"""The limit engine's vocabulary: what a request asks of each scope (`Charge`), what an admitted request holds
(`Ticket`), what a scope looks like for headers (`ScopeState`), and the contract every backend keeps
(`LimitBackend`). Pure types: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

Kind = Literal["requests", "tokens", "concurrency", "budget"]
Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits of one scope; None = unlimited."""

    rpm: int | None = None  # requests in any sliding 60 s window
    tpm: int | None = None  # tokens in any sliding 60 s window
    max_concurrency: int | None = None  # requests in flight


@dataclass(frozen=True, slots=True)
class Budget:
    limit_usd: Decimal
    period: Period | None = None  # None = lifetime; day/month reset at UTC boundaries


# Charge, Ticket and the states below are built per admitted request, so not frozen: a frozen dataclass's __init__
# sets each field through object.__setattr__ (3.5x the cost here). Treat them as read-only all the same.
@dataclass(slots=True)
class Charge:
    """What one request asks of one scope."""

    scope: str  # e.g. "key:key_ab12" or "deployment:openai-main"
    limits: Limits
    tokens: int = 0  # estimated tokens charged to the TPM window at admission
    budget: Budget | None = None
    reserve_usd: Decimal = Decimal(0)  # worst-case cost held against the budget while in flight


@dataclass(slots=True)
class WindowState:
    """One sliding window, as OpenAI's `x-ratelimit-*` headers show it."""

    limit: int
    remaining: int
    reset_s: float  # requests: until one more request fits (or, with room left, until the oldest one leaves);
    #                 tokens: until the oldest tokens leave the window. 0 when the window is empty.


@dataclass(slots=True)
class ScopeState:
    requests: WindowState | None  # None when the scope has no rpm limit
    tokens: WindowState | None  # None when the scope has no tpm limit
    concurrency: int  # requests in flight
    spend_usd: Decimal | None  # committed spend in the current budget period; None without a budget
    reserved_usd: Decimal | None  # held by requests in flight; None without a budget
    budget: Budget | None

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.budget is None or self.spend_usd is None or self.reserved_usd is None:
            return None
        return max(Decimal(0), self.budget.limit_usd - self.spend_usd - self.reserved_usd)


@dataclass(slots=True)
class Ticket:
    """An admitted request. Hand it to `settle()` exactly once, whatever the outcome."""

    request_id: str
    charges: tuple[Charge, ...]
    states: dict[str, ScopeState]  # by scope, right after admission (for the response headers)
    period_keys: dict[str, str]  # scope -> budget period ("2025-06-01", "2025-06" or "lifetime") the cost goes to
    admitted_at: float  # the backend clock's time of admission (the TPM estimate sits in that second's bucket)


class LimitExceeded(Exception):
    """A request refused. Nothing was charged in any scope when this is raised."""

    def __init__(self, scope: str, kind: Kind, retry_after_s: float | None, states: Mapping[str, ScopeState]) -> None:
        self.scope = scope
        self.kind = kind
        self.retry_after_s = retry_after_s  # None: unknown (concurrency) or never (a lifetime budget, oversized ask)
        self.states = dict(states)  # every charged scope, before this request, so a 429 carries the same headers
        wait = "" if retry_after_s is None else f", retry after {retry_after_s:.3f}s"
        super().__init__(f"{scope}: {kind} limit reached{wait}")


class LimitBackendUnavailable(Exception):
    """The backend's store could not be reached; the caller decides between failing open and failing closed."""


class SpendSource(Protocol):
    """Where committed spend comes from when a backend has no counter yet (the usage ledger)."""

    async def committed_spend(self, scope: str, since: datetime | None) -> Decimal:
        """The sum of recorded costs for `scope` since `since` (UTC; None = ever)."""
        ...


class LimitBackend(Protocol):
    async def admit(self, request_id: str, charges: Sequence[Charge]) -> Ticket:
        """Check and charge every scope, all or nothing: raise `LimitExceeded` (charging nothing) if any limit
        would be exceeded; otherwise count the request and its estimated tokens, take a concurrency slot and hold
        `reserve_usd` against each budget. `request_id` must be unique among requests in flight; scopes must be
        distinct."""
        ...

    async def settle(self, ticket: Ticket, tokens: int, cost_usd: Decimal) -> None:
        """The request is over: free its slots, replace the token estimate by the real `tokens` (up or down) and
        its reservations by the real `cost_usd` (0 for errors and zero-completion responses)."""
        ...

    async def state(self, scope: str, limits: Limits, budget: Budget | None) -> ScopeState:
        """The scope as it stands now, charging nothing."""
        ...

    async def record_spend(self, scope: str, budget: Budget, cost_usd: Decimal, at: float) -> None:
        """Adds a cost incurred outside a ticket (a video task billed when it finishes) to the budget period that
        holds `at`, if that period's counter exists; a missing counter will be loaded from the ledger, which
        already holds the cost (write the ledger row first)."""
        ...

    async def close(self) -> None: ...
