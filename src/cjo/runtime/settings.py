"""The one settings object. Every value can be set with an environment variable `CJO_<NAME>`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# `Channel` is re-exported: the API's routes read it from here.
from cjo.runtime.channels import Channel as Channel
from cjo.runtime.channels import ProviderKind

ANY_BUSINESS_LINE = "*"
DEFAULT_OPT_OUT_KEYWORDS = ("R", "TD", "退订", "STOP")


class ProviderSettings(BaseModel):
    """How one channel reaches its provider, with the dispatcher's limits for it.

    `kind` is one of the provider kinds the channel list names (`cjo.runtime.channels`):
    `smtp` speaks SMTP to `host:port`; `http` POSTs JSON to `url`, signed with `secret`;
    `inbox` stores the message in the database as a message-centre item. `secret` also
    checks the provider's callbacks (receipts, replies). A kind with settings of its own
    reads them from `options`, and its module checks them when the dispatcher starts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProviderKind
    # smtp
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "CJO <noreply@cjo.invalid>"
    # A CA bundle to trust for STARTTLS, for a relay whose certificate a private CA signed.
    ca_file: str | None = None
    # http
    url: str | None = None
    secret: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    # the dispatcher's limits, per provider
    rate_per_second: float = Field(default=100.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # settings of a provider kind of its own, checked by its module
    options: dict[str, Any] = Field(default_factory=dict)


def _default_providers() -> dict[str, dict[Channel, ProviderSettings]]:
    return {ANY_BUSINESS_LINE: {"inbox": ProviderSettings(kind="inbox")}}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CJO_", extra="ignore")

    home: Path = Field(default=Path(".cjo"), description="where the embedded stack keeps data")
    # When set, the embedded PostgreSQL is not started and this server is used.
    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    # When set, the embedded Temporal dev server is not started and this one is used.
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    task_queue: str = "cjo"
    log_level: str = "INFO"
    log_json: bool = True
    # Business line (or "*" for any) -> channel -> provider. As JSON in CJO_PROVIDERS.
    providers: dict[str, dict[Channel, ProviderSettings]] = Field(
        default_factory=_default_providers
    )
    # Where customers reach the API: tracked links in messages point here.
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs tracked links so that a click cannot be forged for another message.
    link_secret: SecretStr = SecretStr("cjo-dev-link-secret")
    # Inbound SMS replies that revoke SMS consent, matched whole and case-insensitively.
    opt_out_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_OPT_OUT_KEYWORDS))
    # The worker runs a dispatcher beside it unless this is off (`cjo dispatcher` runs one alone).
    dispatcher_in_worker: bool = True
    dispatcher_batch_size: int = Field(default=200, ge=1)
    dispatcher_poll_seconds: float = Field(default=0.5, gt=0)
    dispatcher_lease_seconds: float = Field(default=60.0, gt=0)
    # Deliveries in flight at once, across every provider, in one dispatcher process.
    dispatcher_concurrency: int = Field(default=32, ge=1)

    # API authentication. Bearer JWTs are checked with `jwt_secret` (HS256) or with
    # `jwt_public_key` (RS256, PEM); with neither set, only API keys are accepted.
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # Requests one principal may make a minute (a token bucket per API process).
    rate_limit_per_minute: int = Field(default=3000, ge=1)
    # The largest request body, and the most events or profiles one request may carry.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=1000, ge=1)
    # Maker-checker: a campaign whose audience (at submission) is larger than this needs
    # a second approval, by another approver.
    approval_second_above: int = Field(default=100_000, ge=0)

    @property
    def pg_data(self) -> Path:
        return self.home / "pg"

    @property
    def temporal_db(self) -> Path:
        return self.home / "temporal.db"

    def provider(self, business_line: str, channel: str) -> ProviderSettings | None:
        """The business line's own provider for the channel, else the "*" one, else none."""
        for line in (business_line, ANY_BUSINESS_LINE):
            for name, provider in self.providers.get(line, {}).items():
                if name == channel:
                    return provider
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
