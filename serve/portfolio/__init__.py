"""Portfolios and watchlists: hand-entered items, items synced from an EVM wallet's ERC-20
transfers, valuation with P&L, allocation, portfolio risk, and the REST routes.

Modules, from the bottom up:

* :mod:`.config`      the wallet-sync arguments a Serve replica carries;
* :mod:`.chain`       JSON-RPC reads through web3: head, decimals, block times, Transfer logs;
* :mod:`.costs`       the weighted-average-cost position of one wallet in one token (pure);
* :mod:`.wallet_sync` one sync: chunked log reads, transfers recorded once, items upserted;
* :mod:`.store`       SQL of items and the watchlist;
* :mod:`.valuation`   market value, cost basis, P&L, allocation, risk, 30-day volatility/VaR;
* :mod:`.routes`      ``portfolio_router(services, current_user)``.
"""
