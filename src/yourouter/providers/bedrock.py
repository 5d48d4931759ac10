"""`type: bedrock` (vendor `aws`): AWS Bedrock's Converse API, `POST {base}/model/{modelId}/converse` and
`/converse-stream` (an AWS event stream), each request signed with SigV4 by botocore — or, with `api_key`, a
Bedrock API key sent as a bearer token.

Credentials: `aws_access_key_id`/`aws_secret_access_key`/`aws_session_token` from the config, else botocore's
default chain (environment, shared profile, container or instance role; refreshed by botocore as they expire).
botocore is imported only when a Bedrock deployment is configured (`pip install 'yourouter[bedrock]'`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from yourouter.config.loader import ConfigError
from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, HttpProvider

SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"
_REGION_IN_URL = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")


class BedrockUnavailable(ConfigError):
    """botocore is missing or no AWS credentials were found."""


def signing_region(config: ProviderConfig) -> str:
    if config.region:
        return config.region
    found = _REGION_IN_URL.search(config.base_url)
    return found.group(1) if found else DEFAULT_REGION


def _credentials(config: ProviderConfig) -> Any:
    try:
        import botocore.credentials
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise BedrockUnavailable(f"providers.{config.name}: Bedrock needs botocore "
                                 "(pip install 'yourouter[bedrock]')") from None
    if config.aws_access_key_id and config.aws_secret_access_key:
        return botocore.credentials.Credentials(config.aws_access_key_id, config.aws_secret_access_key,
                                                config.aws_session_token)
    try:
        found = botocore.session.get_session().get_credentials()
    except botocore.exceptions.BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise BedrockUnavailable(f"providers.{config.name}: AWS credentials: {exc}") from None
    if found is None:
        raise BedrockUnavailable(f"providers.{config.name}: no AWS credentials (set aws_access_key_id and "
                                 "aws_secret_access_key, api_key, or the AWS environment/profile)")
    return found


class BedrockProvider(HttpProvider):
    dialect = "bedrock"

    def __init__(self, config: ProviderConfig) -> None:
        bearer = {"Authorization": "Bearer " + config.api_key} if config.api_key else {}
        super().__init__(config, {}, bearer)
        self.region = signing_region(config)
        if not config.api_key:
            from botocore.auth import SigV4Auth

            self._credentials = _credentials(config)
            self._auth_class = SigV4Auth

    def url(self, operation: str, model: str, stream: bool) -> str:
        # The model id is one path segment: `:` and `/` (ARNs) are percent-encoded, as the AWS SDKs do.
        return f"{self.config.base_url}/model/{quote(model, safe='-_.~')}/{'converse-stream' if stream else 'converse'}"

    def supports(self, operation: str) -> bool:
        return operation == CHAT

    def headers(self, url: str = "", body: bytes = b"") -> dict[str, str]:
        if self.config.api_key:
            return self._headers
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials.get_frozen_credentials()  # refreshed by botocore when they expire
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        self._auth_class(credentials, SERVICE, self.region).add_auth(request)
        signed = dict(self._headers)
        signed.update((name, str(value)) for name, value in request.headers.items())
        return signed
