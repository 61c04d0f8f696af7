"""Reading config.json and the environment into settings, and every refusal into one `ConfigError`.

The loaders collect every problem at once: config.json's under the file's absolute path, the
environment's under "environment". Each problem names the JSON path or variable, the bad value
(shortened, never a secret) and what is expected; a misspelt option gets a "did you mean" from the
options valid at that place. The loaders raise nothing but `ConfigError`.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from siemconn.config.model import Configuration, SchedulerConfig
from siemconn.config.rules import Strict
from siemconn.config.server import ServerConfig
from siemconn.config.settings import Credentials, LocalSettings, Settings
from siemconn.errors import ConfigError

__all__ = ["ConfigFile", "load_configuration", "load_local_settings", "load_settings", "suggest_key"]


class ConfigFile(Strict):
    """config.json's top level: one `configuration` object and nothing else."""

    configuration: Configuration


# --- loading -------------------------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


_EXPECT = {
    "missing": "is missing; expected this field",
    "extra_forbidden": "is not a known option; check its spelling against the README's configuration reference",
    "bool_type": "is not a boolean; expected true or false",
    "bool_parsing": "is not a boolean; expected true or false",
    "string_type": "is not a string; expected text in double quotes",
    "list_type": "is not a list; expected [ ... ]",
    "model_type": "is not an object; expected { ... }",
    "dict_type": "is not an object; expected { ... }",
    "too_short": "is empty; expected at least one entry",
    "int_type": "is not an integer",
    "float_type": "is not a number",
}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The option names valid at the object that holds `loc`'s last key (for "did you mean")."""
    inner: dict[str, type[BaseModel]] = {
        "configuration": Configuration,
        "server": ServerConfig,
        "scheduler": SchedulerConfig,
    }
    model: type[BaseModel] = ConfigFile
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: the item's model is the list's
            continue
        nxt = inner.get(str(part))
        if str(part) not in model.model_fields or nxt is None:
            return []
        model = nxt
    return list(model.model_fields)


def suggest_key(key: str, known: list[str]) -> str | None:
    """The known option closest to a misspelt `key` (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    return match[0] if match else None


def _problems(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    out: list[str] = []
    for e in exc.errors(include_url=False):
        loc = prefix + tuple(e["loc"])
        # the tagged-union / after-validator noise pydantic adds
        loc = tuple(p for p in loc if p not in ("function-after[_tls_pair(), ServerConfig]",))
        kind = e["type"]
        path = _path(loc)
        if kind == "missing":
            out.append(f"{path} {_EXPECT['missing']}")
            continue
        value = _short(e.get("input"))
        if kind == "extra_forbidden" and loc:
            near = suggest_key(str(loc[-1]), _known_keys(loc))
            if near is not None:
                out.append(f'{path} is not a known option; did you mean "{near}"?')
                continue
        if kind == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            out.append(f"{path}: {value} is not allowed; expected one of {expected}")
        elif kind in _EXPECT:
            out.append(f"{path}: {value} {_EXPECT[kind]}")
        elif kind == "value_error":
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            out.append(f"{path}: {msg}")
        else:
            out.append(f"{path}: {value} {e.get('msg')}")
    return out


def _read_json(path: Path) -> Any:
    path = path.absolute()  # every message names the file the process actually looked for
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = "file not found; pass --config PATH to an existing config.json (see config.example.json)"
    except IsADirectoryError:
        problem = "is a directory; expected a config.json file"
    except PermissionError:
        problem = "permission denied; make the file readable by the user running siemconn"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"
    except OSError as exc:
        problem = f"cannot read ({exc.strerror}); check the path"
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix the syntax there"
    except RecursionError:
        problem = "JSON nested too deeply; expected the config.json shape"
    raise ConfigError([f"{path}: {problem}"], source=str(path))


def _secret_file(environ: dict[str, str]) -> Path | None:
    name = environ.get("CLIENT_SECRET_FILE")
    return Path(name) if name and not environ.get("CLIENT_SECRET") else None


def _credentials(environ: dict[str, str]) -> tuple[Credentials | None, list[str]]:
    env = dict(environ)
    problems: list[str] = []
    secret_file_failed = False
    secret_file = env.get("CLIENT_SECRET_FILE")
    if secret_file and not env.get("CLIENT_SECRET"):
        try:
            env["CLIENT_SECRET"] = Path(secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            secret_file_failed = True
            problems.append(
                f"env CLIENT_SECRET_FILE: {secret_file!r} cannot be read ({reason}); "
                "expected a readable file holding the client secret"
            )
    for name, what in (
        ("BASE_URL", "the Vectra portal URL, e.g. https://tenant.uw2.portal.vectra.ai"),
        ("CLIENT_ID", "the API client id"),
        ("CLIENT_SECRET", "the API client secret (or CLIENT_SECRET_FILE pointing to a file)"),
    ):
        if not env.get(name, "").strip() and not (name == "CLIENT_SECRET" and secret_file_failed):
            problems.append(f"env {name} is not set; expected {what}")
    if problems:
        return None, problems
    try:
        creds = Credentials.model_validate({k: env[k] for k in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET")})
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            name = str(e["loc"][0]).upper() if e["loc"] else "?"
            if name == "CLIENT_SECRET":
                problems.append("env CLIENT_SECRET is invalid; expected the API client secret")
            else:
                problems.append(f"env {name}: {_short(e.get('input'))} {e.get('msg')}")
        return None, problems
    return creds, []


def load_settings(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Settings:
    """Load and validate config.json and the environment; raise ConfigError listing every problem."""
    try:
        return _load(Path(path), dict(os.environ if environ is None else environ))
    except ConfigError:
        raise
    except Exception as exc:  # the loader never raises anything but ConfigError
        raise ConfigError([f"{path}: cannot be loaded ({type(exc).__name__}); check the file"]) from None


def load_local_settings(path: str | os.PathLike[str]) -> LocalSettings:
    """Load and validate config.json alone (no API credentials), for `status` and `send-test`."""
    p = Path(path)
    try:
        return LocalSettings(configuration=_load_file(p), config_path=p)
    except ConfigError:
        raise
    except Exception as exc:  # the loader never raises anything but ConfigError
        raise ConfigError([f"{path}: cannot be loaded ({type(exc).__name__}); check the file"]) from None


def load_configuration(path: str | os.PathLike[str]) -> Configuration:
    """Validate config.json alone (no environment), for tools that need only the file."""
    return _load_file(Path(path))


def _file_problems(raw: Any) -> tuple[Configuration | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f'(top level): {_short(raw)} is not an object; expected {{"configuration": {{...}}}}']
    try:
        return ConfigFile.model_validate(raw).configuration, []
    except ValidationError as exc:
        return None, _problems(exc)


def _load_file(path: Path) -> Configuration:
    configuration, problems = _file_problems(_read_json(path))
    if configuration is None:
        raise ConfigError(problems, source=str(path.absolute()))
    return configuration


def _load(path: Path, environ: dict[str, str]) -> Settings:
    configuration, problems = _file_problems(_read_json(path))
    creds, env_problems = _credentials(environ)
    if problems or env_problems or configuration is None or creds is None:
        raise ConfigError(problems, source=str(path.absolute()), environment=env_problems)
    return Settings(
        configuration=configuration, credentials=creds, config_path=path, secret_file=_secret_file(environ)
    )
