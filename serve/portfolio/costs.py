"""The position of one wallet in one token, by weighted average cost.

The method, in the order transfers happened on chain (block, then log index):

* an inbound transfer of ``q`` tokens valued at ``p`` (USD per token at the block's
  time) adds ``q`` to the quantity and ``q * p`` to the cost; the average purchase
  price is then cost / quantity;
* an outbound transfer of ``q`` removes ``q`` at the current average: the quantity
  falls by ``q``, the cost by ``q * average``, and the average itself does not change;
  ``q * (p - average)`` is realised P&L;
* a transfer from the wallet to itself changes nothing;
* an outbound transfer larger than the quantity known (tokens acquired before the
  first block read) empties the position: quantity and cost go to zero, never below.

Transfers are valued whether the wallet bought, received or minted the tokens: a
transfer log does not say what was paid, so the market price at the block's time
stands in for the purchase price. An inbound transfer with no price makes the average
unknown (``None``) until the position is emptied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Movement:
    """A transfer as the position sees it: ``quantity`` in whole tokens, signed
    (positive into the wallet, negative out of it), and the price per token then."""

    quantity: Decimal
    price: float | None


@dataclass(frozen=True, slots=True)
class Position:
    quantity: Decimal
    cost: Decimal | None
    realised_pnl: Decimal | None

    @property
    def avg_purchase_price(self) -> Decimal | None:
        if self.cost is None or self.quantity <= 0:
            return None
        return self.cost / self.quantity


def to_tokens(amount_raw: int | Decimal, decimals: int) -> Decimal:
    """A raw on-chain amount in whole tokens, exactly."""
    return Decimal(amount_raw).scaleb(-decimals)


def movement(*, wallet: str, sender: str, receiver: str, amount_raw: int | Decimal,
             decimals: int, price: float | None) -> Movement:
    """How one transfer moves ``wallet``'s position (addresses compared case-blind)."""
    quantity = to_tokens(amount_raw, decimals)
    inbound, outbound = receiver.lower() == wallet.lower(), sender.lower() == wallet.lower()
    if inbound == outbound:  # to itself, or not the wallet's transfer at all
        quantity = Decimal(0)
    return Movement(quantity if inbound else -quantity, price)


def average_cost(movements: Iterable[Movement]) -> Position:
    """The weighted-average-cost position after ``movements``, oldest first."""
    quantity, cost, realised = Decimal(0), Decimal(0), Decimal(0)
    cost_known, realised_known = True, True
    for m in movements:
        if m.quantity > 0:
            if m.price is None:
                cost_known = False
            else:
                cost += m.quantity * Decimal(repr(m.price))
            quantity += m.quantity
        elif m.quantity < 0:
            out = min(-m.quantity, quantity)
            average = cost / quantity if quantity > 0 else Decimal(0)
            if m.price is None or not cost_known:
                realised_known = False
            else:
                realised += out * (Decimal(repr(m.price)) - average)
            cost -= out * average
            quantity -= out
        if quantity <= 0:
            quantity, cost, cost_known = Decimal(0), Decimal(0), True
    return Position(quantity=quantity, cost=cost if cost_known else None,
                    realised_pnl=realised if realised_known else None)
