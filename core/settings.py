"""Service configuration, read from ``BACKBONE_*`` environment variables.

Everything has a development default that works on a laptop with no setup: an SQLite file and a
generated master key under ``./var/``. ``BACKBONE_ENV=production`` removes both fallbacks so
that a misconfigured production deployment refuses to start instead of quietly encrypting data
under a key nobody backed up, or keeping it in an SQLite file inside a container that nobody
backs up either.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


class ConfigurationError(RuntimeError):
    """A setting production needs is missing; the service must not start.

    Not a ``ValueError``: pydantic lets it through as it is, so every command (and the
    application) stops on it with its own message instead of a validation report.
    """


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKBONE_", extra="ignore", populate_by_name=True)

    env: Environment = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    master_key: SecretStr | None = Field(
        default=None, description="base64url-encoded 32-byte master key"
    )
    master_key_file: Path | None = None

    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("BACKBONE_PORT", "PORT", "port"),
        description="the port `backbone serve` listens on; the default issuer names it",
    )
    issuer: str = ""
    audience: str = "backbone-api"
    access_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    client_assertion_max_lifetime_seconds: int = Field(default=300, ge=30, le=300)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_submission_bytes: int = Field(default=512 * 1_048_576, ge=1024)
    max_decompression_ratio: int = Field(default=100, ge=2)
    upload_dir: Path | None = Field(
        default=None,
        description="where resumable uploads' bytes wait until complete; default: DATA_DIR/uploads",
    )
    upload_expiry_hours: float = Field(
        default=24,
        gt=0,
        le=24 * 30,
        description="a resumable upload not completed this long after its creation expires",
    )

    k_floor: int = Field(
        default=5, ge=2, description="smallest minimum cell size an agreement may set"
    )
    log_level: str = "INFO"
    log_json: bool = True
    forwarded_allow_ips: str = ""

    auth_sync_seconds: float = Field(
        default=0.1, ge=0, le=5, description="how often workers follow revocations; 0 = never"
    )
    audit_checkpoint_interval_seconds: float = Field(
        default=300, ge=0, description="sign a checkpoint this often when the log grew; 0 = off"
    )
    audit_read_group_commit: bool = Field(
        default=True,
        description="write the audit events of concurrent reads in one transaction",
    )
    purge_on_start: bool = Field(
        default=True, description="enforce retention when the service starts"
    )
    release_time_quantum: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="answer release requests on a multiple of this many seconds; 0 = off",
    )
    release_sync_seconds: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="a release computed within this many seconds is answered at once; a longer "
        "one is answered 202 with a job to poll",
    )
    job_queue: Literal["auto", "in-process", "procrastinate"] = Field(
        default="auto",
        description="where release jobs run: in-process (threads of the serving process) or "
        "procrastinate (a queue in PostgreSQL, run by `backbone worker`); auto: procrastinate "
        "on PostgreSQL, in-process on SQLite",
    )
    job_isolation: Literal["process", "thread"] = Field(
        default="process",
        description="process: each release job runs in a process that ends with it, so that its "
        "memory goes back to the system; thread: in the worker's own process",
    )
    job_concurrency: int = Field(
        default=1, ge=1, le=64, description="jobs one process computes at once"
    )
    job_sweep_seconds: float = Field(
        default=60,
        ge=0,
        description="in-process jobs: how often to take over jobs left queued or abandoned "
        "(also at start); 0 = never",
    )
    webhook_allow_hosts: str = Field(
        default="",
        description="comma-separated host names, addresses or networks a webhook may reach "
        "although they are not public (loopback, private, ...), and over plain http",
    )
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=30.0, ge=0, le=86400)
    rate_limit_storage: str = "memory://"
    token_rate_limit: str = "60/minute"
    # Failed client authentications at the OAuth endpoints, per source address and, apart from
    # it, per claimed client id (the verified client's own allowance is never spent by them).
    token_failure_rate_limit: str = "20/minute"
    write_rate_limit: str = "600/minute"
    # Reads without a token (releases published to the public), per source address.
    public_read_rate_limit: str = "120/minute"
    # People signed in to the console: a session ends after this long without a request, and
    # after this long in any case.
    session_idle_seconds: int = Field(
        default=1800, ge=60, le=86400, description="a console session ends after this idle time"
    )
    session_max_seconds: int = Field(
        default=43200,
        ge=300,
        le=604800,
        description="a console session ends this long after sign-in",
    )
    metrics_enabled: bool = Field(
        default=True, description="serve Prometheus metrics at /metrics (false: no such route)"
    )
    metrics_allow: str = Field(
        default="127.0.0.1, ::1",
        description="comma-separated client addresses or networks that may read /metrics "
        "directly (a request that came through a proxy is refused)",
    )

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        networks(value)  # a wrong address refuses to start, not every scrape
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.issuer:
            # Every command (the server, the CLI's audit key and checkpoints, the demo) derives
            # the same issuer, and so the same audit log name, from the same variables.
            self.issuer = f"http://127.0.0.1:{self.port}"
        if not self.database_url:
            if self.env == "production":
                raise ConfigurationError(
                    "BACKBONE_ENV=production requires BACKBONE_DATABASE_URL "
                    "(postgresql+psycopg://user@host:5432/name, or an sqlite:/// URL if an "
                    "embedded file is really meant)"
                )
            self.database_url = f"sqlite:///{self.data_dir / 'backbone.db'}"
        if self.job_queue == "procrastinate" and not self.database_url.startswith("postgres"):
            raise ValueError("BACKBONE_JOB_QUEUE=procrastinate needs a PostgreSQL database")
        if self.master_key_file is None and self.env != "production":
            self.master_key_file = self.data_dir / "master.key"
        return self

    @property
    def jobs_in_process(self) -> bool:
        """Whether release jobs run in the serving process (else in ``backbone worker``)."""
        if self.job_queue == "auto":
            return not self.database_url.startswith(("postgres", "postgresql"))
        return self.job_queue == "in-process"

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The addresses or networks of a comma-separated setting (``10.0.0.0/8, ::1``)."""
    out = []
    for item in text.split(","):
        if item.strip():
            try:
                out.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    "expected comma-separated IP addresses or networks (10.0.0.0/8, ::1)"
                ) from None
    return tuple(out)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
