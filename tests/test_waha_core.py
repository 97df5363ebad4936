"""WAHA Core through the real adapter: the tier comes from /api/version, the one session `default` exists
from boot (so creating it is a 422 "already exists", then PUT and start), and any other name is refused
as a single-session gateway, not retried as an outage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.whatsapp import WahaGateway
from integrations.whatsapp.base import SingleSessionOnly
from tests.fakes.waha import API_KEY, FakeWaha
from tests.support import wait_until


@pytest.fixture
def core() -> Iterator[FakeWaha]:
    fake = FakeWaha(tier="CORE").start()
    yield fake
    fake.stop()


def test_core_serves_one_session_named_default_and_refuses_any_other(core):
    adapter = WahaGateway(core.url, API_KEY, 10)
    info = adapter.describe()
    assert (info.kind, info.tier, info.only_session) == ("waha", "CORE", "default")
    adapter.start("default")  # exists from boot: the 422 "already exists" becomes PUT + start
    wait_until(lambda: adapter.info("default").status == "SCAN_QR_CODE", timeout=10)
    with pytest.raises(SingleSessionOnly) as refused:
        adapter.start("company-2")
    assert refused.value.status == 422


def test_plus_serves_a_session_per_company():
    plus = FakeWaha(tier="PLUS").start()
    try:
        adapter = WahaGateway(plus.url, API_KEY, 10)
        assert adapter.describe().only_session is None
        adapter.start("company-2")
        wait_until(lambda: adapter.info("company-2").status == "SCAN_QR_CODE", timeout=10)
    finally:
        plus.stop()
