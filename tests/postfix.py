"""A real Postfix on loopback for the end-to-end mail test.

Its own configuration in a temporary directory (config, queue, data, log and mailboxes
all under it), listening on 127.0.0.1 only, relaying nowhere: mail for ``company.com``
is delivered by Postfix's ``virtual`` agent into one Maildir (each copy says its
recipient in ``Delivered-To``), anything else bounces. STARTTLS required (mail in the
clear is refused), with a certificate made here by trustme; SMTPUTF8 on; and bare
newlines refused, as a strict company relay has them: ``smtpd_forbid_bare_newline =
reject`` with no exclusions. (``yes`` means ``normalize`` in Debian 12's Postfix 3.7.11,
as in 3.9 (its changelog, 20240112): a bare LF is accepted and rewritten, not refused.
And the default exclusions, ``$mynetworks``, would exempt this test's loopback client
anyway.)

Postfix's master must be started by root (it binds the port and drops to the
``postfix`` user); `scripts/bootstrap --test` installs the package, unconfigured, so no
system-wide Postfix runs. A machine without it fails the test that needs it, with a
message saying so, rather than skipping it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import free_port

POSTFIX = Path("/usr/sbin/postfix")
DOMAIN = "company.com"
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


@dataclass(frozen=True)
class Postfix:
    root: Path
    port: int
    ca_file: Path

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def env(self) -> dict[str, str]:
        """What a user exports to send through this server."""
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": "starttls",
            "SMTP_CA_FILE": str(self.ca_file),
        }

    def delivered(self) -> list[Path]:
        """Every message delivered so far, one file per recipient."""
        return sorted((self.root / "mail" / "inbox" / "new").glob("*"))

    def queued(self) -> list[Path]:
        spool = self.root / "spool"
        return [p for q in QUEUES for p in (spool / q).rglob("*") if p.is_file()]

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until Postfix has delivered (or bounced) everything it accepted."""
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                pytest.fail(f"Postfix still holds {len(self.queued())} message(s):\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _main_cf(root: Path, owner: pwd.struct_passwd) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = mail.{DOMAIN}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
default_transport = error:this test server relays nowhere
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
virtual_minimum_uid = 1
smtpd_tls_chain_files = {root}/etc/server.pem
smtpd_tls_security_level = encrypt
smtputf8_enable = yes
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
biff = no
"""


def _master_cf(port: int) -> str:
    """Debian's services, unchrooted (a chroot would need copies of system files), with
    smtpd on 127.0.0.1:``port`` instead of every address's port 25, and no other listener.

    From the package's pristine copy, not /etc/postfix/master.cf: a machine whose Postfix is
    configured may have more listeners there (submission, smtps) that this one must not open.
    """
    dist = Path("/usr/share/postfix/master.cf.dist")
    source = dist if dist.exists() else Path("/etc/postfix/master.cf")
    lines: list[str] = []
    dropping = False
    for line in source.read_text().splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            if not (dropping and line[:1] in (" ", "\t")):  # a dropped service's options
                lines.append(line)
            continue
        dropping = fields[1] == "inet" and fields[0] != "smtp"
        if dropping:
            continue
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = f"127.0.0.1:{port}"
        fields[4] = "n"
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _postfix(config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    # `script` gives postfix(1) a terminal, the only place it writes its errors besides syslog
    # (which a container lacks; maillog_file only gets what the running daemons log).
    return subprocess.run(
        ["script", "-qec", f"{POSTFIX} -c {config} {' '.join(command)}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def running_postfix() -> Iterator[Postfix]:
    """Postfix with its own configuration, from `postfix -c DIR start` to `postfix -c DIR stop`.

    How, and why so: `postfix start` runs Postfix's integrity checks and then `master -w`,
    which returns only once the master has bound its port and started, or failed, saying
    why. The master then runs detached (its own session and process group, every Postfix
    daemon of this instance in it), so `postfix stop` is what ends it: it signals the master
    and waits up to 5 s before killing the group. Teardown then checks that no process of
    that group is left, and kills it if one is. (`postfix start-fg` would keep the master
    in the foreground, but only as PID 1 does it exec the master; elsewhere a shell sits
    between, and `postfix stop` is still the way to end it.)

    ``-c DIR`` needs no ``alternate_config_directories`` in /etc/postfix/main.cf (which a
    "No configuration" install does not even have): Postfix requires that listing only of
    unprivileged users, and this runs as root, as the master must (it binds the port and
    drops each daemon to the ``postfix`` user). `postqueue -c DIR` works as root too.
    """
    if not POSTFIX.exists():
        pytest.fail("Postfix is not installed: run scripts/bootstrap --test, which installs it")
    if os.geteuid() != 0:
        pytest.fail("Postfix's master must be started by root; run the suite as root")
    owner = pwd.getpwnam("postfix")
    # Not under pytest's tmp_path: its root is private to root, and Postfix delivers as the
    # postfix user, who must reach the mailboxes.
    root = Path(tempfile.mkdtemp(prefix="reporter-postfix-"))
    root.chmod(0o755)
    try:
        for name in ("etc", "spool", "data", "mail"):
            (root / name).mkdir()
        for name in ("data", "mail"):
            shutil.chown(root / name, owner.pw_uid, owner.pw_gid)
        ca = trustme.CA(organization_name="Company Internal CA")
        cert = ca.issue_cert("127.0.0.1", "localhost", f"mail.{DOMAIN}")
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / "etc" / "server.pem"))
        (root / "etc" / "server.pem").chmod(0o600)
        ca.cert_pem.write_to_path(str(root / "company-ca.pem"))
        port = free_port()
        (root / "etc" / "main.cf").write_text(_main_cf(root, owner))
        (root / "etc" / "master.cf").write_text(_master_cf(port))
        server = Postfix(root, port, root / "company-ca.pem")
        try:
            started = _postfix(server.config, "start")
            if started.returncode != 0:
                pytest.fail(f"Postfix did not start: {started.stdout}{server.log()}")
            _wait_for_port(port, server)
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stop(server: Postfix, timeout: float = 10.0) -> None:
    """`postfix stop`, then make sure no process of this instance is left."""
    try:
        master = int((server.root / "spool" / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return  # the master never started
    stopped = _postfix(server.config, "stop")
    deadline = time.monotonic() + timeout
    while (left := _group(master)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master, signal.SIGKILL)
        pytest.fail(
            f"`postfix stop` left {len(left)} process(es) running, now killed: {left}\n"
            f"{stopped.stdout}{server.log()}"
        )


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``: "pid command" each."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            pid, _, rest = stat.read_text().partition(" (")
            command, _, fields = rest.rpartition(") ")
            state, _ppid, pgrp = fields.split()[:3]
            if int(pgrp) == pgid and state != "Z":
                found.append(f"{pid} {command}")
    return found


def _wait_for_port(port: int, server: Postfix, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    pytest.fail(f"Postfix never listened on 127.0.0.1:{port}:\n{server.log()}")
