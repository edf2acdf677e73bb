"""Accounts for the API: registration, passwords (Argon2id), JWT access tokens,
rotating refresh tokens with reuse detection, TOTP 2FA, email verification, login and
TOTP throttling, per-tier request limits and the admin role.

Modules: ``passwords`` (hashing, policy), ``tokens`` (JWTs), ``refresh`` (refresh
token families in PostgreSQL), ``totp``, ``throttle`` (failed attempts), ``ratelimit``
(sliding window), ``users`` (the table), ``verification`` (the email), ``context``
(what one replica shares), ``deps`` (FastAPI dependencies for every router) and
``routes`` (``auth_router``, ``admin_router``).
"""
