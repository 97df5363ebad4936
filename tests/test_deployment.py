"""The full-stack files: docker-compose parses, every command names code that exists."""

from __future__ import annotations

import importlib.util
import re

import yaml

from tests.support import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker", "beat", "flower", "migrate")


def _module_exists(dotted: str) -> bool:
    return importlib.util.find_spec(dotted) is not None


def test_compose_has_the_full_stack():
    services = COMPOSE["services"]
    assert {"web", "worker", "beat", "flower", "redis", "postgres", "waha", "migrate"} <= set(services)
    assert services["waha"]["image"].startswith("devlikeapro/waha")
    for name in ("web", "worker", "beat", "flower", "redis", "postgres", "waha"):
        assert "healthcheck" in services[name], name
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


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
