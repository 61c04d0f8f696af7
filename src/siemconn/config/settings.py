"""The validated settings the commands take: config.json alone, or config.json plus the credentials.

The credentials come from the environment only (BASE_URL, CLIENT_ID, CLIENT_SECRET or
CLIENT_SECRET_FILE), never from config.json. `LocalSettings` has no credentials at all, so a command
that takes it (`status`, `send-test`) cannot reach for one; `Settings` adds them. Plain http is
refused unless the API host is this machine, since the secret and every token would cross in clear.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from siemconn.config.hosts import is_loopback
from siemconn.config.model import Configuration
from siemconn.config.rules import custom_error
from siemconn.config.server import ServerConfig

__all__ = ["Credentials", "LocalSettings", "Settings"]

_URL_RE = re.compile(
    r"^(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?(/[^\s]*)?$"
)


class Credentials(BaseSettings):
    """BASE_URL, CLIENT_ID and CLIENT_SECRET (or CLIENT_SECRET_FILE) from the environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True)

    base_url: str = Field(validation_alias=AliasChoices("BASE_URL"))
    client_id: str = Field(validation_alias=AliasChoices("CLIENT_ID"))
    client_secret: SecretStr = Field(validation_alias=AliasChoices("CLIENT_SECRET"))

    @field_validator("base_url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        v = str(v).strip()
        m = _URL_RE.match(v)
        if not m:
            raise custom_error(
                "url", "is not a URL; expected https://HOST such as https://tenant.uw2.portal.vectra.ai"
            )
        if m.group("scheme").lower() == "http" and not is_loopback(m.group("host")):
            raise custom_error(
                "plain_http",
                "uses plain http to a host that is not this machine, which would send the client secret "
                "and every token unencrypted; expected https:// (plain http is allowed only for "
                "loopback hosts: 127.0.0.0/8, ::1, localhost)",
            )
        return v.rstrip("/")

    @field_validator("client_id", mode="before")
    @classmethod
    def _client_id(cls, v: Any) -> Any:
        if not str(v).strip():
            raise custom_error("empty", "is empty; expected the API client id from the Vectra UI")
        return str(v).strip()


class LocalSettings(BaseModel):
    """config.json, validated, without the API credentials: what `status` and `send-test` need.

    The commands that never call the Vectra API take this type, so they cannot reach for a credential
    and run with BASE_URL / CLIENT_ID / CLIENT_SECRET unset. `Settings` adds the credentials.
    """

    model_config = ConfigDict(frozen=True)

    configuration: Configuration
    config_path: Path
    secret_file: Path | None = None  # CLIENT_SECRET_FILE when the secret came from it (permission check)

    @property
    def servers(self) -> list[ServerConfig]:
        return self.configuration.server

    @property
    def data_dir(self) -> Path:
        return self._rel(self.configuration.data_dir)

    @property
    def log_dir(self) -> Path:
        return self._rel(self.configuration.log_dir)

    @property
    def cert_dir(self) -> Path:
        return self._rel(self.configuration.cert_dir)

    def _rel(self, p: str) -> Path:
        """Relative directories are taken from the current directory, as the reference does."""
        return Path(p)


class Settings(LocalSettings):
    """Everything siemconn needs, validated: the parsed config.json and the credentials."""

    credentials: Credentials
