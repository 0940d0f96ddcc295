"""Notification texts: one jinja2 template per kind, as plain text (`<kind>.txt`, whose
`subject` block is the subject line) and HTML (`<kind>.html`, autoescaped)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Templates:
    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("services.notify", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, kind: str, context: Mapping[str, Any]) -> Rendered:
        text_template = self._env.get_template(f"{kind}.txt")
        subject_block = text_template.blocks["subject"]
        subject = "".join(subject_block(text_template.new_context(dict(context)))).strip()
        text = text_template.render(context).strip() + "\n"
        html = self._env.get_template(f"{kind}.html").render({**context, "subject": subject})
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)
