"""Test-only host names: ``*.test`` names that this process resolves to loopback addresses without DNS.

The crawl simulator (``pipeline.crawl.simulate``) serves images from many host names (``img-17.sim.test``) on one
machine, each on its own 127.0.0.0/8 address, so per-host behaviour (politeness, robots.txt, connection pools) is
exercised for real. This override makes those names resolve inside the process, for every caller of
``socket.getaddrinfo`` (the fetch client's address check and urllib3's connection alike), and in Beam's worker
processes too, which inherit ``ALTCORPUS_TEST_HOSTS`` from the environment.

It cannot change what a real name means, and it is never on by default: it is installed only when
``ALTCORPUS_TEST_HOSTS`` is set (or a test calls ``override_hosts``), it accepts only names under ``.test`` (RFC 6761
reserves that top-level domain: public DNS never answers for it) and only 127.0.0.0/8 addresses, and it refuses to
install otherwise. The SSRF guard still applies to the answers: fetch connects to them only when the run allows
loopback explicitly (``--allowed-addresses 127.0.0.0/8``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: A JSON object ``{"img-1.sim.test": "127.0.0.2", ...}``, inline or in the file this names.
ENV = "ALTCORPUS_TEST_HOSTS"
#: The only names an override may hold (RFC 6761 section 6.2).
TEST_SUFFIX = ".test"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

log = logging.getLogger("altcorpus")
_hosts: dict[str, str] = {}
_original: Any = None
_lock = threading.Lock()


def checked_hosts(mapping: Mapping[str, str]) -> dict[str, str]:
    """The map with names lower-cased; ``ValueError`` for a name outside ``.test`` or an address outside 127/8."""
    hosts = {}
    for name, address in mapping.items():
        key = str(name).strip().lower().rstrip(".")
        if not key.endswith(TEST_SUFFIX) or key == TEST_SUFFIX[1:]:
            raise ValueError(f"test host override {name!r}: only names under .test may be overridden")
        if ipaddress.ip_address(str(address)) not in LOOPBACK:
            raise ValueError(f"test host override {name!r} -> {address!r}: only 127.0.0.0/8 addresses are allowed")
        hosts[key] = str(address)
    return hosts


def _getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if isinstance(host, str):
        address = _hosts.get(host.lower().rstrip("."))
        if address is not None:
            return _original(address, port, family, type, proto, flags)  # an IP literal: no DNS involved
    return _original(host, port, family, type, proto, flags)


def install(mapping: Mapping[str, str]) -> None:
    """Resolve these ``.test`` names to these loopback addresses in this process (checked first; adds to any
    names already installed)."""
    global _original
    hosts = checked_hosts(mapping)
    with _lock:
        _hosts.update(hosts)
        if _original is None:
            _original = socket.getaddrinfo
            socket.getaddrinfo = _getaddrinfo


def uninstall() -> None:
    """Forget every overridden name and give ``socket.getaddrinfo`` back."""
    global _original
    with _lock:
        _hosts.clear()
        if _original is not None:
            socket.getaddrinfo = _original
            _original = None


@contextmanager
def override_hosts(mapping: Mapping[str, str]) -> Iterator[None]:
    """``with override_hosts({"img-1.sim.test": "127.0.0.2"}): ...`` in this process only."""
    install(mapping)
    try:
        yield
    finally:
        uninstall()


def install_from_environment() -> bool:
    """Install the names ``ALTCORPUS_TEST_HOSTS`` holds (inline JSON or a JSON file); False when it is unset."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return False
    if value.startswith("{"):
        mapping = json.loads(value)
    else:
        with open(value, encoding="utf-8") as file:
            mapping = json.load(file)
    install(mapping)
    log.warning("%s: %d test-only .test host names resolve to loopback in this process", ENV, len(mapping))
    return True
