"""The model catalog: model name -> the deployments that serve it, filtered by the `vendor` header."""

from __future__ import annotations

from collections.abc import Iterable

from yourouter.ir.errors import bad_request
from yourouter.providers.base import Provider

AUTO = "auto"


class Catalog:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self._by_model: dict[str, list[Provider]] = {}
        self._vendors: dict[str, list[Provider]] = {}
        self._memo: dict[tuple[str, str | None, str], list[Provider]] = {}
        for provider in providers:
            self._vendors.setdefault(provider.vendor, []).append(provider)
            for model in provider.config.models:
                self._by_model.setdefault(model, []).append(provider)

    def models(self) -> list[tuple[str, tuple[str, ...]]]:
        """(model, vendors serving it), in config order."""
        return [(model, tuple(dict.fromkeys(p.vendor for p in providers)))
                for model, providers in self._by_model.items()]

    def serves(self, model: str) -> bool:
        return model in self._by_model

    def candidates(self, model: str, vendor: str | None, endpoint: str) -> list[Provider]:
        """Deployments that may serve `model` for `endpoint`, in preference order; a 400 when there are none."""
        key = (model, vendor, endpoint)
        found = self._memo.get(key)
        if found is None:
            found = self._candidates(model, vendor, endpoint)
            if len(self._memo) < 10_000:  # the catalog never changes; only valid combinations are remembered
                self._memo[key] = found
        return found

    def _candidates(self, model: str, vendor: str | None, endpoint: str) -> list[Provider]:
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
            chosen = [p for p in serving if p.vendor == pinned]
            if not chosen:
                options = ", ".join(sorted({p.vendor for p in serving}))
                raise bad_request(f"Vendor `{vendor}` does not serve the model `{model}`. "
                                  f"Vendors that do: {options} (or `auto`).", param="vendor", code="vendor_mismatch")
            serving = chosen
        able = [p for p in serving if p.supports(endpoint)]
        if not able:
            raise bad_request(f"The model `{model}` is not available for {endpoint}.", param="model",
                              code="model_not_found")
        return able
