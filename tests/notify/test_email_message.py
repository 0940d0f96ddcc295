"""The mail as it goes on the wire: parts, headers, non-ASCII text, no header injection."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

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
