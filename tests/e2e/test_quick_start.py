"""The README's quick start works as pasted, and again: its commands run twice against the
running system (each run a new organisation, incidents dated now, a vendor that serves the
region), and a replayed report answers with the first response's body."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cyberclaims.cli import app as cli
from cyberclaims.client import Api, wait_for
from services.intake.schemas import IncidentReportIn, PolicyIn
from services.triage.schemas import VendorIn
from tests.e2e.system import System

ROOT = Path(__file__).resolve().parents[2]
SEPARATOR = "@@@ next command @@@"


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start block, a continued line (`\\` or `|`) joined
    to the next."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start"):readme.index("## Services")]
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL) if "curl" in b]
    commands: list[str] = []
    continued = False
    for line in block.splitlines():
        commands[-1:] = [commands[-1] + "\n" + line] if continued else [*commands[-1:], line]
        continued = line.rstrip().endswith(("\\", "|"))
    return commands


def run_quick_start(system: System, *, report_twice: bool) -> list[str]:
    """Each command's output, in one shell that stops at the first failure."""
    script = ["set -euo pipefail"]
    for command in quick_start_commands():
        command = (command.replace("http://127.0.0.1:8001", system.urls["intake"])
                   .replace("http://127.0.0.1:8002", system.urls["triage"]))
        repeats = 2 if report_twice and "/v1/incidents \\" in command else 1
        script += [f"{command}\necho\necho '{SEPARATOR}'"] * repeats
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "-c", "\n".join(script)], cwd=ROOT, env=system.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [output.strip() for output in done.stdout.split(SEPARATOR)[:-1]]


@pytest.mark.slow
def test_the_quick_start_works_as_pasted_and_again(system: System) -> None:
    first = [output for output in run_quick_start(system, report_twice=True) if output]
    policy, vendor, reported, replayed, listing, _jobs = (json.loads(o) for o in first)
    assert policy["policy_number"] == f"POL-{policy['org_id']}"
    assert vendor["vendor_id"] == f"dfir-{policy['org_id']}"
    assert reported["status"] == "reported"
    assert replayed == reported
    assert [item["id"] for item in listing["items"]] == [reported["id"]]

    second = [json.loads(o) for o in run_quick_start(system, report_twice=False) if o]
    assert second[0]["org_id"] != policy["org_id"]  # a new organisation, no 409


@pytest.mark.slow
def test_the_quick_start_incident_goes_to_the_vendor_it_registers(system: System, api: Api
                                                                   ) -> None:
    outputs = [json.loads(o) for o in run_quick_start(system, report_twice=False) if o]
    vendor, reported = outputs[1], outputs[2]
    assert reported["status"] == "reported"
    jobs = wait_for("the quick start's jobs dispatched", lambda: api.vendor(
        vendor["vendor_id"]).call("triage", "GET", "/v1/jobs")["items"],
        until=lambda jobs: len(jobs) == 4)
    assert {job["status"] for job in jobs} == {"dispatched"}
    assert {job["incident_id"] for job in jobs} == {reported["id"]}


def test_the_example_bodies_are_valid_and_raise_no_coverage_question() -> None:
    """Dated now: the incident occurred inside the policy's period (and not in its first 30
    days) and is reported well within the default notice period."""
    runner = CliRunner()

    def printed(*args: str) -> dict[str, Any]:
        result = runner.invoke(cli, ["example", *args])
        assert result.exit_code == 0, result.output
        body: dict[str, Any] = json.loads(result.output)
        return body

    policy = PolicyIn.model_validate(printed("policy", "--policy-number", "POL-x",
                                             "--org-id", "org-x"))
    VendorIn.model_validate(printed("vendor", "--vendor-id", "dfir-x"))
    incident = IncidentReportIn.model_validate(printed("incident", "--policy-number", "POL-x"))
    now = datetime.now(UTC)
    assert policy.period_start + timedelta(days=30) < incident.occurred_at < policy.period_end
    assert now - incident.discovered_at < timedelta(hours=policy.notice_period_hours)
