"""A price and the exact USD cost of a usage under it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from yourouter.ir.usage import Usage

ZERO = Decimal(0)
_PER_MILLION = Decimal(1_000_000)

Amount = Decimal | float | int | str


def _decimal(value: Amount) -> Decimal:
    # str() first: Decimal(0.075) is 0.07499999999999999722..., Decimal("0.075") is what the price list says.
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M input, output and cached-input tokens, and USD per call (`per_query`, for search engines).

    `cached_input` None means cached tokens bill at the `input` price. Video models bill their output (the
    completion tokens the vendor counts for a clip) at `output`."""

    input: Decimal = ZERO
    output: Decimal = ZERO
    cached_input: Decimal | None = None
    per_query: Decimal = ZERO

    @classmethod
    def of(cls, input: Amount = 0, output: Amount = 0, cached_input: Amount | None = None,
           per_query: Amount = 0) -> Price:
        """A price from numbers as a price list or config file writes them (floats are read by their repr)."""
        return cls(_decimal(input), _decimal(output), None if cached_input is None else _decimal(cached_input),
                   _decimal(per_query))

    @property
    def token_rate(self) -> Decimal:
        """Input plus output USD per 1M tokens: what the `cost` routing strategy orders deployments by."""
        return self.input + self.output

    def tokens_cost(self, prompt: int, completion: int, cached: int = 0) -> Decimal:
        """USD for `prompt` input tokens, `cached` of them cached, and `completion` output tokens (negative counts
        count as 0). Cached tokens are part of `prompt` (the IR's convention) and bill at `cached_input` when set,
        else at `input`."""
        if prompt < 0:
            prompt = 0
        if completion < 0:
            completion = 0
        if cached <= 0:  # the common case: no cached tokens
            return (prompt * self.input + completion * self.output) / _PER_MILLION
        cached = min(cached, prompt)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_rate + completion * self.output) / _PER_MILLION

    def cost(self, usage: Usage | None = None, queries: int = 0) -> Decimal:
        """The exact USD cost of `usage` plus `queries` billed calls (`tokens_cost` of its counts)."""
        total = self.per_query * queries if queries else ZERO
        if usage is None:
            return total
        return total + self.tokens_cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
