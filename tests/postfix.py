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
    smtpd on 127.0.0.1:``port`` instead of every address's port 25."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if not fields or line[0] in "# \t" or len(fields) < 8:
            lines.append(line)
            continue
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = f"127.0.0.1:{port}"
        fields[4] = "n"
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _postfix(config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    # `script` gives postfix(1) a terminal, the only place it writes its errors besides syslog.
    return subprocess.run(
        ["script", "-qec", f"{POSTFIX} -c {config} {' '.join(command)}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def running_postfix() -> Iterator[Postfix]:
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
        started = _postfix(server.config, "start")
        if started.returncode != 0:
            pytest.fail(f"Postfix did not start: {started.stdout}{server.log()}")
        try:
            _wait_for_port(port, server)
            yield server
        finally:
            _postfix(server.config, "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, server: Postfix, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    pytest.fail(f"Postfix never listened on 127.0.0.1:{port}:\n{server.log()}")
