"""The API reference's JavaScript example, ``connectWebSocket(token, companyId)``, unchanged
(tests/js/reference_example.js), run by Node.js with the real ``socket.io-client`` 4.x from the npm
registry against the live test server: polling with the ``x-auth-token`` header, the upgrade, the QR,
the scan; and the refusals an integrator meets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from models import db
from services.whatsapp import gateway
from tests.factories import make_company
from tests.support import ROOT, wait_until

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (make test installs it as root)")


class NodeExample:
    """``node tests/js/run_reference_example.js``, its output (stdout and stderr) collected line by line."""

    def __init__(self, base_url: str, token: str, company_id: int) -> None:
        assert (JS / "node_modules" / "socket.io-client").is_dir(), "run `make test` (it runs npm ci in tests/js)"
        env = {**os.environ, "MARKETPLACE_ORIGIN": base_url, "TOKEN": token, "COMPANY_ID": str(company_id)}
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(NODE), str(JS / "run_reference_example.js")], cwd=JS, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def matching(self, pattern: str) -> list[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout: float = 15) -> str:
        def found() -> str | None:
            if self.proc.poll() is not None and not self.matching(pattern):
                raise AssertionError(f"node exited {self.proc.returncode}:\n" + "\n".join(self.lines))
            return next(iter(self.matching(pattern)), None)

        try:
            return str(wait_until(found, timeout=timeout))
        except AssertionError:
            raise AssertionError(f"{pattern!r} not printed; output:\n" + "\n".join(self.lines)) from None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def run_example(live_server: str) -> Iterator[object]:
    started: list[NodeExample] = []

    def run(token: str, company_id: int) -> NodeExample:
        example = NodeExample(live_server, token, company_id)
        started.append(example)
        return example

    yield run
    for example in started:
        example.stop()


def test_the_example_prints_the_qr_then_whatsapp_connected(run_example, ctx):
    company = make_company()
    example = run_example(company.token, company.id)
    example.wait_for(r"^\[runner\] engine open over polling$")
    example.wait_for(r"^Connected to WebSocket$")
    # Authenticated twice: by the polling header at connect, then by the example's authenticate.
    wait_until(lambda: len(example.matching(rf"^Authenticated: \{{ companyId: {company.id} \}}$")) == 2)
    example.wait_for(r"^\[runner\] upgraded to websocket$")
    example.wait_for(r"^New QR code received$", timeout=20)
    gateway.simulate_scan(company.id, "+79001234567")
    db.session.remove()
    line = example.wait_for(r"^WhatsApp connected! ")
    assert "phone: '+79001234567'" in line and f"companyId: {company.id}" in line
    assert not example.matching(r"error")


def test_a_bad_token_is_refused_at_connect(run_example, ctx):
    company = make_company()
    example = run_example("forged-token", company.id)
    example.wait_for(r'^\[runner\] connect_error \{"message":"Недействительный токен"\}$')
    assert not example.matching(r"^Connected to WebSocket|^Authenticated")


def test_another_companys_id_is_refused(run_example, ctx):
    mine, other = make_company(), make_company()
    example = run_example(mine.token, other.id)
    example.wait_for(r"^Socket error: \{ message: 'Недействительный токен' \}$")
    example.wait_for(r"^Socket error: \{ message: 'Нет доступа к этой компании' \}$")
    # The token's own company is all the client ever got: never the other company, never its QR.
    assert example.matching(rf"^Authenticated: \{{ companyId: {mine.id} \}}$")
    assert not example.matching(rf"companyId: {other.id}")
    assert not example.matching(r"QR")
