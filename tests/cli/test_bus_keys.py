"""`tradestream-admin bus-keys`: a key folder per host, secrets 0600, hosts added later authorized everywhere."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bus.curvekeys import BusKeys
from bus.roles import Role


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "store.admin", *args], capture_output=True, text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bus_keys_makes_one_folder_per_host_and_adds_hosts_later(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    done = admin("bus-keys", str(folder), "--host", "bus=server,publisher", "--host", "web=subscriber,control", "--json")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["hosts"]) == {"bus", "web"}
    hosts = folder / "hosts"
    secrets = [hosts / "bus" / "server.key_secret", hosts / "bus" / "client.key_secret", hosts / "web" / "client.key_secret"]
    assert [mode(path) for path in secrets] == [0o600] * 3
    assert not (hosts / "web" / "server.key_secret").exists()  # a host that only connects never holds the server's secret
    assert mode(hosts / "web") == 0o700
    web_key = BusKeys.load(str(hosts / "web"), server=False, client=True).client_public
    served = BusKeys.load(str(hosts / "bus"), server=True, client=True)
    assert served.authorized[web_key].roles == {Role.SUBSCRIBER, Role.CONTROL}

    again = admin("bus-keys", str(folder), "--host", "web2=subscriber")
    assert again.returncode == 0, again.stderr
    assert BusKeys.load(str(hosts / "web"), server=False, client=True).client_public == web_key  # kept
    web2_key = BusKeys.load(str(hosts / "web2"), server=False, client=True).client_public
    served = BusKeys.load(str(hosts / "bus"), server=True, client=True)
    assert served.authorized[web2_key].roles == {Role.SUBSCRIBER} and web_key in served.authorized


@pytest.mark.parametrize("plan", ["web=reader", "web=", "=subscriber", "web", "web=,", "web= , "])
def test_a_bad_host_plan_is_one_line_and_exit_2(tmp_path: Path, plan: str) -> None:
    done = admin("bus-keys", str(tmp_path / "keys"), "--host", plan)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--host" in done.stderr and not (tmp_path / "keys").exists()


def test_an_unknown_role_is_named_with_every_known_one_server_included(tmp_path: Path) -> None:
    done = admin("bus-keys", str(tmp_path / "keys"), "--host", "web=reader")
    assert done.stderr.strip().endswith("unknown role 'reader' (known: publisher, subscriber, control, server)"), done.stderr


def test_a_host_named_twice_has_the_roles_of_both_and_a_trailing_comma_is_passed_over(tmp_path: Path) -> None:
    # `--host bus=server --host bus=publisher,` made a bus without its server keys (the last --host won), or a traceback.
    folder = tmp_path / "keys"
    done = admin("bus-keys", str(folder), "--host", "bus=server", "--host", "bus=publisher,", "--host", "web=subscriber")
    assert done.returncode == 0, done.stderr
    bus = BusKeys.load(str(folder / "hosts" / "bus"), server=True, client=True)
    assert bus.authorized[bus.client_public].roles == {Role.PUBLISHER}


def test_a_folder_that_cannot_be_made_or_a_refused_host_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    taken = tmp_path / "demo.json"
    taken.write_text("")
    refused = admin("bus-keys", str(taken), "--host", "a=publisher")
    assert refused.returncode == 1 and refused.stderr.strip().endswith(f"{taken}: exists and is not a folder"), refused.stderr
    assert "Errno" not in refused.stderr
    folder = tmp_path / "keys"
    outside = admin("bus-keys", str(folder), "--host", "../x=publisher")
    assert outside.returncode == 1 and "a host name is a plain file name" in outside.stderr, outside.stderr
    assert not folder.exists()  # was left behind, with a server key pair nobody asked for
