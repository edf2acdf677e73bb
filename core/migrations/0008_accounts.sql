-- Accounts (serve/auth): what users need beyond the seed's columns, and refresh tokens.
--
-- Emails are stored lower-case by the API; the expression index keeps addresses unique
-- whatever their case, also for rows written before it.
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_enabled   boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS updated_at     timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_login_at  timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_idx ON users (lower(email));

-- One row per refresh token ever issued, kept until it expires. Only the SHA-256 of the
-- token is stored. Tokens issued from one login share a family_id: a refresh marks the
-- presented token used and issues the next one in its family; presenting a used or
-- revoked token again revokes the whole family (reuse detection), and so does logout.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    family_id  uuid NOT NULL,
    user_id    bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user_idx ON refresh_tokens (user_id, expires_at);
