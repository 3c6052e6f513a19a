"""CURVE key files of the bus: one host's folder (`--bus-keys DIR`), and making them for a deployment.

    DIR/server.key                       the public key of the bus's servers (every process)
    DIR/server.key_secret                where a process binds (broker; orders and positions: wake-ups)
    DIR/client.key_secret                where a process connects (every process but the broker)
    DIR/authorized/<role>/<name>.key     where a process binds: the client keys it admits, by role

The files are ZeroMQ certificates (zmq.auth's format: zmq.auth.load_certificate
reads them), made with zmq.curve_keypair: libzmq's CURVE, nothing hand-made.
A secret file must be readable by its owner only (0600), or loading refuses it.
`make_deployment` writes a folder per host from a plan (`tradestream-admin
bus-keys`); `BusKeys.load` reads one, and every problem is one BusKeysError line.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from bus.errors import BusError
from bus.roles import Role

SERVER = "server"  # the pseudo-role of a host that binds bus sockets, in a plan
SECRET_MODE = 0o600
_BANNER = "#   ZeroMQ CURVE {kind} certificate, made by tradestream-admin bus-keys\n"
_SECRET_WARNING = "#   The secret key of this host: keep this file 0600, never copy it elsewhere.\n"


class BusKeysError(BusError):
    """A key folder or key file that cannot be used (missing, unreadable, open to others, malformed)."""


@dataclass(frozen=True)
class Peer:
    """An admitted client key: its name (the file's) and its roles."""

    name: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class BusKeys:
    """One host's keys, z85-encoded as libzmq's socket options take them."""

    folder: str
    server_public: bytes
    server_secret: bytes | None = None
    client_public: bytes | None = None
    client_secret: bytes | None = None
    authorized: dict[bytes, Peer] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str, *, server: bool, client: bool) -> BusKeys:
        """Read `folder`; a process that binds needs `server`'s secret, one that connects `client`'s."""
        root = Path(folder)
        if not root.is_dir():
            raise BusKeysError(f"{folder}: not a folder of bus keys")
        server_public, _ = _read(root / "server.key", secret=False)
        keys = cls(folder, server_public)
        if server:
            public, secret = _read(root / "server.key_secret", secret=True)
            if public != server_public:
                raise BusKeysError(f"{root / 'server.key_secret'}: not the secret of {root / 'server.key'}")
            keys = cls(folder, server_public, secret, authorized=_read_authorized(root / "authorized"))
        if client:
            public, secret = _read(root / "client.key_secret", secret=True)
            keys = cls(folder, keys.server_public, keys.server_secret, public, secret, keys.authorized)
        return keys


def _read(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        info = path.stat()
        public, secret_key = zmq.auth.load_certificate(path)
    except FileNotFoundError:
        raise BusKeysError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise BusKeysError(f"{path}: cannot be read: {exc}") from None
    _check_key(path, "public-key", public)
    if secret:
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise BusKeysError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read a secret key (expected 0600)")
        if info.st_uid != os.geteuid():
            raise BusKeysError(f"{path}: belongs to user id {info.st_uid}, not to this process's user")
        if secret_key is None:
            raise BusKeysError(f"{path}: no secret-key in it")
        _check_key(path, "secret-key", secret_key)
        if zmq.curve_public(secret_key) != public:
            raise BusKeysError(f"{path}: its public-key is not the one of its secret-key")
    return public, secret_key


def _check_key(path: Path, name: str, key: bytes) -> None:
    try:
        valid = len(key) == 40 and len(zmq.utils.z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError, TypeError):
        valid = False
    if not valid:
        raise BusKeysError(f"{path}: its {name} is not a 40-character z85 CURVE key")


def _read_authorized(folder: Path) -> dict[bytes, Peer]:
    found: dict[bytes, set[Role]] = {}
    names: dict[bytes, str] = {}
    for role in Role:
        for path in sorted((folder / role.value).glob("*.key")):
            public, _ = _read(path, secret=False)
            found.setdefault(public, set()).add(role)
            names.setdefault(public, path.stem)
    return {public: Peer(names[public], frozenset(roles)) for public, roles in found.items()}


def write_certificate(path: Path, public: bytes, secret: bytes | None = None, roles: frozenset[Role] = frozenset()) -> None:
    """Write a certificate zmq.auth can read; a secret one is created 0600 (never over an existing file)."""
    lines = [_BANNER.format(kind="secret" if secret else "public")]
    if secret:
        lines.append(_SECRET_WARNING)
    lines.append("\nmetadata\n")
    if roles:
        lines.append(f'    roles = "{",".join(sorted(r.value for r in roles))}"\n')
    lines.append(f'curve\n    public-key = "{public.decode()}"\n')
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"\n')
    mode = SECRET_MODE if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write("".join(lines))


def make_deployment(folder: str, hosts: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    """Key folders for `hosts` (name → roles, `server` for a host that binds) under `folder`/hosts/.

    `folder` keeps the deployment's own copies (server key pair, every client's
    public key in authorized/); running again reuses them and adds new hosts, and
    rewrites every server host's authorized/ so that it admits all clients.
    Returns each host's files.
    """
    for name in hosts:  # all checked before anything is made: a refused name leaves no folder behind
        _check_host_name(name)
    root = Path(folder)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise BusKeysError(f"{folder}: exists and is not a folder") from None
    except OSError as exc:
        raise BusKeysError(f"cannot make {folder}: {exc.strerror}") from None
    os.chmod(root, 0o700)
    if not (root / "server.key_secret").exists():
        public, secret = zmq.curve_keypair()
        write_certificate(root / "server.key_secret", public, secret)
        write_certificate(root / "server.key", public)
    server_public, _ = _read(root / "server.key", secret=False)
    for name, wanted in hosts.items():
        _make_host(root, name, server_public, frozenset(Role(r) for r in wanted if r != SERVER), SERVER in wanted)
    made: dict[str, list[str]] = {}
    for host in sorted((root / "hosts").iterdir()):
        if (host / "server.key_secret").exists():
            _sync_authorized(root / "authorized", host / "authorized")
        made[host.name] = sorted(str(p.relative_to(host)) for p in host.rglob("*") if p.is_file())
    return made


def _check_host_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise BusKeysError(f"{name!r}: a host name is a plain file name")


def _make_host(root: Path, name: str, server_public: bytes, roles: frozenset[Role], binds: bool) -> None:
    host = root / "hosts" / name
    host.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (host / "server.key").exists():
        shutil.copyfile(root / "server.key", host / "server.key")
    if binds and not (host / "server.key_secret").exists():
        fd = os.open(host / "server.key_secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write((root / "server.key_secret").read_bytes())
    if roles and not (host / "client.key_secret").exists():
        public, secret = zmq.curve_keypair()
        write_certificate(host / "client.key_secret", public, secret, roles)
        for role in roles:
            (root / "authorized" / role.value).mkdir(mode=0o700, parents=True, exist_ok=True)
            write_certificate(root / "authorized" / role.value / f"{name}.key", public, roles=roles)


def _sync_authorized(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    if source.exists():
        shutil.copytree(source, target)
    else:
        target.mkdir(mode=0o700)
