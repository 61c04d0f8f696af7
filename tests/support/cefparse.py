"""A strict CEF parser written from "Implementing ArcSight CEF" rev 25 (a test oracle).

Strict means: anything the spec does not allow is an AssertionError, not a best guess. The header has
exactly seven '|'-separated fields after "CEF:", where only ``\\|`` and ``\\\\`` are escapes; the extension
is ``key=value`` pairs separated by spaces, where only ``\\\\``, ``\\=``, ``\\n`` and ``\\r`` are escapes, an
unescaped '=' may only end a key, keys are [A-Za-z0-9_] and unique, and no raw CR or LF occurs anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Cef", "SyslogCef", "parse", "parse_extension", "parse_syslog", "unescape_value"]

_KEY_CHAR = re.compile(r"[A-Za-z0-9_]")
_SYSLOG = re.compile(
    r"^<(\d{1,3})>((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d) ([\x21-\x7e]+) (CEF:.*)$",
    re.S,
)
_EXT_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
_LABELLED = re.compile(
    r"^(cs[1-6]|cn[1-3]|cfp[1-4]|flexString[12]|flexNumber[12]|deviceCustomDate[12]|c6a[1-4])$"
)


@dataclass(frozen=True)
class Cef:
    version: int
    vendor: str
    product: str
    device_version: str
    signature: str
    name: str
    severity: int
    extension: dict[str, str] = field(default_factory=dict)

    def labelled(self) -> dict[str, str]:
        """The extension with each labelled custom slot (cs1 + cs1Label, ...) under its label."""
        out: dict[str, str] = {}
        for key, value in self.extension.items():
            if key.endswith("Label") and _LABELLED.match(key[:-5]):
                continue
            if _LABELLED.match(key):
                label = self.extension.get(f"{key}Label")
                assert label, f"custom slot {key} without {key}Label"
                assert label not in out, f"label {label!r} used twice"
                out[label] = value
            else:
                out[key] = value
        for key in self.extension:
            if key.endswith("Label") and _LABELLED.match(key[:-5]):
                assert key[:-5] in self.extension, f"{key} without {key[:-5]}"
        return out


@dataclass(frozen=True)
class SyslogCef:
    pri: int
    timestamp: str
    host: str
    cef: Cef


def parse_syslog(message: bytes) -> SyslogCef:
    """Parse ``<PRI>Mmm dd hh:mm:ss host CEF:...`` (UTF-8, one line)."""
    text = message.decode("utf-8")  # strict: invalid UTF-8 raises
    m = _SYSLOG.match(text)
    assert m, f"not a syslog CEF line: {text[:200]!r}"
    return SyslogCef(int(m[1]), m[2], m[3], parse(m[4]))


def parse(text: str) -> Cef:
    """Parse one CEF record starting with "CEF:"."""
    assert "\n" not in text and "\r" not in text, "raw CR or LF in a CEF record"
    assert text.startswith("CEF:"), f"does not start with CEF: {text[:50]!r}"
    fields: list[str] = []
    cur: list[str] = []
    i = 4
    while len(fields) < 7:
        assert i < len(text), f"header has {len(fields)} of 7 fields"
        c = text[i]
        if c == "\\":
            assert i + 1 < len(text) and text[i + 1] in "\\|", (
                f"bad header escape at {i}: {text[i : i + 2]!r}"
            )
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "|":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    version, vendor, product, dev_version, signature, name, severity = fields
    assert version.isdigit(), f"CEF version {version!r}"
    assert severity.isdigit() and 0 <= int(severity) <= 10, f"severity {severity!r} is not 0-10"
    for label, value in (("vendor", vendor), ("product", product), ("version", dev_version)):
        assert value, f"empty header field {label}"
    assert signature and name, "empty signature id or name"
    return Cef(
        int(version), vendor, product, dev_version, signature, name, int(severity), parse_extension(text[i:])
    )


def parse_extension(ext: str) -> dict[str, str]:
    """Parse the extension: space-separated key=value pairs (see the module docstring)."""
    out: dict[str, str] = {}
    if ext == "":
        return out
    # positions of unescaped '=' (each must end a key)
    eqs: list[int] = []
    i = 0
    while i < len(ext):
        c = ext[i]
        if c == "\\":
            assert i + 1 < len(ext) and ext[i + 1] in _EXT_ESCAPES, f"bad extension escape {ext[i : i + 2]!r}"
            i += 2
            continue
        if c == "=":
            eqs.append(i)
        i += 1
    assert eqs, f"extension without a key: {ext[:80]!r}"
    starts: list[int] = []
    for eq in eqs:
        k = eq
        while k > 0 and _KEY_CHAR.match(ext[k - 1]):
            k -= 1
        assert k < eq, f"'=' without a key at {eq}: {ext[max(0, eq - 20) : eq + 5]!r}"
        assert k == 0 or ext[k - 1] == " ", (
            f"unescaped '=' inside a value at {eq}: {ext[max(0, eq - 30) : eq + 5]!r}"
        )
        starts.append(k)
    assert starts[0] == 0, f"extension does not start with a key: {ext[:40]!r}"
    for n, (k, eq) in enumerate(zip(starts, eqs, strict=True)):
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(ext)
        key = ext[k:eq]
        assert key not in out, f"duplicate key {key!r}"
        out[key] = unescape_value(ext[eq + 1 : end])
    return out


def unescape_value(raw: str) -> str:
    """An extension value with its escapes resolved; AssertionError on one the spec does not define."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            assert i + 1 < len(raw) and raw[i + 1] in _EXT_ESCAPES, f"bad escape {raw[i : i + 2]!r}"
            out.append(_EXT_ESCAPES[raw[i + 1]])
            i += 2
            continue
        assert c != "=", "unescaped '=' in a value"
        out.append(c)
        i += 1
    return "".join(out)
