"""The full-stack files: docker-compose parses, every command names code that exists."""

from __future__ import annotations

import importlib.util
import re

import yaml

from tests.support import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "realtime", "worker", "beat", "flower", "migrate")


def _module_exists(dotted: str) -> bool:
    return importlib.util.find_spec(dotted) is not None


def test_compose_has_the_full_stack():
    services = COMPOSE["services"]
    assert {"web", "worker", "beat", "flower", "redis", "postgres", "evolution", "gateway-db", "waha",
            "migrate"} <= set(services)
    for name in ("web", "worker", "beat", "flower", "redis", "postgres", "evolution", "gateway-db", "waha"):
        assert "healthcheck" in services[name], name
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_gateway_services_are_pinned_and_match_the_adapters():
    services, app_env = COMPOSE["services"], COMPOSE["services"]["web"]["environment"]
    evolution, waha = services["evolution"], services["waha"]
    # Pinned releases (the adapters are written against them), never "latest".
    assert re.fullmatch(r"evoapicloud/evolution-api:v2\.\d+\.\d+", evolution["image"])
    assert re.fullmatch(r"devlikeapro/waha:\w+-\d{4}\.\d+\.\d+", waha["image"])
    # Evolution is the default and has a database of its own, which it waits for.
    assert app_env["WHATSAPP_GATEWAY"] == "${WHATSAPP_GATEWAY:-evolution}"
    assert app_env["EVOLUTION_URL"] == "http://evolution:8080" and app_env["WAHA_URL"] == "http://waha:3000"
    assert "@gateway-db:5432/" in evolution["environment"]["DATABASE_CONNECTION_URI"]
    assert evolution["depends_on"]["gateway-db"]["condition"] == "service_healthy"
    assert evolution["environment"]["AUTHENTICATION_API_KEY"].startswith("${EVOLUTION_API_KEY")
    assert "ports" not in evolution and "ports" not in waha  # the gateways stay on the private network
    assert waha["profiles"] == ["waha"]


def test_every_app_command_refers_to_existing_code():
    for name in APP_SERVICES:
        command = COMPOSE["services"][name]["command"]
        joined = " ".join(command)
        for target in re.findall(r"\b(\w+):(\w+)\b", joined):
            module, attribute = target
            if module in ("wsgi",):
                assert (ROOT / f"{module}.py").exists(), (name, module)
                assert f"{attribute} =" in (ROOT / f"{module}.py").read_text(), (name, attribute)
        if command[0] == "gunicorn":
            assert (ROOT / command[command.index("-c") + 1]).exists()
        if command[0] == "alembic":
            assert (ROOT / "alembic.ini").exists() and (ROOT / "migrations" / "env.py").exists()
    beat_check = COMPOSE["services"]["beat"]["healthcheck"]["test"]
    assert _module_exists(beat_check[beat_check.index("-m") + 1])


def test_env_example_lists_every_setting():
    from services.platform.settings import Settings

    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f"settings missing from .env.example: {sorted(missing)}"


def test_flower_is_published_on_loopback_only_and_gets_its_password_from_the_environment():
    flower = COMPOSE["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert not any("basic" in part.lower() or "FLOWER_BASIC_AUTH" in part for part in flower["command"])
    # The shared environment, not one of its own (that would replace it); .env brings the password.
    assert flower["environment"] == COMPOSE["services"]["web"]["environment"] and flower["env_file"] == ".env"


def test_devstack_keeps_the_flower_password_off_every_command_line():
    from devstack.__main__ import _commands

    env = {"FLOWER_BASIC_AUTH": "admin:s3cret-flower", "FLOWER_PORT": "5999", "PORT": "3999",
           "REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": "sqlite:///var/x.db"}
    assert not any("s3cret-flower" in part for command in _commands(env).values() for part in command)


def test_flower_asks_for_its_password_on_metrics_too(backends, service_env, run_dir):
    import base64
    import sys
    import urllib.error
    import urllib.request

    from tests.support import ServiceProcess, free_port, wait_until

    port, password = free_port(), "flower-test-password"
    command = [sys.executable, "-m", "celery", "-A", "wsgi:celery_app", "flower", f"--port={port}",
               "--address=127.0.0.1"]
    env = backends.env(**{**service_env, "FLOWER_BASIC_AUTH": f"admin:{password}"})
    proc = ServiceProcess("flower", command, env, run_dir / "flower.log").start()

    def status(path: str, auth: str | None = None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            assert proc.running, proc.output()[-2000:]
            return 0

    try:
        wait_until(lambda: status("/healthcheck") == 200, timeout=30, interval=0.2)
        assert status("/metrics") == 401 and status("/metrics", "admin:wrong") == 401
        assert status("/metrics", f"admin:{password}") == 200
        assert status("/", f"admin:{password}") == 200 and status("/") == 401
        assert proc.proc is not None
        with open(f"/proc/{proc.proc.pid}/cmdline", "rb") as cmdline:
            assert password.encode() not in cmdline.read()
    finally:
        proc.stop()


def test_only_the_proxy_publishes_the_service_and_the_apps_trust_exactly_it():
    from services.platform.settings import Settings

    services = COMPOSE["services"]
    assert services["proxy"]["ports"] and "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    for name in ("web", "realtime"):
        assert "ports" not in services[name], f"{name} is reached through the proxy only"
        assert services[name]["environment"]["TRUSTED_PROXIES"] == 1, name
    # A polling session lives in one process: one per realtime container, which the proxy hashes over.
    assert services["realtime"]["environment"]["WEB_CONCURRENCY"] == 1
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "hash $remote_addr consistent;" in conf and "location /socket.io/" in conf
    # Without a proxy (make run, a bare gunicorn) X-Forwarded-For is the client's to forge: trust none.
    assert Settings.model_fields["trusted_proxies"].default == 0
    assert re.search(r"^TRUSTED_PROXIES=0\b", (ROOT / ".env.example").read_text(), re.M)
