"""Host names and addresses as config.json and the environment give them.

Only the syntax is checked (nothing is resolved), so loading a config never touches the network.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_loopback", "is_valid_host"]

_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), the only hosts plain http may reach."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_valid_host(host: str) -> bool:
    """True for an IPv4 or IPv6 literal or an RFC 1123 hostname."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    if len(host) > 253 or host.endswith(".."):
        return False
    labels = host.rstrip(".").split(".")
    return all(_HOST_LABEL_RE.match(label) for label in labels) and not labels[-1].isdigit()
