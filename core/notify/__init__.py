"""Notifiers: how the platform reaches a person outside the API (email, and the alert
channels). Each module exposes one small async ``send_…`` function that raises
:class:`core.errors.DeliveryError` when a message was not delivered."""
