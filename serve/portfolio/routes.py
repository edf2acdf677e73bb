"""REST routes of portfolios and watchlists (DESIGN.md's contract).

``portfolio_router(services, current_user)`` returns an ``APIRouter`` for the API app
(``serve.api``): ``services`` is its :class:`serve.api.Services` (the pool, Redis, the
id/symbol map) and ``current_user`` the dependency that authenticates a request and
returns an object with ``user_id``. Every query is scoped to that user: another user's
item is a 404, exactly like a missing one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from eth_utils import is_checksum_address, to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import ProviderBadResponse, ProviderUnavailable
from serve.portfolio import store, valuation
from serve.portfolio.config import WalletSyncArgs

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_MAX_ID = 2**63 - 1

ItemId = Annotated[int, Path(ge=1, le=_MAX_ID, description="The item's portfolio_id.")]
AssetRef = Annotated[str, Field(min_length=1, max_length=80,
                                description="An asset id (paxg) or symbol (PAXG).")]


class _Body(BaseModel):
    """A request body: unknown fields refused; NaN and infinities (which Python's JSON
    parser accepts) reach validation as text, so the 422 that refuses them can itself be
    rendered as JSON instead of failing as a 500."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _finite_or_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v
                    for k, v in data.items()}
        return data


class ItemIn(_Body):
    """A hand-entered holding."""

    asset_id: AssetRef
    quantity: float = Field(gt=0, le=1e18, allow_inf_nan=False,
                            description="Tokens held; more than 0.")
    avg_purchase_price: float | None = Field(
        default=None, ge=0, le=1e12, allow_inf_nan=False,
        description="USD paid per token on average; null when unknown.")


class ItemPatch(_Body):
    quantity: float | None = Field(default=None, gt=0, le=1e18, allow_inf_nan=False)
    avg_purchase_price: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)


class SyncIn(_Body):
    """A wallet to read: an EVM address (EIP-55 checksummed, or all lower/upper case)
    and the chain, by its catalog name (``ethereum``)."""

    wallet_address: str = Field(max_length=42)
    blockchain: str = Field(min_length=1, max_length=40)

    @field_validator("wallet_address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if not _ADDRESS.match(value):
            raise ValueError("wallet_address must be 0x followed by 40 hex digits")
        body = value[2:]
        if body != body.lower() and body != body.upper() and not is_checksum_address(value):
            raise ValueError("wallet_address fails its EIP-55 checksum (mixed case that "
                             "does not match); send it checksummed or all lower case")
        return to_checksum_address(value)


class WatchIn(_Body):
    asset_id: AssetRef


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value))


def _sync_args(services: Any) -> WalletSyncArgs:
    raw = getattr(getattr(services, "args", None), "wallet_sync", None)
    if raw is None:
        return WalletSyncArgs()
    return raw if isinstance(raw, WalletSyncArgs) else WalletSyncArgs.model_validate(
        raw if isinstance(raw, dict) else raw.model_dump())


def portfolio_router(services: Any, current_user: Callable[..., Any], *,
                     wallet_sync: WalletSyncArgs | None = None) -> APIRouter:
    """The portfolio and watchlist routes.

    Args:
        services: The API's ``Services``.
        current_user: A FastAPI dependency returning the authenticated user
            (an object with ``user_id``).
        wallet_sync: Chains and RPC endpoints for ``POST /portfolio/sync-wallet``;
            default: ``services.args.wallet_sync`` where the Serve args carry it, else
            none (every chain is then unknown).
    """
    router = APIRouter()
    authenticated = Depends(current_user)
    sync_config = wallet_sync or _sync_args(services)

    async def pool() -> asyncpg.Pool:
        return await services.ensure_pool()

    async def resolve(ref: str) -> str | None:
        key = ref.strip().lower()
        hit = services.symbols.get(key)
        if hit is None and "\x00" not in key:  # PostgreSQL text refuses NUL: no such asset
            hit = await (await pool()).fetchval(
                "SELECT asset_id FROM assets WHERE lower(asset_id) = $1 OR lower(symbol) = $1"
                " ORDER BY lower(asset_id) = $1 DESC LIMIT 1", key)
        return hit

    async def body_asset(ref: str) -> str:
        asset_id = await resolve(ref)
        if asset_id is None:
            raise HTTPException(422, f"asset_id: unknown asset {ref!r}")
        return asset_id

    async def item_or_404(conn: asyncpg.Connection, user_id: int,
                          portfolio_id: int) -> dict[str, Any]:
        item = await store.get_item(conn, user_id, portfolio_id)
        if item is None:
            raise HTTPException(404, f"no portfolio item {portfolio_id}")
        return item

    @router.get("/portfolio", tags=["portfolio"])
    async def get_portfolio(user: Any = authenticated) -> dict[str, Any]:
        """Items valued at the latest price with unrealised P&L, totals, allocation by
        asset and asset class, and portfolio risk (value-weighted composite score,
        30-day volatility, one-day 95 % VaR)."""
        async with (await pool()).acquire() as conn:
            items = await store.list_items(conn, user.user_id)
            return await valuation.portfolio_view(conn, services.redis, items)

    @router.post("/portfolio/items", status_code=201, tags=["portfolio"])
    async def add_item(body: ItemIn, user: Any = authenticated) -> dict[str, Any]:
        """Add a hand-entered holding; answers the item valued, with its ``portfolio_id``."""
        asset_id = await body_asset(body.asset_id)
        async with (await pool()).acquire() as conn:
            try:
                portfolio_id = await store.add_item(
                    conn, user.user_id, asset_id, quantity=_dec(body.quantity),
                    avg_purchase_price=_dec(body.avg_purchase_price))
            except asyncpg.ForeignKeyViolationError as e:
                raise HTTPException(401, "the authenticated user no longer exists") from e
            item = await item_or_404(conn, user.user_id, portfolio_id)
            return await valuation.item_view(conn, services.redis, item)

    @router.get("/portfolio/items/{portfolio_id}", tags=["portfolio"])
    async def get_item(portfolio_id: ItemId, user: Any = authenticated) -> dict[str, Any]:
        """One item valued, with its asset's latest risk score."""
        async with (await pool()).acquire() as conn:
            item = await item_or_404(conn, user.user_id, portfolio_id)
            return await valuation.item_view(conn, services.redis, item)

    @router.patch("/portfolio/items/{portfolio_id}", tags=["portfolio"])
    async def update_item(portfolio_id: ItemId, body: ItemPatch,
                          user: Any = authenticated) -> dict[str, Any]:
        """Change an item's quantity or average purchase price (a wallet-synced item is
        rewritten by its next sync)."""
        changes = {k: _dec(v) for k, v in body.model_dump(exclude_unset=True).items()}
        if not changes or changes.get("quantity", 0) is None:
            raise HTTPException(422, "send quantity (> 0) and/or avg_purchase_price")
        async with (await pool()).acquire() as conn:
            if not await store.update_item(conn, user.user_id, portfolio_id, changes=changes):
                raise HTTPException(404, f"no portfolio item {portfolio_id}")
            item = await item_or_404(conn, user.user_id, portfolio_id)
            return await valuation.item_view(conn, services.redis, item)

    @router.delete("/portfolio/items/{portfolio_id}", status_code=204, tags=["portfolio"])
    async def delete_item(portfolio_id: ItemId, user: Any = authenticated) -> Response:
        async with (await pool()).acquire() as conn:
            if not await store.delete_item(conn, user.user_id, portfolio_id):
                raise HTTPException(404, f"no portfolio item {portfolio_id}")
        return Response(status_code=204)

    @router.post("/portfolio/sync-wallet", tags=["portfolio"])
    async def sync_wallet(body: SyncIn, user: Any = authenticated) -> dict[str, Any]:
        """Read the wallet's ERC-20 transfers of the catalog's tokens on the chain, record
        each once, and upsert one item per token held with its weighted-average purchase
        price. ``{synced_assets, new_transactions, …}``; a repeated sync adds nothing;
        ``complete: false`` means the block budget ran out and the next call resumes."""
        from serve.portfolio.chain import EvmReader
        from serve.portfolio.wallet_sync import sync_wallet as run_sync

        chain = body.blockchain.strip().lower()
        url = sync_config.rpc_urls.get(chain)
        if url is None:
            known = ", ".join(sync_config.chains) or "none (no RPC endpoint is configured)"
            raise HTTPException(422, f"blockchain: unknown or unsupported chain "
                                     f"{body.blockchain!r}; wallet sync reads: {known}")
        db = await pool()
        reader = EvmReader.over_http(url, name=chain, timeout_s=sync_config.timeout_s)
        try:
            result = await run_sync(db, reader, user_id=user.user_id,
                                    wallet=body.wallet_address, chain=chain, args=sync_config)
        except ProviderUnavailable as e:
            raise HTTPException(503, f"the {chain} RPC endpoint is unavailable: {e}") from e
        except ProviderBadResponse as e:
            raise HTTPException(502, f"the {chain} RPC endpoint failed: {e}") from e
        except asyncpg.ForeignKeyViolationError as e:
            raise HTTPException(401, "the authenticated user no longer exists") from e
        finally:
            await reader.close()
        return result.to_dict()

    @router.get("/watchlist", tags=["watchlist"])
    async def get_watchlist(user: Any = authenticated) -> dict[str, Any]:
        """Watched assets with their latest price."""
        async with (await pool()).acquire() as conn:
            items = await store.watchlist(conn, user.user_id)
            quotes = await valuation.latest_quotes(conn, services.redis,
                                                   [i["asset_id"] for i in items])
        for i in items:
            quote = quotes.get(i["asset_id"])
            i["price"] = quote.price if quote else None
            i["price_source"] = quote.source if quote else None
        return {"items": items}

    @router.post("/watchlist", status_code=201, tags=["watchlist"])
    async def watch(body: WatchIn, response: Response,
                    user: Any = authenticated) -> dict[str, Any]:
        """Watch an asset: 201 when added, 200 when it was watched already."""
        asset_id = await body_asset(body.asset_id)
        async with (await pool()).acquire() as conn:
            try:
                added = await store.watch(conn, user.user_id, asset_id)
            except asyncpg.ForeignKeyViolationError as e:
                raise HTTPException(401, "the authenticated user no longer exists") from e
        if not added:
            response.status_code = 200
        return {"asset_id": asset_id, "added": added}

    @router.delete("/watchlist/{asset_id}", status_code=204, tags=["watchlist"])
    async def unwatch(asset_id: Annotated[str, Path(min_length=1, max_length=80)],
                      user: Any = authenticated) -> Response:
        resolved = await resolve(asset_id)
        if resolved is None:
            raise HTTPException(404, f"unknown asset {asset_id!r}")
        async with (await pool()).acquire() as conn:
            if not await store.unwatch(conn, user.user_id, resolved):
                raise HTTPException(404, f"{resolved} is not on the watchlist")
        return Response(status_code=204)

    return router
