"""siemconn.config.settings: the credentials from the environment (BASE_URL https unless loopback, the
client secret or its file), never shown in a repr or an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.configs import ENV, REFERENCE, SECRET, problems, reference, write_config

from siemconn.config import (
    load_settings,
)
from siemconn.errors import ConfigError


def test_missing_env_vars_all_reported(tmp_path: Path) -> None:
    msgs = problems(tmp_path, REFERENCE, env={})
    assert msgs == [
        "env BASE_URL is not set; expected the Vectra portal URL, e.g. https://tenant.uw2.portal.vectra.ai",
        "env CLIENT_ID is not set; expected the API client id",
        "env CLIENT_SECRET is not set; expected the API client secret (or CLIENT_SECRET_FILE pointing to a file)",
    ]


def test_base_url_must_be_http(tmp_path: Path) -> None:
    msgs = problems(tmp_path, REFERENCE, env={**ENV, "BASE_URL": "tenant.portal.vectra.ai"})
    assert msgs == [
        'env BASE_URL: "tenant.portal.vectra.ai" is not a URL; expected https://HOST such as '
        "https://tenant.uw2.portal.vectra.ai"
    ]


def test_client_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    env = {"BASE_URL": "http://127.0.0.1:1", "CLIENT_ID": "cid", "CLIENT_SECRET_FILE": str(f)}
    s = load_settings(write_config(tmp_path, REFERENCE), env)
    assert s.credentials.client_secret.get_secret_value() == SECRET
    msgs = problems(tmp_path, REFERENCE, env={**env, "CLIENT_SECRET_FILE": str(tmp_path / "absent")})
    assert len(msgs) == 1 and "CLIENT_SECRET_FILE" in msgs[0] and "cannot be read" in msgs[0]


def test_secret_never_in_repr_or_errors(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, REFERENCE), ENV)
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    bad = reference(server_port=0)
    text = str(pytest.raises(ConfigError, load_settings, write_config(tmp_path, bad), ENV).value)
    assert SECRET not in text


@pytest.mark.parametrize(
    "url", ["http://tenant.uw2.portal.vectra.ai", "HTTP://10.0.0.5:8080", "http://[2001:db8::1]"]
)
def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path, url: str) -> None:
    msgs = problems(tmp_path, REFERENCE, env={**ENV, "BASE_URL": url})
    assert len(msgs) == 1 and msgs[0].startswith("env BASE_URL:")
    assert "expected https://" in msgs[0] and "loopback" in msgs[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:1",
        "http://[::1]:9",
        "https://[2001:db8::1]",
    ],
)
def test_plain_http_to_loopback_and_https_anywhere_are_allowed(tmp_path: Path, url: str) -> None:
    assert (
        load_settings(write_config(tmp_path, REFERENCE), {**ENV, "BASE_URL": url}).credentials.base_url == url
    )
