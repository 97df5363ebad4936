"""Extension objects, created unbound and bound to an app in ``create_app``."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sock import Sock

sock = Sock()
# The client address is taken after ProxyFix has applied the trusted-proxy count.
limiter = Limiter(key_func=get_remote_address)
