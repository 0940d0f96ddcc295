"""What notify has read in one transaction beyond its rows by key (those are in
`shared.db.TransactionRows`), kept on the session (`session.info`): each incident's delivery
keys and the active subscriptions.

The consumer applies a whole fetch of events in one transaction, and many of them touch the
same incident, vendor or policyholder. Each is read once per transaction instead of once per
event, and the handlers run without autoflush: what they stage goes in at commit, one
statement per table, instead of in a flush before every query. A unit of work commits once
(the consumer's, a reminder pass), so the cache never outlives its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import Delivery, Subscription
from shared.db import any_of, transaction_state

DeliveryKey = tuple[uuid.UUID, str, str, str]
"""(source event id, recipient, channel, target): at most one delivery each."""


@dataclass(frozen=True)
class ActiveSubscription:
    """What the fan-out needs of an active subscription: its id, and the event types it wants
    (None: every type)."""

    id: uuid.UUID
    event_types: list[str] | None

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


class TransactionCache:
    """The delivery keys of each incident and the subscriptions of each owner, as this
    transaction has seen them."""

    def __init__(self) -> None:
        self._delivery_keys: dict[uuid.UUID, set[DeliveryKey]] = {}
        self._subscriptions: dict[str, list[ActiveSubscription]] | None = None

    @classmethod
    def of(cls, session: AsyncSession) -> TransactionCache:
        return transaction_state(session, cls)

    async def delivery_keys(self, session: AsyncSession,
                            incident_id: uuid.UUID) -> set[DeliveryKey]:
        """The keys of the incident's deliveries: the caller adds the ones it stages, so one
        look-up per incident answers every later event of it in this transaction."""
        await self.load_delivery_keys(session, [incident_id])
        return self._delivery_keys[incident_id]

    async def load_delivery_keys(self, session: AsyncSession,
                                 incident_ids: Iterable[uuid.UUID]) -> None:
        """The delivery keys of every incident of `incident_ids` not known yet, one statement."""
        wanted = {incident_id for incident_id in incident_ids
                  if incident_id not in self._delivery_keys}
        if not wanted:
            return
        for incident_id in wanted:
            self._delivery_keys[incident_id] = set()
        for row in await session.execute(
                select(Delivery.incident_id, Delivery.source_event_id, Delivery.recipient,
                       Delivery.channel, Delivery.target)
                .where(any_of(Delivery.incident_id, sorted(wanted)))):
            self._delivery_keys[row.incident_id].add(
                (row.source_event_id, row.recipient, row.channel, row.target))

    async def subscriptions(self, session: AsyncSession, owner: str) -> list[ActiveSubscription]:
        """The owner's active subscriptions, oldest first. Most recipients have none; one
        look-up per transaction reads every active subscription's id, owner and event types
        (no more rows than naming the owners that have any did), so no owner needs one of
        its own."""
        if self._subscriptions is None:
            by_owner: dict[str, list[ActiveSubscription]] = {}
            for subscription_id, subscribed, event_types in await session.execute(
                    select(Subscription.id, Subscription.owner, Subscription.event_types)
                    .where(Subscription.active.is_(True))
                    .order_by(Subscription.created_at, Subscription.id)):
                by_owner.setdefault(subscribed, []).append(
                    ActiveSubscription(subscription_id, event_types))
            self._subscriptions = by_owner
        return self._subscriptions.get(owner, [])
