"""Errors of webhook registration and delivery management (never echo secrets)."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput


class WebhookUrlRefused(InvalidInput):
    """The URL is not https, or reaches an address no administrator has allowed."""

    kind = "webhook-url-refused"
    title = "The webhook URL is not allowed"


class WebhookEventUnknown(InvalidInput):
    kind = "webhook-event-unknown"
    title = "Unknown webhook event type"


class DeliveryNotReplayable(Conflict):
    kind = "delivery-not-replayable"
    title = "The delivery cannot be replayed"
