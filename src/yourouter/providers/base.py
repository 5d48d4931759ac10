"""The provider contract: how to address an upstream that speaks one wire protocol."""

from __future__ import annotations

from typing import Protocol

from yourouter.config.schema import ProviderConfig


class Provider(Protocol):
    """One configured upstream deployment.

    `dialect` names the wire format its bodies use (a codec name); when it equals the client's dialect the
    pipeline forwards bodies untouched.
    """

    config: ProviderConfig
    dialect: str

    @property
    def name(self) -> str: ...

    @property
    def vendor(self) -> str: ...

    def url(self, endpoint: str) -> str:
        """The upstream URL for a gateway endpoint name (`chat.completions`, `embeddings`)."""
        ...

    def headers(self) -> dict[str, str]:
        """Request headers carrying the upstream's credentials (never the client's)."""
        ...

    def supports(self, endpoint: str) -> bool: ...
