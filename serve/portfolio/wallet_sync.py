"""Wallet sync: a wallet's ERC-20 holdings of catalog tokens, read from the chain.

One sync of (user, wallet, chain):

1. the tokens: catalog assets in the ``assets`` table whose ``blockchain_network`` is the
   chain and whose ``contract_address`` is an EVM address;
2. the range: from the block after the wallet's cursor for each (wallet, chain,
   contract) (``start_blocks`` for a contract never synced) up to the head less
   ``confirmations``, at most ``max_blocks_per_sync`` blocks; a sync that stops short
   says ``complete: false`` and the next one resumes there;
3. the transfers: ``Transfer`` logs of all those contracts with the wallet as sender or
   receiver, ``log_chunk_blocks`` blocks per ``eth_getLogs`` (:mod:`.chain`);
4. each transfer is valued at the asset's gold price at its block's time
   (:func:`prices_at`) and recorded once in ``portfolio_transactions``, keyed by
   (chain, tx_hash, log_index): a repeated or concurrent sync inserts nothing twice;
5. the wallet's position in each token is replayed from every recorded transfer by
   weighted average cost (:mod:`.costs`) and written as the user's portfolio item for
   (wallet, chain, asset); an emptied position removes the item.

Steps 4-5 and the cursors move in one transaction under an advisory lock per
(chain, wallet). The answer counts ``synced_assets`` (tokens the wallet holds now) and
``new_transactions`` (transfers recorded by this sync).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from ingestion.evm import EVM_ADDRESS
from serve.portfolio.chain import EvmReader, TransferLog
from serve.portfolio.config import WalletSyncArgs
from serve.portfolio.costs import Position, average_cost, movement

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    synced_assets: int
    new_transactions: int
    wallet_address: str
    blockchain: str
    from_block: int | None
    to_block: int | None
    head_block: int
    complete: bool
    assets: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced_assets": self.synced_assets,
            "new_transactions": self.new_transactions,
            "wallet_address": self.wallet_address,
            "blockchain": self.blockchain,
            "from_block": self.from_block,
            "to_block": self.to_block,
            "head_block": self.head_block,
            "complete": self.complete,
            "assets": self.assets,
        }


@dataclass(frozen=True, slots=True)
class PricePoint:
    price: float | None
    source: str | None
    closed_at: datetime | None


async def chain_tokens(conn: asyncpg.Connection, chain: str) -> dict[str, str]:
    """Contract (lower-case) → asset_id of the catalog's tokens on ``chain``."""
    rows = await conn.fetch(
        """SELECT asset_id, contract_address FROM assets
           WHERE lower(blockchain_network) = $1 AND contract_address IS NOT NULL
           ORDER BY asset_id""", chain.lower())
    return {r["contract_address"].lower(): r["asset_id"] for r in rows
            if EVM_ADDRESS.match(r["contract_address"])}


_PRICES_AT = """
SELECT q.i, p.price, p.source, p.closed
FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS q(asset_id, at, i)
LEFT JOIN LATERAL (
    SELECT price, source, closed FROM (
        (SELECT close AS price, 'price_data' AS source, time + interval '1 hour' AS closed,
                0 AS after
           FROM price_data WHERE asset_id = q.asset_id AND time <= q.at - interval '1 hour'
           ORDER BY time DESC LIMIT 1)
        UNION ALL
        (SELECT close, 'price_bars_1d', time + interval '1 day', 0
           FROM price_bars_1d WHERE asset_id = q.asset_id AND time <= q.at - interval '1 day'
           ORDER BY time DESC LIMIT 1)
        UNION ALL
        (SELECT close, 'price_data (first after)', time + interval '1 hour', 1
           FROM price_data WHERE asset_id = q.asset_id AND time > q.at - interval '1 hour'
           ORDER BY time LIMIT 1)
        UNION ALL
        (SELECT close, 'price_bars_1d (first after)', time + interval '1 day', 1
           FROM price_bars_1d WHERE asset_id = q.asset_id AND time > q.at - interval '1 day'
           ORDER BY time LIMIT 1)
        UNION ALL
        (SELECT reference_price, 'reference_price', NULL::timestamptz, 2
           FROM assets WHERE asset_id = q.asset_id AND reference_price IS NOT NULL)
    ) c
    ORDER BY after,
             CASE WHEN after = 0 THEN closed END DESC,
             CASE WHEN after = 1 THEN closed END ASC,
             source LIKE 'price_data%' DESC
    LIMIT 1
) p ON true
ORDER BY q.i
"""


async def prices_at(conn: asyncpg.Connection,
                    points: Sequence[tuple[str, datetime]]) -> list[PricePoint]:
    """The gold price of each (asset_id, time), in order.

    The price at time T is the close of the last bar that had closed by T, hourly
    (``price_data``) or daily (``price_bars_1d``), whichever closed later (hourly on a
    tie). Before an asset's history starts, the first bar to close after T stands in;
    with no bars at all, the catalog's ``reference_price``. ``source`` says which.
    """
    if not points:
        return []
    rows = await conn.fetch(_PRICES_AT, [a for a, _ in points], [t for _, t in points])
    return [PricePoint(r["price"], r["source"], r["closed"]) for r in rows]


async def _cursors(conn: asyncpg.Connection, wallet: str, chain: str,
                   contracts: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT contract_address, last_block FROM wallet_sync_cursors
           WHERE wallet_address = $1 AND chain = $2 AND contract_address = ANY($3::text[])""",
        wallet, chain, list(contracts))
    return {r["contract_address"]: r["last_block"] for r in rows}


async def _record(conn: asyncpg.Connection, chain: str, transfers: Sequence[TransferLog],
                  tokens: dict[str, str], decimals: dict[str, int],
                  times: dict[int, datetime], prices: Sequence[PricePoint]) -> int:
    """Insert transfers not recorded yet; return how many were new."""
    if not transfers:
        return 0
    rows = await conn.fetch(
        """INSERT INTO portfolio_transactions (chain, tx_hash, log_index, block_number,
               block_time, contract_address, asset_id, from_address, to_address, amount_raw,
               decimals, price_usd, price_source, price_time)
           SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[],
               $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[],
               $10::numeric[], $11::smallint[], $12::float8[], $13::text[], $14::timestamptz[])
           ON CONFLICT (chain, tx_hash, log_index) DO NOTHING
           RETURNING 1""",
        [chain] * len(transfers), [t.tx_hash for t in transfers],
        [t.log_index for t in transfers], [t.block_number for t in transfers],
        [times[t.block_number] for t in transfers], [t.contract for t in transfers],
        [tokens[t.contract] for t in transfers], [t.sender for t in transfers],
        [t.receiver for t in transfers], [Decimal(t.amount_raw) for t in transfers],
        [decimals[t.contract] for t in transfers], [p.price for p in prices],
        [p.source for p in prices], [p.closed_at for p in prices])
    return len(rows)


async def wallet_positions(conn: asyncpg.Connection, chain: str,
                           wallet: str) -> dict[str, Position]:
    """asset_id → the wallet's position, replayed from every recorded transfer."""
    rows = await conn.fetch(
        """SELECT asset_id, from_address, to_address, amount_raw, decimals, price_usd
           FROM portfolio_transactions
           WHERE chain = $1 AND (from_address = $2 OR to_address = $2)
           ORDER BY asset_id, block_number, log_index""",
        chain, wallet)
    moves: dict[str, list] = defaultdict(list)
    for r in rows:
        moves[r["asset_id"]].append(movement(
            wallet=wallet, sender=r["from_address"], receiver=r["to_address"],
            amount_raw=r["amount_raw"], decimals=r["decimals"], price=r["price_usd"]))
    return {asset_id: average_cost(m) for asset_id, m in moves.items()}


async def _write_items(conn: asyncpg.Connection, *, user_id: int, wallet: str, chain: str,
                       positions: dict[str, Position]) -> list[dict[str, Any]]:
    """Upsert the user's item per held asset; drop items of emptied positions."""
    held = []
    for asset_id, position in sorted(positions.items()):
        if position.quantity > 0:
            await conn.execute(
                """INSERT INTO portfolios (user_id, asset_id, quantity, avg_purchase_price,
                                           wallet_address, blockchain)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (user_id, wallet_address, blockchain, asset_id)
                       WHERE wallet_address IS NOT NULL
                   DO UPDATE SET quantity = EXCLUDED.quantity,
                                 avg_purchase_price = EXCLUDED.avg_purchase_price,
                                 updated_at = now()""",
                user_id, asset_id, position.quantity, position.avg_purchase_price, wallet,
                chain)
            avg = position.avg_purchase_price
            held.append({"asset_id": asset_id, "quantity": float(position.quantity),
                         "avg_purchase_price": float(avg) if avg is not None else None})
        else:
            await conn.execute(
                """DELETE FROM portfolios WHERE user_id = $1 AND wallet_address = $2
                   AND blockchain = $3 AND asset_id = $4""",
                user_id, wallet, chain, asset_id)
    return held


async def sync_wallet(pool: asyncpg.Pool, reader: EvmReader, *, user_id: int, wallet: str,
                      chain: str, args: WalletSyncArgs) -> SyncResult:
    """Sync ``wallet`` (an EIP-55 address) on ``chain`` into ``user_id``'s portfolio.

    Raises:
        ProviderUnavailable: The chain's endpoint cannot be reached.
        ProviderBadResponse: It refused a request that cannot be made smaller.
    """
    key = wallet.lower()
    async with pool.acquire() as conn:
        tokens = await chain_tokens(conn, chain)
        cursors = await _cursors(conn, key, chain, list(tokens))
    head = await reader.head()
    safe = head - args.confirmations
    start = max(0, args.start_blocks.get(chain, 0))
    first = {c: cursors[c] + 1 if c in cursors else start for c in tokens}
    low = min(first.values(), default=safe + 1)
    high = min(safe, low + args.max_blocks_per_sync - 1)
    scanned = bool(tokens) and high >= low
    transfers: list[TransferLog] = []
    if scanned:
        found = await reader.transfer_logs(list(tokens), key, low, high,
                                           chunk=args.log_chunk_blocks)
        transfers = [t for t in found
                     if t.contract in tokens and t.block_number >= first[t.contract]]
    decimals = {c: await reader.decimals(c) for c in sorted({t.contract for t in transfers})}
    times = await reader.block_times(t.block_number for t in transfers)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                           f"wallet-sync:{chain}:{key}")
        prices = await prices_at(conn, [(tokens[t.contract], times[t.block_number])
                                        for t in transfers])
        new = await _record(conn, chain, transfers, tokens, decimals, times, prices)
        if scanned:
            await conn.execute(
                """INSERT INTO wallet_sync_cursors (wallet_address, chain, contract_address,
                                                    last_block)
                   SELECT $1, $2, c, $4 FROM unnest($3::text[]) AS c
                   ON CONFLICT (wallet_address, chain, contract_address) DO UPDATE
                   SET last_block = GREATEST(wallet_sync_cursors.last_block, EXCLUDED.last_block),
                       synced_at = now()""",
                key, chain, list(tokens), high)
        positions = await wallet_positions(conn, chain, key)
        held = await _write_items(conn, user_id=user_id, wallet=wallet, chain=chain,
                                  positions=positions)
    log.info("wallet sync %s on %s: blocks %s-%s of head %d, %d transfers (%d new), %d assets",
             key, chain, low if scanned else "-", high if scanned else "-", head,
             len(transfers), new, len(held))
    return SyncResult(
        synced_assets=len(held), new_transactions=new, wallet_address=wallet, blockchain=chain,
        from_block=low if scanned else None, to_block=high if scanned else None,
        head_block=head, complete=not tokens or high >= safe, assets=held)
