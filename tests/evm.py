"""A real EVM for tests: py-evm through eth-tester, an ERC-20 compiled by vyper from
tests/contracts/token.vy, and a local JSON-RPC server over HTTP in front of it, so code
under test talks to it exactly as it talks to a node in production (AsyncHTTPProvider).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from eth_tester import EthereumTester
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.providers.eth_tester.middleware import request_formatters, result_formatters

TOKEN_SOURCE = Path(__file__).parent / "contracts" / "token.vy"


@cache
def token_artifact() -> tuple[list[dict[str, Any]], str]:
    """(abi, bytecode) of the test ERC-20, compiled once per session by vyper 0.4."""
    import vyper

    out = vyper.compile_code(TOKEN_SOURCE.read_text(), output_formats=["abi", "bytecode"])
    return out["abi"], out["bytecode"]


class Chain:
    """An in-process chain; every transaction is mined into a block of its own."""

    def __init__(self) -> None:
        self.tester = EthereumTester()
        self.provider = EthereumTesterProvider(ethereum_tester=self.tester)
        self.w3 = Web3(self.provider)
        self.accounts: list[str] = list(self.w3.eth.accounts)
        self.lock = threading.Lock()

    def deploy_token(self, name: str, symbol: str, decimals: int, supply: int) -> Contract:
        abi, bytecode = token_artifact()
        with self.lock:
            tx = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(
                name, symbol, decimals, supply).transact({"from": self.accounts[0]})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt.contractAddress, abi=abi)

    def transfer(self, token: Contract, sender: str, receiver: str, amount: int, *,
                 at: datetime | None = None) -> int:
        """Send ``amount`` raw units; ``at`` sets the block's timestamp. Returns the block."""
        with self.lock:
            if at is not None:
                self.tester.time_travel(int(at.timestamp()))
            tx = token.functions.transfer(receiver, amount).transact({"from": sender})
            return self.w3.eth.wait_for_transaction_receipt(tx).blockNumber

    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            self.tester.mine_blocks(blocks)

    @property
    def head(self) -> int:
        with self.lock:
            return self.w3.eth.block_number


def _quantities(value: Any) -> Any:
    """Python results in JSON-RPC's encoding: integers as hex quantities, bytes as hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _quantities(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_quantities(v) for v in value]
    return value


class JsonRpcServer:
    """HTTP JSON-RPC in front of a :class:`Chain`, as a node serves it.

    Args:
        max_log_range: Refuse ``eth_getLogs`` over more blocks than this, with the error
            hosted endpoints answer (to test range splitting).
    """

    def __init__(self, chain: Chain, *, max_log_range: int | None = None) -> None:
        self.chain = chain
        self.max_log_range = max_log_range
        self.calls: Counter[str] = Counter()
        self.log_ranges: list[tuple[int, int]] = []
        self._server: ThreadingHTTPServer | None = None

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request["method"], list(request.get("params") or [])
        self.calls[method] += 1
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if method == "eth_getLogs":
            low, high = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            self.log_ranges.append((low, high))
            if self.max_log_range is not None and high - low + 1 > self.max_log_range:
                return reply | {"error": {"code": -32005, "message": (
                    f"query exceeds max block range {self.max_log_range}")}}
        if method == "eth_call" and "from" not in params[0]:
            params[0] = params[0] | {"from": self.chain.accounts[0]}
        if method in request_formatters:
            params = request_formatters[method](params)
        try:
            with self.chain.lock:
                response = self.chain.provider.make_request(method, params)
        except Exception as e:  # noqa: BLE001 (a node answers errors, it keeps the connection)
            return reply | {"error": {"code": -32603, "message": f"{type(e).__name__}: {e}"}}
        if "error" in response:
            return reply | {"error": response["error"]}
        result = response["result"]
        if method in result_formatters:
            result = result_formatters[method](result)
        return reply | {"result": _quantities(result)}

    def __enter__(self) -> Self:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = [outer.answer(r) for r in body] if isinstance(body, list) \
                    else outer.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
