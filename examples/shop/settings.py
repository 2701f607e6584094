"""The shop's own settings. Sentry's are read by fastapi-sentry itself (`SENTRY_*`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShopSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./shop.db",
        validation_alias=AliasChoices("DATABASE_URL", "SHOP_DATABASE_URL"),
    )
    #: PostgreSQL schema for the tables (lets several test runs share one database).
    database_schema: str | None = None
    #: Without Redis the view counter is skipped and Celery runs tasks in-process.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "SHOP_REDIS_URL")
    )
    #: The payments / mail / exchange-rate provider (a stub on 127.0.0.1 in tests and the demo).
    external_api_url: str = "http://127.0.0.1:8970"
    external_api_key: SecretStr = SecretStr("")
    external_timeout: float = 5.0
    jwt_secret: SecretStr = SecretStr("change-me-in-production")
    token_ttl_seconds: int = 3600
    #: The sales report is reported as slow above this.
    slow_report_ms: float = 250.0
    #: When the beat tasks run (cron syntax, UTC).
    beat_cron: str = "0 * * * *"
    #: Retries of the receipt mail before the task gives up.
    receipt_retries: int = 2
    receipt_retry_delay: float = 0.5
