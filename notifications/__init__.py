"""Notifications: webhook subscriptions, the transactional outbox of events, signed deliveries.

Services call :func:`notifications.service.emit` in the transaction of the event they report;
``backbone webhooks deliver`` (cron) sends what is due with :func:`notifications.delivery.deliver_due`.
"""
