"""The dashboard's machine page clicked through in Debian's headless chromium against a real host: create a
`generic` machine from the form on the sshd host of tests/machine/sshhost.py (a copy-on-write view of this
machine in namespaces of its own; skiffd is installed into it over SSH as on any host), follow the create's
progress to the end, see it listed Running with its driver, URL and engine version, show its containers,
give it new certificates (the engine then answers over mutual TLS with the new ones, and so does the page),
try to stop it (the generic driver refuses: it did not make the host, and the page says so), restart it (for
generic that restarts the engine, not the host), remove it (its store folder goes, its engine stops).

The dashboard and the browser run in this machine's own network namespace: the sshd host's address is
reachable from here through its veth pair, and nothing else is needed (no local engine: the page shows that
none answers)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.dashboard.harness import Dashboard, chromium, serve
from tests.dashboard.test_browser import click, css, shot, text_in, wait
from tests.machine.conftest import ssh_host  # noqa: F401  (fixture)
from tests.machine.sshhost import SSHHost

pytestmark = pytest.mark.slow

NAME = "gen1"


@pytest.fixture(scope="module")
def store() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="skiff-dash-machines-", dir=os.environ.get("SKIFF_TEST_TMP", "/var/tmp")))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def dashboard(store: Path, ssh_host: SSHHost) -> Iterator[Dashboard]:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(MACHINE_STORAGE_PATH=str(store), DOCKER_HOST="unix:///nonexistent/skiff-dashboard-test.sock")
    with serve([], env) as d:
        try:
            yield d
        finally:
            if (store / "machines" / NAME).exists():  # a test that failed half-way: take the engine down too
                from skiffbox.machine.host import Host
                from skiffbox.machine.store import Store

                Host.load(Store(store), NAME).remove(force=True, progress=lambda m: None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as drv:
        yield drv


def _serial(pem: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def _ping_over_tls(mdir: Path, ip: str) -> bytes:
    """GET /_ping with the machine's client certificate, verifying the engine against the machine's CA."""
    ctx = ssl.create_default_context(cafile=str(mdir / "ca.pem"))
    ctx.load_cert_chain(mdir / "cert.pem", mdir / "key.pem")
    with socket.create_connection((ip, 2376), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=ip) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(200)


def job_outcome(drv: Any, title: str, timeout: float = 300) -> str:
    """Wait for the job box titled `title` to end; its text (the progress lines and the outcome)."""
    sel = "#machine-jobs .progress.finished, #machine-jobs .progress.failed"

    def ended(d: Any) -> str | bool:
        for box in d.find_elements(By.CSS_SELECTOR, sel):
            t = box.text
            if t.startswith(title):
                return t
        return False

    return str(wait(drv, timeout).until(ended))


def test_generic_machine_from_the_page(dashboard: Dashboard, browser: Any, store: Path,
                                       ssh_host: SSHHost) -> None:  # noqa: F811
    drv, h = browser, ssh_host
    mdir = store / "machines" / NAME
    drv.get(dashboard.url)
    drv.get(dashboard.base + "/#/machines")
    text_in(drv, "main", "No machines yet")

    # Create from the form: the generic driver's own options, filled in as a user would.
    click(drv, "#create-machine")
    name = css(drv, "#create-dialog input[name=name]")
    name.clear()
    name.send_keys(NAME)
    Select(css(drv, "#create-dialog select[name=driver]")).select_by_value("generic")
    css(drv, '#create-dialog input[data-flag="generic-ip-address"]').send_keys(h.ip)
    css(drv, '#create-dialog input[data-flag="generic-ssh-key"]').send_keys(str(h.key_path))
    click(drv, '#create-dialog button[type="submit"]')
    # the dialog closes when the form is sent (a field the browser finds invalid would keep it open)
    wait(drv).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#create-dialog"))
    text_in(drv, "#machine-jobs", "Running pre-create checks", timeout=30)  # progress while it works
    out = job_outcome(drv, f"Create {NAME}", timeout=600)
    assert out.endswith("Done."), out
    for step in ("Provisioning gen1 over SSH", "The engine is up and running!"):
        assert step in out, out
    assert (mdir / "config.json").exists()

    row = f'#machines tr[data-name="{NAME}"]'
    text_in(drv, row, "Running", timeout=60)
    cells = [c.text for c in drv.find_elements(By.CSS_SELECTOR, row + " td")]
    assert cells[:4] == [NAME, "generic", "Running", f"tcp://{h.ip}:2376"], cells
    assert cells[4].startswith("v") or cells[4][:1].isdigit(), cells  # the engine's version, asked over TLS
    assert cells[5] == "", cells  # no error
    shot(drv, "machine-create")

    # Its engine, from the page: pick it, the event stream opens and the (empty) container list shows.
    click(drv, row + ' button[data-action="containers"]')
    wait(drv).until(lambda d: d.current_url.endswith("#/containers"))
    css(drv, "#live.on")
    text_in(drv, "#engine-status", f"tcp://{h.ip}:2376")
    text_in(drv, "main", "No containers yet")

    # New certificates: the engine answers over mutual TLS with them, and the page still reaches it.
    drv.get(dashboard.base + "/#/machines")
    before = _serial(mdir / "server.pem")
    click(drv, row + ' button[data-action="regenerate-certs"]')
    drv.switch_to.alert.accept()
    out = job_outcome(drv, f"Regenerate certificates of {NAME}")
    assert out.endswith("Done."), out
    assert _serial(mdir / "server.pem") != before
    assert h.exec(["cat", "/etc/skiff/server.pem"]).stdout == (mdir / "server.pem").read_text()
    assert _ping_over_tls(mdir, h.ip).split(b"\r\n")[0].endswith(b"200 OK")
    drv.get(dashboard.base + "/#/containers")
    css(drv, "#live.on")
    text_in(drv, "main", "No containers yet")

    # Stop: the generic driver did not make this host and will not power it off; the page says so where the
    # user clicked, and nothing changed.
    drv.get(dashboard.base + "/#/machines")
    click(drv, row + ' button[data-action="stop"]')
    out = job_outcome(drv, f"Stop {NAME}")
    assert out.startswith(f"Stop {NAME} — not supported by this machine's driver"), out
    assert "Not supported: the generic driver does not stop hosts (it did not create them)" in out, out
    text_in(drv, "#toasts", "the generic driver does not stop hosts")
    shot(drv, "machine-refused")
    click(drv, '#machine-jobs .progress.failed button[data-action="dismiss"]')  # it stays until dismissed
    wait(drv).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#machine-jobs .progress.failed"))
    text_in(drv, row, "Running")
    assert _ping_over_tls(mdir, h.ip).split(b"\r\n")[0].endswith(b"200 OK")

    # Restart: for generic, the engine restarts (a new skiffd), not the host.
    pid = h.exec(["cat", "/run/skiff/skiffd.pid"]).stdout.strip()
    click(drv, row + ' button[data-action="restart"]')
    out = job_outcome(drv, f"Restart {NAME}")
    assert out.endswith("Done.") and "Restarting the engine" in out, out
    assert h.exec(["cat", "/run/skiff/skiffd.pid"]).stdout.strip() != pid
    assert _ping_over_tls(mdir, h.ip).split(b"\r\n")[0].endswith(b"200 OK")

    # Remove: the record goes, the engine on the host is stopped.
    click(drv, row + ' button[data-action="remove"]')
    drv.switch_to.alert.accept()
    text_in(drv, "main", "No machines yet", timeout=120)
    assert not mdir.exists()
    assert h.exec(["/etc/skiff/start.sh", "status"], check=False).returncode != 0
    # The page was showing that machine's engine: it goes back to the local one, and the machine leaves the menu.
    wait(drv).until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#engine option[value="{NAME}"]'))
    assert Select(css(drv, "#engine")).first_selected_option.get_attribute("value") == "_local"
    text_in(drv, "main", "No machines yet")  # still on the machines page
