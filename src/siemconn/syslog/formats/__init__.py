"""The output formats, one module each, and `FORMATS`, the registry a server's `format` is resolved in.

* `base`: what a format is (`SyslogFormat`; `MappedFormat` for the SIEM-native ones) and the header
  parts formats share;
* `legacy`, `rfc5424`, `rfc3164`: the stored event JSON behind a syslog header;
* `cef`, `leef`: the event mapped to fields (siemconn.syslog.mapping) and written by
  `siemconn.syslog.cef` / `siemconn.syslog.leef`.

`siemconn.syslog.format.Formatter` looks a server's format up here once, when it is built, and asks the
format object everything format-specific (docs/architecture.md, "How to add a format"): adding a format
is a module here and its line in `FORMATS`. config.json accepts the names of
`siemconn.config.FormatName`; the config layer sits below the sink and cannot import this registry, so
tests/unit/syslog/test_formats.py fails until the two name the same formats.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from siemconn.syslog.formats.base import MappedFormat, SyslogFormat
from siemconn.syslog.formats.cef import Cef
from siemconn.syslog.formats.leef import Leef
from siemconn.syslog.formats.legacy import Legacy
from siemconn.syslog.formats.rfc3164 import Rfc3164
from siemconn.syslog.formats.rfc5424 import Rfc5424

__all__ = ["FORMATS", "FormatClass", "MappedFormat", "SyslogFormat"]

FormatClass = type[SyslogFormat]

# the registry: the name config.json's `format` gives -> the format's class
FORMATS: Final[Mapping[str, FormatClass]] = MappingProxyType(
    {
        "legacy": Legacy,
        "rfc5424": Rfc5424,
        "rfc3164": Rfc3164,
        "cef": Cef,
        "leef": Leef,
    }
)
