"""Notification texts: one jinja2 template per kind, as plain text (`<kind>.txt`, whose
`subject` block is the subject line) and HTML (`<kind>.html`, autoescaped).

The templates ship with the package, so each is compiled once per process and never checked
for changes again (jinja2's `auto_reload` looked at the files on every render)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape


class Rendered:
    """A notification's subject line and plain text; its HTML, which only mail carries, is
    rendered the first time it is asked for."""

    def __init__(self, subject: str, text: str, html_template: Template,
                 context: Mapping[str, Any]) -> None:
        self.subject = " ".join(subject.split())
        self.text = text
        self._html_template = html_template
        self._html_context = {**context, "subject": subject}

    @cached_property
    def html(self) -> str:
        return self._html_template.render(self._html_context)


class Templates:
    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("services.notify", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def render(self, kind: str, context: Mapping[str, Any]) -> Rendered:
        text_template = self._env.get_template(f"{kind}.txt")
        subject_block = text_template.blocks["subject"]
        subject = "".join(subject_block(text_template.new_context(dict(context)))).strip()
        text = text_template.render(context).strip() + "\n"
        return Rendered(subject, text, self._env.get_template(f"{kind}.html"), context)
