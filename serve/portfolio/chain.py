"""Reads of an EVM chain for wallet sync over JSON-RPC, through web3's ``AsyncWeb3``.

Production talks HTTP(S) to the chain's endpoint (:meth:`EvmReader.over_http`); the
reader itself only needs an ``AsyncWeb3``, so any provider works. Failures surface as
the project's provider errors: :class:`~core.errors.ProviderUnavailable` when the
endpoint cannot be reached, times out or answers HTTP errors (the API says 503), and
:class:`~core.errors.ProviderBadResponse` when it answers with a JSON-RPC error that
smaller requests cannot get round (the API says 502).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from core.errors import ProviderBadResponse, ProviderUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: keccak256("Transfer(address,address,uint256)"): topic 0 of every ERC-20 transfer.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
#: The selector of ERC-20 ``decimals()``.
DECIMALS_SELECTOR = "0x313ce567"
#: Block headers fetched at once.
BLOCK_CONCURRENCY = 8

# How nodes and hosted RPCs refuse an eth_getLogs range that is too wide or too full
# (geth, Erigon, Alchemy, Infura, QuickNode wordings); a smaller range is then retried.
_RANGE_REFUSAL = re.compile(
    r"range|limit|too many|too large|exceed|more than|results|response size|timeout|timed out",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TransferLog:
    """One ERC-20 ``Transfer`` event; addresses and the hash are lower-case hex."""

    contract: str
    tx_hash: str
    log_index: int
    block_number: int
    sender: str
    receiver: str
    amount_raw: int


def address_topic(address: str) -> str:
    """An address as an indexed event topic: 32 bytes, left-padded with zeros."""
    return "0x" + "0" * 24 + address[2:].lower()


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def parse_transfer(entry: Any) -> TransferLog | None:
    """A ``Transfer`` log as :class:`TransferLog`, or None for any other event.

    The amount is the data word; a token that indexes it (a fourth topic, no data) is
    read from the topic instead.
    """
    topics = [_hex(t) for t in entry["topics"]]
    if len(topics) < 3 or topics[0] != TRANSFER_TOPIC:
        return None
    data = entry["data"]
    raw = bytes(data) if isinstance(data, bytes | bytearray) else bytes.fromhex(
        str(data).removeprefix("0x"))
    if len(topics) == 4 and not raw:
        amount = int(topics[3], 16)
    elif len(raw) >= 32:
        amount = int.from_bytes(raw[:32], "big")
    else:
        return None
    return TransferLog(
        contract=str(entry["address"]).lower(),
        tx_hash=_hex(entry["transactionHash"]),
        log_index=int(entry["logIndex"]),
        block_number=int(entry["blockNumber"]),
        sender="0x" + topics[1][-40:],
        receiver="0x" + topics[2][-40:],
        amount_raw=amount,
    )


class EvmReader:
    """JSON-RPC reads of one chain.

    Args:
        w3: The web3 client; :meth:`over_http` builds the production one.
        name: The chain's catalog name, used in error messages.
    """

    def __init__(self, w3: AsyncWeb3, *, name: str, url: str | None = None) -> None:
        self.w3 = w3
        self.name = name
        self._url = url  # kept out of messages: hosted RPC URLs carry the account's key

    def _say(self, text: str) -> str:
        return text.replace(self._url, "<rpc url>") if self._url else text

    @classmethod
    def over_http(cls, url: str, *, name: str, timeout_s: float) -> EvmReader:
        """A reader of the endpoint at ``url`` with a per-request timeout; transport
        errors are retried twice by web3 before they count."""
        provider = AsyncHTTPProvider(
            url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(aiohttp.ClientError, TimeoutError), retries=3, backoff_factor=0.1),
        )
        return cls(AsyncWeb3(provider), name=name, url=url)

    async def close(self) -> None:
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            try:
                await disconnect()
            except (aiohttp.ClientError, OSError, RuntimeError) as e:
                # closing must never hide the request's own outcome
                log.debug("closing the %s RPC session failed: %s", self.name, e)

    async def _call(self, what: str, request: Awaitable[T]) -> T:
        """Await one request, mapping transport failures to the project's errors; a
        JSON-RPC error answer (``Web3RPCError``) passes through for the caller."""
        try:
            return await request
        except Web3RPCError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ProviderConnectionError,
                RequestTimedOut, TooManyRequests) as e:
            raise ProviderUnavailable(
                f"rpc:{self.name}", self._say(f"{what}: {type(e).__name__}: {e}")) from e
        except (Web3Exception, ValueError, KeyError, TypeError) as e:
            raise ProviderBadResponse(f"rpc:{self.name}", self._say(
                f"{what}: unusable answer: {type(e).__name__}: {e}")) from e

    async def _refused(self, what: str, request: Awaitable[T]) -> T:
        try:
            return await self._call(what, request)
        except Web3RPCError as e:
            raise ProviderBadResponse(f"rpc:{self.name}", self._say(f"{what} refused: {e}")) from e

    async def head(self) -> int:
        """The latest block number."""
        return int(await self._refused("eth_blockNumber", self.w3.eth.block_number))

    async def decimals(self, contract: str) -> int:
        """The token's ``decimals()``."""
        raw = await self._refused(f"decimals() of {contract}", self.w3.eth.call(
            {"to": to_checksum_address(contract), "data": DECIMALS_SELECTOR}))
        if len(raw) < 32:
            raise ProviderBadResponse(f"rpc:{self.name}",
                                      f"{contract} answered no decimals() (not an ERC-20?)")
        value = int.from_bytes(bytes(raw)[:32], "big")
        if value > 77:
            raise ProviderBadResponse(f"rpc:{self.name}",
                                      f"{contract} claims {value} decimals")
        return value

    async def block_times(self, blocks: Iterable[int]) -> dict[int, datetime]:
        """Each block's timestamp, as an aware UTC datetime."""
        gate = asyncio.Semaphore(BLOCK_CONCURRENCY)

        async def one(number: int) -> tuple[int, datetime]:
            async with gate:
                block = await self._refused(f"block {number}", self.w3.eth.get_block(number))
            return number, datetime.fromtimestamp(int(block["timestamp"]), UTC)

        return dict(await asyncio.gather(*(one(b) for b in sorted(set(blocks)))))

    async def _logs(self, addresses: list[str], topics: list[str | None], start: int,
                    end: int) -> list[Any]:
        return list(await self._call(
            f"eth_getLogs {start}-{end}",
            self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": addresses,
                                  "topics": topics})))

    async def transfer_logs(self, contracts: Sequence[str], wallet: str, start: int, end: int,
                            *, chunk: int) -> list[TransferLog]:
        """Every ``Transfer`` of ``contracts`` from or to ``wallet`` in blocks
        [start, end], oldest first, each once (a self-transfer matches both filters).

        Ranges are read ``chunk`` blocks at a time, one ``eth_getLogs`` for each side of
        the transfer (topic 1 is the sender, topic 2 the receiver); a range the endpoint
        refuses as too wide or too full is halved and tried again.
        """
        if not contracts or end < start:
            return []
        addresses = [to_checksum_address(c) for c in contracts]
        topic = address_topic(wallet)
        found: dict[tuple[str, int], TransferLog] = {}
        low, size = start, max(1, chunk)
        while low <= end:
            high = min(end, low + size - 1)
            try:
                sent, received = await asyncio.gather(
                    self._logs(addresses, [TRANSFER_TOPIC, topic], low, high),
                    self._logs(addresses, [TRANSFER_TOPIC, None, topic], low, high))
            except Web3RPCError as e:
                if high > low and _RANGE_REFUSAL.search(str(e)):
                    size = max(1, (high - low + 1) // 2)
                    log.info("%s refused eth_getLogs over %d blocks (%s); trying %d",
                             self.name, high - low + 1, e, size)
                    continue
                raise ProviderBadResponse(f"rpc:{self.name}", self._say(
                    f"eth_getLogs {low}-{high} refused: {e}")) from e
            for entry in (*sent, *received):
                transfer = parse_transfer(entry)
                if transfer is not None:
                    found[(transfer.tx_hash, transfer.log_index)] = transfer
            low = high + 1
        return sorted(found.values(), key=lambda t: (t.block_number, t.log_index))
