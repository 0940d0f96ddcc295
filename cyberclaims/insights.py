"""The operator's side of `cyberclaims insights rebuild`: connections for the replay."""

from __future__ import annotations

from cyberclaims.registry import ServiceEntry
from services.insights.rebuild import rebuild as replay
from shared.clock import SystemClock
from shared.db import UnitOfWorkFactory, create_engine
from shared.kafka import KafkaPublisher
from shared.settings import PlatformSettings


async def rebuild(entry: ServiceEntry, platform: PlatformSettings) -> int:
    engine = create_engine(entry.settings().resolved_database_url(entry.name))
    publisher = KafkaPublisher(platform.kafka_bootstrap, client_id="cyberclaims-insights-rebuild",
                               idempotent=platform.kafka_idempotent_producer)
    await publisher.start()
    try:
        return await replay(UnitOfWorkFactory(engine), platform.kafka_bootstrap, publisher,
                            SystemClock())
    finally:
        await publisher.stop()
        await engine.dispose()
