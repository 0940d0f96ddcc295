"""A local SMTP sink for development (`cyberclaims smtp-sink`, started by `make run`).

It accepts every message (aiosmtpd) and writes it, unchanged, to `<maildir>/<time>-<n>.eml`,
printing one line per message. Nothing is ever relayed.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    """aiosmtpd handler that saves each message as an .eml file."""

    def __init__(self, maildir: Path, *, echo: bool = True) -> None:
        self.maildir = maildir
        self.echo = echo
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        with self._lock:
            number = next(self._numbers)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.maildir / f"{stamp}-{number:05d}.eml"
        path.write_bytes(content)
        if self.echo:
            subject = _subject(content)
            recipients = ", ".join(envelope.rcpt_tos)
            print(f"mail for {recipients} saved to {path} ({subject})", flush=True)
        return "250 Message accepted for delivery"


def _subject(content: bytes) -> str:
    """The decoded Subject, from the headers alone: parsing the whole message took about 4 ms
    a mail, most of the sink's CPU under load; the headers take about 0.35 ms. An unknown
    charset or bad bytes decode to replacement characters, never to an error."""
    return str(BytesHeaderParser(policy=default).parsebytes(content)["Subject"] or "")


def start(host: str, port: int, maildir: str | Path, *, echo: bool = True) -> Controller:
    """Start the sink in a background thread; `controller.stop()` ends it."""
    directory = Path(maildir)
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(MaildirHandler(directory, echo=echo), hostname=host, port=port)
    controller.start()
    return controller


def serve(host: str, port: int, maildir: str) -> None:
    """Run the sink until interrupted."""
    controller = start(host, port, maildir)
    print(f"SMTP sink on {host}:{port}: mail lands in {Path(maildir).resolve()}/ (one .eml per "
          "message)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
