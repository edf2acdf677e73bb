"""What wallet sync needs to know, as plain data a Serve replica can carry in its args."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.settings import ChainSettings


class WalletSyncArgs(BaseModel):
    """The Serve-args form of :class:`core.settings.ChainSettings` (URLs in clear: Serve
    args are JSON, and the replica must be able to call the endpoints)."""

    model_config = ConfigDict(extra="forbid")

    rpc_urls: dict[str, str] = Field(default_factory=dict,
                                     description="Catalog chain name → JSON-RPC URL.")
    log_chunk_blocks: int = Field(default=2000, ge=1)
    max_blocks_per_sync: int = Field(default=200_000, ge=1)
    confirmations: int = Field(default=12, ge=0)
    start_blocks: dict[str, int] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)

    @classmethod
    def from_settings(cls, chain: ChainSettings) -> WalletSyncArgs:
        return cls(
            rpc_urls={name.lower(): url.get_secret_value() for name, url in chain.rpc_urls.items()},
            log_chunk_blocks=chain.log_chunk_blocks,
            max_blocks_per_sync=chain.max_blocks_per_sync,
            confirmations=chain.confirmations,
            start_blocks={name.lower(): block for name, block in chain.start_blocks.items()},
            timeout_s=chain.timeout_s,
        )

    @property
    def chains(self) -> list[str]:
        return sorted(self.rpc_urls)
