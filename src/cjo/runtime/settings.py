"""The one settings object. Every value can be set with an environment variable `CJO_<NAME>`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @property
    def pg_data(self) -> Path:
        return self.home / "pg"

    @property
    def temporal_db(self) -> Path:
        return self.home / "temporal.db"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
