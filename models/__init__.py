"""SQLAlchemy models, one entity per module; importing the package registers them all."""

from models.api_key import ApiKey
from models.booking import Booking
from models.callback import Callback, CallbackStatus
from models.client import Client
from models.company import Company, IntegrationStatus
from models.company_event import CompanyEvent
from models.db import Base, db, utcnow
from models.inbound_message import InboundMessage, ReplyWrite
from models.message import Message, MessageState
from models.messaging_settings import MessagingSettings
from models.opt_out import OptOut
from models.webhook_event import EventSource, EventStatus, WebhookEvent
from models.whatsapp_session import SessionStatus, WhatsAppSession

__all__ = [
    "ApiKey", "Base", "Booking", "Callback", "CallbackStatus", "Client", "Company", "CompanyEvent",
    "EventSource", "EventStatus", "InboundMessage", "IntegrationStatus", "Message", "MessageState",
    "MessagingSettings", "OptOut", "ReplyWrite", "SessionStatus", "WebhookEvent", "WhatsAppSession", "db",
    "utcnow",
]
