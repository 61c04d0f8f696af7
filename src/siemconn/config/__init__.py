"""One typed settings object: config.json (the reference connector's format) plus environment.

`load_settings(path)` loads both (for `run` and `check`); `load_local_settings(path)` loads config.json
alone, for the commands that never call the API (`status`, `send-test`), so they run without
BASE_URL / CLIENT_ID / CLIENT_SECRET; `load_configuration(path)` returns the file's `configuration`
for tools that need only it. Invariants:

* the loaders report every problem at once in a `ConfigError`, config.json's under the file's absolute
  path and the environment's under "environment", each naming the JSON path or variable, the bad
  value and what is expected; they never raise anything else and never print a secret;
* a loaded object is frozen and holds canonical values only (facility and severity numbers, upper-case
  protocols, validated cron expressions), so no consumer re-validates or re-normalises;
* the credentials come from the environment only, never from config.json.

Modules, one concept each:

* `rules`: the before-validator vocabulary every option's rule is built from;
* `streams`: the stream names;
* `cron`: cron expressions as aiocron 2 (cronsim) runs them;
* `hosts`: host and loopback syntax;
* `server`: `ServerConfig`, one syslog destination, and the syslog names it uses;
* `model`: `SchedulerConfig` and `Configuration`, the `configuration` object;
* `settings`: `Credentials`, `LocalSettings` and `Settings`;
* `loader`: reading the file and the environment, and formatting the problems.
"""

from siemconn.config.cron import CRON_NICKNAMES, validate_cron
from siemconn.config.hosts import is_loopback, is_valid_host
from siemconn.config.loader import (
    ConfigFile,
    load_configuration,
    load_local_settings,
    load_settings,
    suggest_key,
)
from siemconn.config.model import MAX_PACED_BATCH_SECONDS, Configuration, SchedulerConfig
from siemconn.config.server import (
    DEFAULT_FORMAT,
    DEFAULT_RELP_WINDOW,
    DEFAULT_UDP_MESSAGE_SIZE,
    DEFAULT_UDP_RATE_LIMIT,
    FACILITIES,
    FORMAT_NAMES,
    LEEF_DELIMITERS,
    LEGACY_HOSTNAME,
    SEVERITIES,
    FormatName,
    ServerConfig,
)
from siemconn.config.settings import Credentials, LocalSettings, Settings
from siemconn.config.streams import (
    LIST_SNAPSHOT,
    OBJECT_SNAPSHOT,
    OFF,
    REQUIRED_STREAMS,
    STREAM_DEFS,
    STREAM_TABLE,
    STREAMS,
    StreamDef,
)

__all__ = [
    "CRON_NICKNAMES",
    "DEFAULT_FORMAT",
    "DEFAULT_RELP_WINDOW",
    "DEFAULT_UDP_MESSAGE_SIZE",
    "DEFAULT_UDP_RATE_LIMIT",
    "FACILITIES",
    "FORMAT_NAMES",
    "LEEF_DELIMITERS",
    "LEGACY_HOSTNAME",
    "MAX_PACED_BATCH_SECONDS",
    "LIST_SNAPSHOT",
    "OBJECT_SNAPSHOT",
    "OFF",
    "REQUIRED_STREAMS",
    "SEVERITIES",
    "STREAMS",
    "STREAM_DEFS",
    "STREAM_TABLE",
    "StreamDef",
    "ConfigFile",
    "FormatName",
    "Configuration",
    "Credentials",
    "LocalSettings",
    "SchedulerConfig",
    "ServerConfig",
    "Settings",
    "is_loopback",
    "is_valid_host",
    "load_configuration",
    "load_local_settings",
    "load_settings",
    "suggest_key",
    "validate_cron",
]
