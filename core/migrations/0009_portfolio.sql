-- Portfolios: items synced from wallets, the on-chain transfers they are computed from,
-- the sync cursors, and watchlists (serve/portfolio).

-- A synced item belongs to (user, wallet, chain, asset) and is rewritten by each sync;
-- a hand-entered item has no wallet and is a lot of its own (several per asset allowed).
ALTER TABLE portfolios
    ADD COLUMN IF NOT EXISTS blockchain text,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS portfolios_wallet_item_uidx
    ON portfolios (user_id, wallet_address, blockchain, asset_id)
    WHERE wallet_address IS NOT NULL;

-- Every ERC-20 Transfer a wallet sync has read, once: a chain fact, shared by every
-- user who syncs either side's wallet. Addresses and hashes are lower-case hex;
-- amount_raw is the uint256 as emitted (whole tokens = amount_raw / 10^decimals);
-- price_usd is the asset's gold price at block_time (price_source says which table,
-- price_time when that bar closed), the purchase price of an inbound transfer.
CREATE TABLE IF NOT EXISTS portfolio_transactions (
    chain            text NOT NULL,
    tx_hash          text NOT NULL,
    log_index        integer NOT NULL CHECK (log_index >= 0),
    block_number     bigint NOT NULL CHECK (block_number >= 0),
    block_time       timestamptz NOT NULL,
    contract_address text NOT NULL,
    asset_id         text NOT NULL REFERENCES assets (asset_id),
    from_address     text NOT NULL,
    to_address       text NOT NULL,
    amount_raw       numeric(78, 0) NOT NULL CHECK (amount_raw >= 0),
    decimals         smallint NOT NULL CHECK (decimals BETWEEN 0 AND 77),
    price_usd        double precision,
    price_source     text,
    price_time       timestamptz,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS portfolio_transactions_from_idx
    ON portfolio_transactions (chain, from_address, asset_id, block_number, log_index);
CREATE INDEX IF NOT EXISTS portfolio_transactions_to_idx
    ON portfolio_transactions (chain, to_address, asset_id, block_number, log_index);

-- The last block read for (wallet, chain, contract); the next sync starts after it.
CREATE TABLE IF NOT EXISTS wallet_sync_cursors (
    wallet_address   text NOT NULL,
    chain            text NOT NULL,
    contract_address text NOT NULL,
    last_block       bigint NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wallet_address, chain, contract_address)
);

CREATE TABLE IF NOT EXISTS watchlists (
    user_id  bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    asset_id text NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, asset_id)
);
