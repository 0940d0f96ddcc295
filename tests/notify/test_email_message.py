"""The mail as it goes on the wire: parts, headers, non-ASCII text, no header injection."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from types import SimpleNamespace

import pytest

from cyberclaims.sandbox import smtp
from services.notify.channels import email_message
from services.notify.signing import DELIVERY_HEADER


def test_a_title_cannot_add_headers_and_chinese_text_survives_the_round_trip() -> None:
    wire = email_message(
        sender="cyberclaims <notify@insurer.example>", to="holder@example.com",
        subject="勒索软件: ERP down\r\nBcc: attacker@example.com", text="正文 plain",
        html="<p>正文 html</p>", delivery_id="d-1",
    ).as_bytes()

    received = message_from_bytes(wire, policy=default)
    assert received["Subject"] == "勒索软件: ERP down Bcc: attacker@example.com"
    assert received["Bcc"] is None
    assert received[DELIVERY_HEADER] == "d-1"
    assert received.get_content_type() == "multipart/alternative"
    assert received.get_body(("plain",)).get_content().strip() == "正文 plain"
    assert received.get_body(("html",)).get_content().strip() == "<p>正文 html</p>"


def test_a_text_that_looks_like_the_boundary_does_not_end_its_part() -> None:
    boundary_line = "--=_cyberclaims_d-1"
    wire = email_message(
        sender="cyberclaims <notify@insurer.example>", to="holder@example.com", subject="s",
        text=f"{boundary_line}\n{boundary_line}--\nafter", html=f"<p>{boundary_line}</p>",
        delivery_id="d-1",
    ).as_bytes()

    received = message_from_bytes(wire, policy=default)
    assert received.get_boundary() == "=_cyberclaims_d-1"
    assert received.get_body(("plain",)).get_content() == f"{boundary_line}\n{boundary_line}--\nafter"
    assert received.get_body(("html",)).get_content() == f"<p>{boundary_line}</p>"


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
