"""The development SMTP sink (`cyberclaims smtp-sink`): it keeps every mail and says what came."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from cyberclaims.sandbox import smtp
from services.notify.channels import email_message


def test_the_development_smtp_sink_saves_the_mail_and_prints_its_decoded_subject(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wire = email_message(
        sender="cyberclaims <notify@insurer.example>", to="holder@example.com",
        subject="勒索软件: ERP down", text="t", html="<p>h</p>", delivery_id="d-1",
    ).as_bytes()
    envelope = SimpleNamespace(original_content=wire, content=wire, rcpt_tos=["holder@example.com"])

    reply = asyncio.run(smtp.MaildirHandler(tmp_path).handle_DATA(None, None, envelope))

    assert reply.startswith("250")
    assert [path.read_bytes() for path in tmp_path.iterdir()] == [wire]
    assert "(勒索软件: ERP down)" in capsys.readouterr().out


def test_the_development_smtp_sink_accepts_a_subject_it_cannot_decode(tmp_path: Path) -> None:
    wire = b"Subject: =?x-unknown?q?abc?= =?utf-8?b?/w==?=\r\nTo: a@example.com\r\n\r\nbody\r\n"
    envelope = SimpleNamespace(original_content=wire, content=wire, rcpt_tos=["a@example.com"])

    reply = asyncio.run(smtp.MaildirHandler(tmp_path).handle_DATA(None, None, envelope))

    assert reply.startswith("250")
