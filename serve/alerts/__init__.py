"""Alerts in the API: ``serve.alerts.routes.alerts_router``."""
