"""Settings, read once from ``JOBTAIL_*`` environment variables (same names as CLI flags)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_KEY_CHARS = 16  # API keys, on a non-loopback bind
MIN_SECRET_CHARS = 32  # the stream-token signing secret, on a non-loopback bind


class Settings(BaseSettings):
    """Everything configurable. Defaults run the embedded stack with no cloud account."""

    model_config = SettingsConfigDict(env_prefix="JOBTAIL_", extra="ignore")

    store: str = Field("sqlite:///", description="sqlite:///path, postgresql://..., or supabase")
    data_dir: Path = Field(
        Path(".jobtail"), description="local data: SQLite file, uploads, results"
    )
    blobs: str = Field("", description="where uploads/results live: empty = data folder, s3://b/p")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["none", "apikey"] = "none"
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="bearer keys (auth=apikey)"
    )
    secret: SecretStr | None = Field(
        None, description="signing key of stream tokens (required with auth=apikey off loopback)"
    )
    old_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="retired signing keys, still accepted while rotating"
    )
    stream_token_ttl: int = Field(3600, ge=60, description="stream token lifetime, seconds")
    write_token_ttl: int = Field(
        86_400, ge=60, description="a run's write token lifetime (its worker's credential), s"
    )
    dispatcher: Literal["inline", "sqs"] = "inline"
    queue_url: str | None = None
    workers: int = Field(2, ge=1, le=64, description="inline dispatcher threads")
    stream_window: float | None = Field(
        None, gt=0, description="seconds an SSE response may last before it ends with retry:"
    )
    ping_seconds: float = Field(15.0, gt=0, le=15, description="keep-alive comment interval")
    stream_window_bytes: int | None = Field(
        None, ge=65_536, description="bytes an SSE response may carry before it ends with retry:"
    )
    retry_ms: int = Field(1000, ge=0, description="retry: hint sent when a window closes")
    long_poll_seconds: float = Field(20.0, gt=0, description="Durable Streams long-poll wait")
    sse_seconds: float = Field(60.0, gt=0, description="Durable Streams SSE connection length")
    page_transport: Literal["auto", "sse", "streams"] = Field(
        "auto",
        description="how the page reads a log: SSE, or the Durable Stream reads a CDN caches"
        " (streams); auto = streams when the page came through CloudFront (X-Jobtail-Edge)",
    )
    max_line_chars: int = Field(65_536, ge=256)
    max_lines: int = Field(1_000_000, ge=10)
    keep_tail_lines: int = Field(
        10_000, ge=0, description="past max_lines, the last lines kept (the head is kept too)"
    )
    max_upload_bytes: int = Field(1_048_576, ge=1024)
    max_streams: int = Field(1000, ge=1, description="concurrent SSE streams per process")
    heartbeat_interval: float = Field(5.0, gt=0)
    stale_after: float = Field(60.0, gt=0, description="seconds without heartbeat = dead worker")
    queued_timeout: float = Field(
        3600.0, gt=0, description="seconds a run may wait for a worker before it is failed"
    )
    retention_days: int = Field(30, ge=1)
    shutdown_grace: float = Field(
        10.0, ge=0, description="seconds running jobs get on SIGTERM before they are failed"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a connection may take to send a request's headers"
    )
    gc_tuning: bool = Field(
        True, description="jobtail serve: fewer garbage-collector pauses (web/serving.tune_gc)"
    )
    log_level: str = "INFO"

    @field_validator("api_keys", "old_secrets", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _heartbeat_beats_staleness(self) -> Settings:
        if self.heartbeat_interval * 2 > self.stale_after:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be at most half of "
                f"stale_after ({self.stale_after:g} s), or live runs would be failed as dead"
            )
        return self

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_bind(self) -> None:
        """Refuse to serve beyond this machine with no auth: logs may hold secrets."""
        if not self.loopback and self.auth == "none":
            raise ValueError(
                f"refusing to listen on {self.host} without auth: set JOBTAIL_AUTH=apikey and "
                "JOBTAIL_API_KEYS, or bind to 127.0.0.1"
            )
        if self.auth == "apikey" and not self.api_keys:
            raise ValueError("JOBTAIL_AUTH=apikey needs JOBTAIL_API_KEYS (comma-separated)")
        if self.auth == "apikey" and not self.loopback:
            short = sum(len(key.get_secret_value()) < MIN_KEY_CHARS for key in self.api_keys)
            if short:
                raise ValueError(
                    f"{short} API key(s) shorter than {MIN_KEY_CHARS} characters: too easy to "
                    "guess beyond this machine (python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))' makes a good one)"
                )
            if self.secret is None or len(self.secret.get_secret_value()) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"JOBTAIL_AUTH=apikey beyond loopback needs JOBTAIL_SECRET (at least "
                    f"{MIN_SECRET_CHARS} characters): the key that signs stream tokens, kept "
                    "apart from the API keys so rotating a key does not void them"
                )
