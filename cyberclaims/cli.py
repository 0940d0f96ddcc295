"""`cyberclaims`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from cyberclaims.broker import broker_command
from cyberclaims.registry import SERVICES, ServiceEntry, service
from shared import dlq
from shared.auth import Role, audience_of
from shared.migrations import migrate as run_migrations
from shared.settings import PlatformSettings
from shared.signing import SERVICE_NAMES, TokenSigner, development_signer

app = typer.Typer(help="Run and operate cyberclaims.", no_args_is_help=True,
                  add_completion=False)
dlq_app = typer.Typer(help="Inspect and replay dead-lettered events.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
insights_app = typer.Typer(help="Operate the insights read model.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")
payments_app = typer.Typer(help="Operate on payments.", no_args_is_help=True)
app.add_typer(payments_app, name="payments")
example_app = typer.Typer(help="Print request bodies for the README's quick start, dated now.",
                          no_args_is_help=True)
app.add_typer(example_app, name="example")

ServiceName = Annotated[str, typer.Argument(help="intake, triage, payout, notify, risk or insights")]


def _entry(name: str) -> ServiceEntry:
    try:
        entry = service(name)
    except KeyError:
        raise typer.BadParameter(f"unknown service {name!r}; one of "
                                 + ", ".join(e.name for e in SERVICES)) from None
    if not entry.available():
        raise typer.BadParameter(f"service {name!r} is not built yet")
    return entry


@app.command()
def broker(port: int = 9092) -> None:
    """Start the Tansu development broker (memory only) in the foreground."""
    import os

    command = broker_command(port)
    os.execv(command[0], command)  # noqa: S606 - replaces this process with the broker


@app.command()
def migrate(name: ServiceName, revision: str = "head") -> None:
    """Apply a service's database migrations (an explicit step, never at start-up)."""
    entry = _entry(name)
    url = entry.settings().resolved_database_url(name)
    run_migrations(name, url, revision)
    typer.echo(f"{name}: migrated to {revision}")


@app.command()
def serve(
    name: ServiceName,
    api_only: Annotated[bool, typer.Option(help="Serve HTTP only: no consumer, relay or timers")]
    = False,
) -> None:
    """Run a service: its API, its event consumer, its outbox relay and its timers."""
    entry = _entry(name)
    settings = entry.settings()
    application = entry.create_app(run_workers=not api_only)
    uvicorn.run(application, host=settings.host, port=settings.port, log_config=None,
                access_log=False)


def _signer() -> TokenSigner:
    try:
        return development_signer(PlatformSettings())
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@app.command()
def token(
    role: Annotated[Role, typer.Option(
        help="policyholder, vendor, adjuster, operator, underwriter, actuary or regulator")],
    sub: Annotated[str | None, typer.Option(help="subject (user id)")] = None,
    org_id: Annotated[str | None, typer.Option("--org-id")] = None,
    vendor_id: Annotated[str | None, typer.Option("--vendor-id")] = None,
    audience: Annotated[list[str] | None, typer.Option(
        help="the service(s) the token is for (default: every service)")] = None,
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 86_400,
) -> None:
    """Print a development JWT (ES256) signed with the local key (.data/signing-key.pem, created
    on first use; `make run`'s services read its JWKS). An adjuster's authority is not in the
    token: register it with `cyberclaims adjuster`."""
    for name in audience or ():
        if name not in SERVICE_NAMES:
            raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICE_NAMES)}")
    subject = sub or org_id or vendor_id or f"{role.value}-1"
    audiences = [audience_of(name) for name in audience or SERVICE_NAMES]
    typer.echo(_signer().issue(role=role, sub=subject, org_id=org_id, vendor_id=vendor_id,
                               audience=audiences, ttl_seconds=ttl))


@app.command()
def adjuster(
    subject: Annotated[str, typer.Argument(help="the adjuster's token `sub`")],
    authority_limit: Annotated[str, typer.Option("--authority-limit", help="the most they may "
                                                 "decide on, e.g. 2000000")],
    reason: Annotated[str, typer.Option(help="why (kept in the registry's audit)")],
    inactive: Annotated[bool, typer.Option("--inactive", help="no authority at all")] = False,
    token: Annotated[str | None, typer.Option(
        envvar="CYBERCLAIMS_TOKEN", help="an operator's token (default: a development one)")]
    = None,
) -> None:
    """Register an adjuster in payout's registry, or change their authority (operators)."""
    entry = _as_operator_on_payout(
        "PUT", f"/v1/adjusters/{subject}", token, failed="not changed",
        body={"authority_limit": authority_limit, "active": not inactive, "reason": reason})
    typer.echo(f"adjuster {subject}: authority limit {entry['authority_limit']}, "
               f"{'active' if entry['active'] else 'inactive'}")


@dlq_app.command("list")
def dlq_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every dead-lettered message, with its error and origin."""
    letters = asyncio.run(dlq.read_all(PlatformSettings().kafka_bootstrap))
    if as_json:
        typer.echo(json.dumps([letter.summary() for letter in letters], indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
    for letter in letters:
        s = letter.summary()
        typer.echo(f"{s['dead_letter']}  {s['type']}  consumer={s['consumer']}  "
                   f"origin={s['origin']}  error={s['error']}")


@dlq_app.command("replay")
def dlq_replay(
    dead_letter: Annotated[str | None, typer.Argument(help="topic:partition:offset from `list`")]
    = None,
    all_: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
) -> None:
    """Publish dead letters back to their origin topic (after the fault is fixed)."""
    if not dead_letter and not all_:
        raise typer.BadParameter("name a dead letter or pass --all")
    try:
        replayed = asyncio.run(dlq.replay(PlatformSettings().kafka_bootstrap,
                                          None if all_ else dead_letter))
    except dlq.NoSuchDeadLetter as exc:
        raise SystemExit(str(exc)) from exc
    typer.echo(f"replayed {replayed} message(s)")


@insights_app.command("rebuild")
def insights_rebuild() -> None:
    """Empty insights' tables and consume every topic again from offset 0."""
    from cyberclaims.insights import rebuild

    read = asyncio.run(rebuild(_entry("insights"), PlatformSettings()))
    typer.echo(f"insights: rebuilt from {read} message(s)")


@payments_app.command("retry")
def payments_retry(
    claim_id: Annotated[str, typer.Argument(help="the claim whose payment failed")],
    token: Annotated[str | None, typer.Option(
        envvar="CYBERCLAIMS_TOKEN", help="an operator's token (default: a development one)")]
    = None,
) -> None:
    """Send a failed payment again (same idempotency key: never a second payment)."""
    claim = _as_operator_on_payout("POST", f"/v1/claims/{claim_id}/payment/retry", token,
                                   failed="not retried")
    typer.echo(f"payment of claim {claim_id} retried; claim is {claim['status']}")


def _as_operator_on_payout(method: str, path: str, token: str | None, *, failed: str,
                           body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One operator call to payout (a development operator token unless `token` is given);
    its JSON answer, or exit 1 saying `failed` with payout's answer."""
    import httpx

    settings = service("payout").settings()
    bearer = token or _signer().issue(role=Role.operator, sub="cli-operator")
    response = httpx.request(method, f"http://{settings.host}:{settings.port}{path}", json=body,
                             headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    if response.status_code != 200:
        typer.echo(f"{failed}: HTTP {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    answer: dict[str, Any] = response.json()
    return answer


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Consumer lag, pending outbox rows, dead letters and stuck state machines, in one report
    (exit code 1 when something needs attention)."""
    from cyberclaims.doctor import collect
    from cyberclaims.registry import available_services
    from shared.clock import SystemClock

    databases = {entry.name: entry.settings().resolved_database_url(entry.name)
                 for entry in available_services()}
    report = asyncio.run(collect(PlatformSettings().kafka_bootstrap, databases, SystemClock()))
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
    if not report.healthy:
        raise typer.Exit(1)


@app.command("sandbox-payments")
def sandbox_payments(host: str = "127.0.0.1", port: int = 8010,
                     ledger: Annotated[Path | None, typer.Option(
                         help="keep payments in this file across restarts")] = None) -> None:
    """Run the sandbox payment provider (a stand-in bank for development and tests)."""
    from cyberclaims.sandbox import payments

    payments.serve(host, port, ledger)


@app.command("object-store")
def object_store(host: str = "127.0.0.1", port: int = 8011,
                 root: Annotated[Path, typer.Option(help="where the objects are kept")]
                 = Path(".data/broker")) -> None:
    """Run a local S3-compatible object store on files: the development broker's storage."""
    from cyberclaims.sandbox import objectstore

    objectstore.serve(host, port, root)


@app.command("smtp-sink")
def smtp_sink(host: str = "127.0.0.1", port: int = 1025,
              maildir: Annotated[str, typer.Option(help="where received mail is written")]
              = ".data/mail") -> None:
    """Run a local SMTP server that keeps every message it receives (development)."""
    from cyberclaims.sandbox import smtp

    smtp.serve(host, port, maildir)


@app.command()
def asyncapi() -> None:
    """Print the AsyncAPI 3.0 document of every event (docs/asyncapi.json is its output)."""
    from cyberclaims.asyncapi import render

    typer.echo(render(), nl=False)


@example_app.command("policy")
def example_policy(policy_number: Annotated[str, typer.Option()],
                   org_id: Annotated[str, typer.Option()], region: str = "CN-GD") -> None:
    """A policy in force today (its period runs from 180 days ago to 185 days ahead)."""
    from datetime import UTC, datetime

    from cyberclaims.demo import policy_body

    typer.echo(json.dumps(policy_body(org_id, policy_number, datetime.now(UTC), region=region)))


@example_app.command("vendor")
def example_vendor(vendor_id: Annotated[str, typer.Option()], region: str = "CN-GD") -> None:
    """A panel vendor serving `region` that takes every job type (so no job waits unassigned)."""
    from cyberclaims.demo import vendor_body
    from shared.events import JobType

    typer.echo(json.dumps(vendor_body(vendor_id, "Quick Start Incident Response", region,
                                      [job_type.value for job_type in JobType], 4.5)))


@example_app.command("incident")
def example_incident(policy_number: Annotated[str, typer.Option()]) -> None:
    """A ransomware report discovered 31 hours ago: within the notice period, so no LATE_NOTICE."""
    from datetime import UTC, datetime

    from cyberclaims.demo import ransomware_report

    typer.echo(json.dumps(ransomware_report(policy_number, datetime.now(UTC))))


@app.command()
def demo() -> None:
    """Play a full ransomware claim against the running system (start it with `make run`)."""
    from cyberclaims.client import Api
    from cyberclaims.demo import run_demo
    from cyberclaims.registry import available_services

    urls = {}
    for entry in available_services():
        settings = entry.settings()
        urls[entry.name] = f"http://{settings.host}:{settings.port}"
    api = Api(urls, _signer())
    try:
        run_demo(api)
    finally:
        api.close()


@app.command()
def simulate(
    policies: Annotated[int, typer.Option(min=1, max=100_000, help="organisations insured")] = 50,
    years: Annotated[int, typer.Option(min=1, max=10, help="consecutive annual policies each")] = 2,
    seed: Annotated[int, typer.Option(help="the same seed draws the same book")] = 1,
    history_years: Annotated[int | None, typer.Option(
        min=0, max=10, help="the first H policy years go to insights as an imported loss "
                            "bordereau with their real dates (default: all but the last)")] = None,
) -> None:
    """Draw a synthetic book (telecom, internet, manufacturing, finance): import its past years
    into insights as the loss history of a legacy system, and drive the recent claims through
    the running system's public APIs, so insights has loss experience and development to show
    (docs/insights.md)."""
    from datetime import UTC, datetime, timedelta

    from cyberclaims.client import Api
    from cyberclaims.registry import available_services
    from cyberclaims.simulate import book, bordereaux, drive, import_history, split

    history = years - 1 if history_years is None else history_years
    if history > years:
        raise typer.BadParameter(f"at most --years ({years})", param_hint="--history-years")
    urls = {}
    for entry in available_services():
        settings = entry.settings()
        urls[entry.name] = f"http://{settings.host}:{settings.port}"
    now = datetime.now(UTC)
    start = now - timedelta(days=365 * years)
    the_book = book(policies, years, seed, start=start)
    past, recent = split(the_book, history_until=start + timedelta(days=365 * history))
    api = Api(urls, _signer())

    def say(message: str) -> None:
        typer.echo(f"==> {message}")

    try:
        imported = import_history(api, bordereaux(past, seed=seed, now=now,
                                                  currency=PlatformSettings().currency), say=say)
        played = drive(api, recent, say=say)
    finally:
        api.close()
    typer.echo(f"simulated {len(the_book.policies)} policies: {imported} past claims imported, "
               f"{played} recent claims played; see http://127.0.0.1:8006/insights")


@app.command()
def dev(
    start_broker: Annotated[bool, typer.Option("--broker/--no-broker",
                                               help="start the Tansu dev broker")] = True,
) -> None:
    """Start the whole system on embedded defaults (what `make run` does)."""
    from cyberclaims.dev import run_dev

    run_dev(start_broker=start_broker)


if __name__ == "__main__":
    app()
