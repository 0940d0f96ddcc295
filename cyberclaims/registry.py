"""Which services exist, where their app factories live and which port each listens on."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    default_port: int

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    def available(self) -> bool:
        return importlib.util.find_spec(f"{self.module}.app") is not None

    def settings(self) -> ServiceSettings:
        module = importlib.import_module(f"{self.module}.settings")
        cls = getattr(module, f"{self.name.capitalize()}Settings")
        settings: ServiceSettings = cls()
        return settings

    def create_app(self, **options: Any) -> FastAPI:
        module = importlib.import_module(f"{self.module}.app")
        app: FastAPI = module.create_app(**options)
        return app


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("intake", 8001),
    ServiceEntry("triage", 8002),
    ServiceEntry("payout", 8003),
    ServiceEntry("notify", 8004),
    ServiceEntry("insights", 8006),
)


def service(name: str) -> ServiceEntry:
    for entry in SERVICES:
        if entry.name == name:
            return entry
    raise KeyError(name)


def available_services() -> list[ServiceEntry]:
    return [entry for entry in SERVICES if entry.available()]
