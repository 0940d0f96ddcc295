"""Dead letters: read every `.dlq` topic, and publish chosen messages back to their origin.

The one replay path, shared by `cyberclaims dlq replay` and every service's operators' API
(`shared/operations.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import ConsumerRecord

from shared.consumer import REPLAYED_HEADER
from shared.kafka import KafkaPublisher, OutgoingMessage, Publisher, read_from_beginning
from shared.topics import CATALOG


@dataclass(frozen=True)
class DeadLetter:
    record: ConsumerRecord[bytes, bytes]

    @property
    def id(self) -> str:
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"

    def header(self, name: str) -> str:
        for key, value in self.record.headers or ():
            if key == name:  # a header without a value (Kafka allows it) reads as empty
                return "" if value is None else bytes(value).decode(errors="replace")
        return ""

    def summary(self) -> dict[str, str]:
        return {
            "dead_letter": self.id,
            "type": self.header("ce_type") or "(unreadable)",
            "event_id": self.header("ce_id"),
            "consumer": self.header("dlq_consumer"),
            "origin": f"{self.header('dlq_origin_topic')}:{self.header('dlq_origin_partition')}"
                      f":{self.header('dlq_origin_offset')}",
            "attempts": self.header("dlq_attempts"),
            "failed_at": self.header("dlq_failed_at"),
            "error": self.header("dlq_error"),
        }


async def read_all(bootstrap: str) -> list[DeadLetter]:
    records = await read_from_beginning(bootstrap, [t.dead_letter for t in CATALOG])
    return [DeadLetter(record) for record in records]


class NoSuchDeadLetter(LookupError):
    """The dead letter asked for is not (or no longer, past retention) on its topic."""


async def replay(bootstrap: str, dead_letter_id: str | None) -> int:
    """Replay one dead letter (by id) or all, with a producer of its own (the CLI's way)."""
    letters = [letter for letter in await read_all(bootstrap)
               if dead_letter_id is None or letter.id == dead_letter_id]
    if dead_letter_id is not None and not letters:
        raise NoSuchDeadLetter(f"no dead letter {dead_letter_id}")
    publisher = KafkaPublisher(bootstrap, client_id="cyberclaims-dlq-replay", idempotent=False)
    await publisher.start()
    try:
        return await republish(publisher, letters)
    finally:
        await publisher.stop()


async def republish(publisher: Publisher, letters: list[DeadLetter]) -> int:
    """Publish `letters` back to their origin topics; the consumers' inboxes keep this
    idempotent. Each copy says it is a replay, so applying it clears the mark the dead letter
    left."""
    futures = await publisher.send_many([_replay_of(letter) for letter in letters])
    for future in futures:
        await future
    return len(letters)


def _replay_of(letter: DeadLetter) -> OutgoingMessage:
    headers = [(k, v) for k, v in letter.record.headers or ()
               if not k.startswith("dlq_") and k != REPLAYED_HEADER]
    headers.append((REPLAYED_HEADER, b"1"))
    return OutgoingMessage(letter.header("dlq_origin_topic"), letter.record.key or b"",
                           letter.record.value or b"", headers)
