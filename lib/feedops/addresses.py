"""Addresses in the configuration: CTP front URLs and tick-sink URLs, checked and shown without secrets.

THE checks of hosts, ports, fronts (``tcp://host:port``) and sinks (``file:<dir>``,
``redis://host:port/db``): the settings model's validators (validate_env, every CLI) and
the worker when it opens the sink use them. :func:`public_target` drops the user info of a
Redis URL before it is shown or logged; :func:`mask_url` keeps the user and stars the password
(validate_env's report).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

FRONT_RE = re.compile(r"^(?P<scheme>tcp|ssl)://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]+)$")

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host: str) -> str | None:
    """None when ``host`` is an IP literal (IPv4, or IPv6 in brackets) or an RFC 1123 hostname, else the reason.

    A name of digits and dots only must be a valid IPv4 address (``256.256.256.256`` and ``999`` are
    neither), and a hostname's last label is not all digits."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return None
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
            return None
        except ValueError:
            return f"{host!r} is neither an IPv4 address (four numbers 0-255) nor a hostname"
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return (f"{host!r} is not a valid hostname (RFC 1123: labels of 1-63 letters, digits and hyphens, "
                "no leading or trailing hyphen, the last not all digits)")
    return None


def check_port(text: str) -> str | None:
    """None when ``text`` is a TCP port 1-65535, else the reason."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"port {text or '(none)'} is out of range 1-65535"
    return None


def check_front_url(url: str) -> str | None:
    """Return None when ``url`` is a well-formed front address, else the reason."""
    m = FRONT_RE.match(url)
    if not m:
        return f"{url!r} is not of the form tcp://host:port"
    reason = check_host(m.group("host")) or check_port(m.group("port"))
    return f"{reason} in {url!r}" if reason else None


SINK_FORMS = "file:<dir> (e.g. file:var/feed) or redis://host:port/db (db a whole number, e.g. redis://127.0.0.1:6379/0)"


def check_sink_url(url: str) -> str | None:
    """None when ``url`` is a usable FEEDOPS_SINK_URL, else the reason: THE check of sink URLs, used by the
    settings model (validate_env, every CLI) and by the worker when it opens the sink."""
    if url.startswith("file:"):
        if not url[len("file:"):].replace("//", "", 1):
            return "the file: sink needs a directory, e.g. file:var/feed"
        return None
    if not url.startswith("redis://"):
        return f"{public_target(url)!r} is neither file:<dir> nor redis://host:port/db"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return f"the port of {public_target(url)!r} is out of range 1-65535"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not parts.hostname:
        return f"{public_target(url)!r} names no host"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    reason = check_host(host) or (check_port("" if port is None else str(port)) if port is not None or netloc.endswith(":") else None)
    if reason:
        return f"{reason} in {public_target(url)!r}"
    db = parts.path[1:] if parts.path.startswith("/") else parts.path
    if db and not db.isdigit():
        return f"the database {db!r} of {public_target(url)!r} is not a whole number (redis://host:port/0)"
    if parts.query or parts.fragment:
        return f"{public_target(url)!r} has a query or fragment; use redis://host:port/db"
    return None


def public_target(url: str) -> str:
    """A sink URL without user info (a Redis password must never be shown or logged)."""
    parsed = urlsplit(url)
    if parsed.scheme == "redis" and (parsed.username or parsed.password):
        host = parsed.hostname or ""
        try:
            netloc = f"{host}:{parsed.port}" if parsed.port else host
        except ValueError:
            netloc = host
        return parsed._replace(netloc=netloc).geturl()
    return url


def mask_url(url: str) -> str:
    """``url`` without a password in its user-info part (redis://:pw@host -> redis://:***@host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
