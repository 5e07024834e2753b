"""The test-only host-name override: only ``*.test`` names, only loopback addresses, off unless asked for."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.net.errors import FetchError
from pipeline.net.resolver import ENV, checked_hosts, install_from_environment, override_hosts, uninstall
from pipeline.net.safety import AddressPolicy, check_url


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"example.com": "127.0.0.2"}, "only names under .test"),
        ({"test": "127.0.0.2"}, "only names under .test"),
        ({"cdn.example.org.": "127.0.0.2"}, "only names under .test"),
        ({"img.sim.test": "10.0.0.1"}, "only 127.0.0.0/8"),
        ({"img.sim.test": "::1"}, "only 127.0.0.0/8"),
    ],
)
def test_real_names_and_other_addresses_are_refused(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checked_hosts(mapping)


def test_an_override_resolves_in_process_and_the_address_guard_still_applies() -> None:
    original = socket.getaddrinfo
    with override_hosts({"IMG-1.Sim.Test": "127.0.0.9"}):
        assert socket.getaddrinfo("img-1.sim.test.", 80)[0][4][0] == "127.0.0.9"
        with pytest.raises(FetchError, match=r"127\.0\.0\.9 is not a public address"):
            check_url("http://img-1.sim.test/a.jpg", AddressPolicy())
        assert check_url("http://img-1.sim.test/a.jpg", AddressPolicy(False, ["127.0.0.0/8"])).addresses == (
            "127.0.0.9",
        )
        assert socket.getaddrinfo("127.0.0.1", 80)[0][4][0] == "127.0.0.1"  # everything else: the real resolver
    assert socket.getaddrinfo is original


def test_the_environment_switches_it_on_and_nothing_else_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert install_from_environment() is False
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"a.sim.test": "127.0.0.3"}))
    monkeypatch.setenv(ENV, str(hosts))
    try:
        assert install_from_environment() is True
        assert socket.getaddrinfo("a.sim.test", 80)[0][4][0] == "127.0.0.3"
    finally:
        uninstall()
    # A fresh process (as a Beam worker is) picks the names up from its environment when pipeline.net is imported.
    code = "import socket, pipeline.net.safety; print(socket.getaddrinfo('b.sim.test', 80)[0][4][0])"
    env = {"PATH": "/usr/bin:/bin", ENV: '{"b.sim.test": "127.0.0.4"}'}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "127.0.0.4", result.stderr
