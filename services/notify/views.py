"""Notify's HTTP API: webhook subscriptions, deliveries (operators) and the in-app feed; thin
routers over the use cases in `subscriptions`, `delivery_log` and `feed`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.notify import delivery_log, feed, subscriptions
from services.notify.models import Delivery, Notification, Subscription
from services.notify.schemas import (
    DeliveryOut,
    DeliveryPage,
    NotificationOut,
    NotificationPage,
    Recipient,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from shared.auth import Principal, Role, require
from shared.events import Channel
from shared.inputs import NUL_FREE, PageLimit, PageOffset
from shared.problems import Forbidden
from shared.service import RuntimeDep, UnitOfWorkDep

Operator = Annotated[Principal, require(Role.operator)]
Subscriber = Annotated[Principal, require(Role.vendor, Role.policyholder, Role.operator)]
Anyone = Annotated[Principal, require(Role.policyholder, Role.vendor, Role.adjuster, Role.operator)]

subscriptions_api = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
deliveries_api = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
notifications_api = APIRouter(prefix="/v1/notifications", tags=["notifications"])


def _subscription_out(subscription: Subscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(subscription, from_attributes=True)


@subscriptions_api.post("", status_code=status.HTTP_201_CREATED, response_model=SubscriptionOut)
async def create_subscription(body: SubscriptionIn, caller: Subscriber, runtime: RuntimeDep,
                              uow: UnitOfWorkDep, response: Response) -> SubscriptionOut:
    """A webhook endpoint for the caller (operators: for `owner`). The secret signs every
    delivery and is never shown again. 422 for a refused URL (see docs/notifications.md), 409
    for a second one to the same URL or past the owner's cap."""
    settings = runtime.resources["settings"]
    subscription = await subscriptions.create_subscription(
        uow, runtime.clock, caller, body, targets=runtime.resources["targets"],
        lookup_seconds=settings.webhook_timeout_seconds,
        max_per_owner=settings.max_subscriptions_per_owner)
    response.headers["Location"] = f"/v1/subscriptions/{subscription.id}"
    return _subscription_out(subscription)


@subscriptions_api.get("", response_model=SubscriptionList)
async def list_subscriptions(caller: Subscriber, uow: UnitOfWorkDep,
                             owner: Recipient | None = None) -> SubscriptionList:
    """The caller's own endpoints; operators see all, or one `owner`'s."""
    rows = await subscriptions.list_subscriptions(uow, caller, owner)
    return SubscriptionList(items=[_subscription_out(row) for row in rows])


@subscriptions_api.get("/{subscription_id}", response_model=SubscriptionOut)
async def read_subscription(subscription_id: uuid.UUID, caller: Subscriber,
                            uow: UnitOfWorkDep) -> SubscriptionOut:
    return _subscription_out(await subscriptions.visible_subscription(uow, caller, subscription_id))


@subscriptions_api.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_subscription(subscription_id: uuid.UUID, caller: Subscriber, runtime: RuntimeDep,
                              uow: UnitOfWorkDep) -> Response:
    await subscriptions.delete_subscription(uow, runtime.clock, caller, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut.model_validate({
        **{name: getattr(delivery, name) for name in DeliveryOut.model_fields
           if name != "next_attempt_at"},
        "next_attempt_at": delivery_log.next_attempt(delivery),
    })


@deliveries_api.get("", response_model=DeliveryPage)
async def list_deliveries(_: Operator, uow: UnitOfWorkDep,
                          state: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")]
                          = None,
                          recipient: Recipient | None = None, channel: Channel | None = None,
                          event_type: Annotated[str | None, Query(max_length=200, pattern=NUL_FREE)] = None,
                          incident_id: uuid.UUID | None = None,
                          limit: PageLimit = 50, offset: PageOffset = 0) -> DeliveryPage:
    filters = {"state": state, "recipient": recipient,
               "channel": channel.value if channel else None, "event_type": event_type,
               "incident_id": incident_id}
    rows, total = await delivery_log.list_deliveries(uow, filters, limit=limit, offset=offset)
    return DeliveryPage(items=[_delivery_out(row) for row in rows], total=total, limit=limit,
                        offset=offset)


@deliveries_api.get("/{delivery_id}", response_model=DeliveryOut)
async def read_delivery(delivery_id: uuid.UUID, _: Operator, uow: UnitOfWorkDep) -> DeliveryOut:
    return _delivery_out(await delivery_log.get_delivery(uow, delivery_id))


@deliveries_api.post("/{delivery_id}/redeliver", status_code=status.HTTP_202_ACCEPTED,
                     response_model=DeliveryOut)
async def redeliver(delivery_id: uuid.UUID, _: Operator, runtime: RuntimeDep,
                    uow: UnitOfWorkDep) -> DeliveryOut:
    """Give a dead delivery a fresh set of tries, starting now."""
    delivery = await delivery_log.redeliver(uow, runtime.clock, delivery_id)
    worker = runtime.resources.get("delivery_worker")
    if worker is not None:
        worker.wake()
    return _delivery_out(delivery)


def _notification_out(notification: Notification) -> NotificationOut:
    return NotificationOut.model_validate(notification, from_attributes=True)


@notifications_api.get("", response_model=NotificationPage)
async def list_notifications(caller: Anyone, uow: UnitOfWorkDep,
                             unread: bool = False, recipient: Recipient | None = None,
                             limit: PageLimit = 20, offset: PageOffset = 0) -> NotificationPage:
    """The caller's own feed, newest first (adjusters and operators: their team's). Operators
    may read any recipient's feed."""
    address = feed.feed_address(caller)
    if recipient is not None and recipient != address:
        if caller.role is not Role.operator:
            raise Forbidden("only operators may read another recipient's feed")
        address = recipient
    rows, total, unread_count = await feed.feed(uow, address, unread_only=unread,
                                                limit=limit, offset=offset)
    return NotificationPage(items=[_notification_out(row) for row in rows], total=total,
                            unread=unread_count, limit=limit, offset=offset)


@notifications_api.post("/{notification_id}/read", response_model=NotificationOut)
async def mark_read(notification_id: uuid.UUID, caller: Anyone, runtime: RuntimeDep,
                    uow: UnitOfWorkDep) -> NotificationOut:
    notification = await feed.mark_read(uow, runtime.clock, feed.feed_address(caller),
                                        notification_id)
    return _notification_out(notification)


routers = (subscriptions_api, deliveries_api, notifications_api)
