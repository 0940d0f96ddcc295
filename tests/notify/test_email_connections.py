"""The email sender keeps its SMTP connections open between messages, against a real SMTP server
(aiosmtpd), and replaces one the server has closed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.controller import Controller

from services.notify.channels import EmailSender, email_message
from services.notify.settings import NotifySettings
from tests.support.infra import free_port


class PeerRecorder:
    """Records which client connection (its address and port) carried each message."""

    def __init__(self) -> None:
        self.peers: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        return "250 OK"


def message(number: int) -> Any:
    return email_message(sender="notify@insurer.example", to="holder@example.com",
                         subject=f"Update {number}", text="text", html="<p>html</p>",
                         delivery_id=f"delivery-{number}")


async def test_mails_share_kept_open_connections_and_a_closed_one_is_replaced() -> None:
    port = free_port()
    recorder = PeerRecorder()
    server = Controller(recorder, hostname="127.0.0.1", port=port)
    server.start()
    sender = EmailSender(NotifySettings(smtp_port=port, smtp_timeout_seconds=2.0,
                                       smtp_connections=2))
    try:
        for number in range(5):
            await sender.send(message(number))
        assert len(recorder.peers) == 5 and len(set(recorder.peers)) == 1

        await asyncio.gather(*(sender.send(message(number)) for number in range(5, 15)))
        assert len(recorder.peers) == 15 and len(set(recorder.peers)) == 2  # the pool's limit

        server.stop()  # the server goes away, closing every connection
        server = Controller(recorder, hostname="127.0.0.1", port=port)
        server.start()
        await sender.send(message(15))
        assert len(recorder.peers) == 16 and recorder.peers[-1] not in recorder.peers[:-1]
    finally:
        await sender.close()
        server.stop()
