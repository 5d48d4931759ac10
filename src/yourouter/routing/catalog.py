"""The model catalog: model name -> the deployments that serve it, filtered by the `vendor` header."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from yourouter.config.schema import ModelEntry
from yourouter.ir.errors import bad_request
from yourouter.providers.base import Provider

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a requested model: a deployment and the model name that deployment knows it by."""

    provider: Provider
    upstream_model: str
    #: The config's model entry (client-facing name, deployment price); not compared, so a Route stays hashable.
    entry: ModelEntry | None = field(default=None, compare=False)


class Catalog:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self._by_model: dict[str, list[Route]] = {}
        self._listed: dict[str, list[Provider]] = {}  # what GET /v1/models shows: names, not aliases
        self._vendors: dict[str, list[Provider]] = {}
        self._memo: dict[tuple[str, str | None, str], list[Route]] = {}
        for provider in providers:
            self._vendors.setdefault(provider.vendor, []).append(provider)
            for entry in provider.config.models:
                self._listed.setdefault(entry.name, []).append(provider)
                for name in (entry.name, *entry.aliases):
                    self._by_model.setdefault(name, []).append(Route(provider, entry.upstream_name, entry))

    def models(self) -> list[tuple[str, tuple[str, ...]]]:
        """(model, vendors serving it), in config order."""
        return [(model, tuple(dict.fromkeys(p.vendor for p in providers)))
                for model, providers in self._listed.items()]

    def routes(self) -> list[tuple[str, list[Route]]]:
        """Every model name (aliases included) with its routes, in config order."""
        return [(model, list(routes)) for model, routes in self._by_model.items()]

    def serves(self, model: str) -> bool:
        return model in self._by_model

    def split_vendor_prefix(self, model: str) -> tuple[str, str | None]:
        """`anthropic/claude-x` -> (`claude-x`, `anthropic`) when `anthropic` is a vendor and the whole string is not
        itself a model name; otherwise (model, None)."""
        if "/" not in model or model in self._by_model:
            return model, None
        prefix, _, rest = model.partition("/")
        if prefix.lower() in self._vendors and rest:
            return rest, prefix.lower()
        return model, None

    def candidates(self, model: str, vendor: str | None, endpoint: str) -> list[Route]:
        """Deployments that may serve `model` for `endpoint`, in preference order; a 400 when there are none."""
        key = (model, vendor, endpoint)
        found = self._memo.get(key)
        if found is None:
            found = self._candidates(model, vendor, endpoint)
            if len(self._memo) < 10_000:  # the catalog never changes; only valid combinations are remembered
                self._memo[key] = found
        return found

    def _candidates(self, model: str, vendor: str | None, endpoint: str) -> list[Route]:
        serving = self._by_model.get(model)
        if not serving:
            raise bad_request(f"The model `{model}` does not exist or is not served by this gateway.",
                              param="model", code="model_not_found")
        if vendor and vendor.lower() != AUTO:
            pinned = vendor.lower()
            if pinned not in self._vendors:
                known = ", ".join(sorted(self._vendors)) or "none"
                raise bad_request(f"Unknown vendor `{vendor}`. Configured vendors: {known} (or `auto`).",
                                  param="vendor", code="unknown_vendor")
            chosen = [r for r in serving if r.provider.vendor == pinned]
            if not chosen:
                options = ", ".join(sorted({r.provider.vendor for r in serving}))
                raise bad_request(f"Vendor `{vendor}` does not serve the model `{model}`. "
                                  f"Vendors that do: {options} (or `auto`).", param="vendor", code="vendor_mismatch")
            serving = chosen
        able = [r for r in serving if r.provider.supports(endpoint)]
        if not able:
            raise bad_request(f"The model `{model}` is not available for {endpoint}.", param="model",
                              code="model_not_found")
        return able
