"""WhatsApp gateways: the interface, the Evolution API and WAHA adapters, the built-in simulator, and the factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrations.whatsapp.base import (
    Deliver,
    GatewayError,
    GatewayEvent,
    GatewayInfo,
    QrCode,
    Schedule,
    SessionInfo,
    SingleSessionOnly,
    WhatsAppGateway,
)
from integrations.whatsapp.evolution import EvolutionGateway
from integrations.whatsapp.simulator import SimulatorGateway, SimulatorTimings
from integrations.whatsapp.waha import WahaGateway

if TYPE_CHECKING:
    from redis import Redis

    from services.platform.settings import Settings

__all__ = [
    "Deliver", "EvolutionGateway", "GatewayError", "GatewayEvent", "GatewayInfo", "QrCode", "Schedule", "SessionInfo",
    "SimulatorGateway", "SingleSessionOnly", "WahaGateway", "WhatsAppGateway", "make_gateway",
]


def make_gateway(settings: Settings, redis: Redis, schedule: Schedule, deliver: Deliver) -> WhatsAppGateway:
    """The gateway chosen by ``WHATSAPP_GATEWAY``; ``schedule``/``deliver`` drive the simulator."""
    if settings.whatsapp_gateway == "evolution":
        assert settings.evolution_api_key  # required by the settings' validation
        return EvolutionGateway(settings.evolution_url, settings.evolution_api_key, settings.evolution_timeout_seconds)
    if settings.whatsapp_gateway == "waha":
        return WahaGateway(settings.waha_url, settings.waha_api_key, settings.waha_timeout_seconds)
    timings = SimulatorTimings(settings.simulator_qr_first_ttl, settings.simulator_qr_ttl, settings.simulator_qr_count,
                               settings.simulator_send_seconds)
    return SimulatorGateway(redis, settings.key("simulator"), timings, schedule, deliver)
