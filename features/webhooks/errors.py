"""The webhooks feature's problem codes."""

from __future__ import annotations

from core.errors import Conflict, Invalid, NotFound


class WebhookNotFound(NotFound):
    default_code = "webhook_not_found"


class TooManyWebhooks(Conflict):
    """The dataset has ``DSA_WEBHOOKS_PER_DATASET`` webhooks already: ``limit``."""

    default_code = "too_many_webhooks"


class WebhookAddressNotAllowed(Invalid):
    """The URL's host resolves to a private or local address (``host``)."""

    default_code = "address_not_allowed"


class WebhookUrlUnresolvable(Invalid):
    """The URL's host has no address."""

    default_code = "url_unreachable"
