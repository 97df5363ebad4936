"""The API reference's own curl and Python examples, run against the live service.

The only edits: the base URL points at the test server, and ``X-API-Key`` is added where the
reference lists the endpoint under "Защищенные Endpoints" (register, status, companies).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import textwrap

import pytest

PRODUCTION = "https://ai-admin.app"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _curl(command: str, base: str, api_key: str | None = None) -> tuple[int, dict]:
    command = command.replace(PRODUCTION, base).replace("\\\n", " ")
    if api_key:
        command = command.replace("curl ", f"curl -H 'X-API-Key: {api_key}' ", 1)
    command = command.replace("curl ", "curl -s -w '\\n%{http_code}' ", 1)
    out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30, check=True).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


REGISTER = """curl -X POST https://ai-admin.app/marketplace/register \\
  -H "Content-Type: application/json" \\
  -d '{
    "salon_id": 962302,
    "phone": "+79001234567",
    "email": "salon@example.com"
  }'"""


def test_curl_register_status_and_test(live_server, admin_headers):
    admin = admin_headers["X-API-Key"]
    status, registered = _curl(REGISTER, live_server, admin)
    assert status == 201 and registered["success"] is True and registered["salon_id"] == 962302
    assert registered["api_key"].startswith("sk_") and "/marketplace/connect?token=" in registered["connect_url"]

    # The reference's company 15 is whatever id this registration produced.
    status_example = f"curl https://ai-admin.app/marketplace/status/{registered['company_id']}"
    status, body = _curl(status_example, live_server, admin)
    assert status == 200
    assert body["company_id"] == registered["company_id"] and body["whatsapp_connected"] is False
    assert body["integration_status"] == "pending"
    # With the company's own key too, and 401 without any.
    assert _curl(status_example, live_server, registered["api_key"])[0] == 200
    assert _curl(status_example, live_server)[0] == 401

    status, body = _curl("curl https://ai-admin.app/marketplace/test", live_server)
    assert status == 200 and body["message"] == "Marketplace integration endpoints are ready"

    status, body = _curl("curl https://ai-admin.app/marketplace/companies", live_server, admin)
    assert status == 200 and body["stats"]["total"] == 1 and body["stats"]["pending"] == 1


PYTHON_EXAMPLE = '''
import requests
import json

def register_company(salon_id, phone=None, email=None):
    url = "https://ai-admin.app/marketplace/register"

    payload = {
        "salon_id": salon_id
    }

    if phone:
        payload["phone"] = phone
    if email:
        payload["email"] = email

    headers = {
        "Content-Type": "application/json"
    }

    response = requests.post(url, json=payload, headers=headers)

    if response.status_code == 201:
        data = response.json()
        print(f"Company registered: {data['company_id']}")
        print(f"Connect URL: {data['connect_url']}")
        return data
    else:
        print(f"Error: {response.status_code}")
        print(response.json())
        return None

# Использование
result = register_company(
    salon_id=962302,
    phone="+79001234567",
    email="salon@example.com"
)
'''


def test_python_register_example(live_server, admin_headers):
    source = PYTHON_EXAMPLE.replace(PRODUCTION, live_server).replace(
        '"Content-Type": "application/json"',
        f'"Content-Type": "application/json", "X-API-Key": "{admin_headers["X-API-Key"]}"',
    )
    scope: dict = {}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(textwrap.dedent(source), "reference-example", "exec"), scope)
    result = scope["result"]
    assert result is not None and result["salon_id"] == 962302
    assert f"Company registered: {result['company_id']}" in output.getvalue()

    # Run again: the salon is taken, and a stranger gets no keys for it.
    again = PYTHON_EXAMPLE.replace(PRODUCTION, live_server)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(again, "reference-example", "exec"), scope)
    assert scope["result"] is None and "Error: 409" in output.getvalue()
