"""How a new report is written: its incident, first timeline entry and outbox row, all or
nothing, and on PostgreSQL together with the other reports that arrive at the same moment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import JSON, Select, Text, bindparam, cast, exists, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.types import TypeEngine

from services.intake.models import Base
from shared.batching import GroupCommit, GroupCommitStopped
from shared.clock import Clock
from shared.db import UnitOfWorkFactory
from shared.jsoncodec import dumps_text
from shared.outbox import Outbox
from shared.problems import Unavailable

INCIDENT_COLUMNS = (
    "id", "org_id", "policy_number", "idempotency_key", "request_hash", "category", "title",
    "description", "occurred_at", "discovered_at", "reported_at", "contact", "systems_down",
    "outage_started_at", "affected_hosts", "records_exposed", "data_types", "ransom_demanded",
    "funds_transferred", "status",
)
ENTRY_COLUMNS = ("event_id", "at", "type", "summary")
OUTBOX_COLUMNS = ("event_id", "event_type", "topic", "partition_key", "envelope", "state",
                  "attempts", "next_attempt_at", "created_at")


class NewReport(NamedTuple):
    """A new report's rows, as plain column values: its incident, its first timeline entry
    and its outbox row."""

    incident: dict[str, Any]
    entry: dict[str, Any]
    event: dict[str, Any]


class _ReportColumn(NamedTuple):
    part: str  # the NewReport field the value is in
    name: str  # the column's name in that part's table
    type: TypeEngine[Any]

    @property
    def key(self) -> str:
        return f"{self.part}_{self.name}"

    @property
    def is_json(self) -> bool:
        """JSON travels as text: an array of JSON lists would read as a nested array."""
        return isinstance(self.type, JSON)


REPORT_COLUMNS = tuple(
    _ReportColumn(part, name, Base.metadata.tables[table].c[name].type)
    for part, table, names in (("incident", "incidents", INCIDENT_COLUMNS),
                               ("entry", "timeline", ENTRY_COLUMNS),
                               ("event", "outbox", OUTBOX_COLUMNS))
    for name in names
)


def _store_reports_statement() -> Select[Any]:
    """Many new reports in one PostgreSQL statement: each incident (only against the caller's
    own policy, and only once per Idempotency-Key) and, for the incidents inserted, their
    timeline entries and outbox rows, in the order given. Each column arrives as one array
    (`unnest`), so one statement text serves any number of reports. Returns the ids of the
    incidents inserted."""
    tables = Base.metadata.tables
    incidents, policies = tables["incidents"], tables["policies"]
    unnested = func.unnest(*(
        bindparam(column.key, type_=postgresql.ARRAY(Text() if column.is_json else column.type))
        for column in REPORT_COLUMNS
    )).table_valued(*(column.key for column in REPORT_COLUMNS),
                    with_ordinality="position").render_derived()
    report = select(*(cast(unnested.c[column.key], column.type).label(column.key)
                      if column.is_json else unnested.c[column.key] for column in REPORT_COLUMNS),
                    unnested.c.position).cte("report")

    def values(part: str, names: Sequence[str]) -> list[Any]:
        return [report.c[f"{part}_{name}"] for name in names]

    new_incident = (
        postgresql.insert(incidents)
        .from_select(INCIDENT_COLUMNS, select(*values("incident", INCIDENT_COLUMNS))
                     .where(exists().where(policies.c.policy_number == report.c.incident_policy_number,
                                           policies.c.org_id == report.c.incident_org_id))
                     .order_by(report.c.position))
        .on_conflict_do_nothing(index_elements=["org_id", "idempotency_key"])
        .returning(incidents.c.id).cte("new_incident"))
    stored = report.join(new_incident, new_incident.c.id == report.c.incident_id)
    new_entries = insert(tables["timeline"]).from_select(
        ["incident_id", *ENTRY_COLUMNS],
        select(report.c.incident_id, *values("entry", ENTRY_COLUMNS)).select_from(stored)
        .order_by(report.c.position)).cte("new_entries")
    new_events = insert(tables["outbox"]).from_select(
        OUTBOX_COLUMNS, select(*values("event", OUTBOX_COLUMNS)).select_from(stored)
        .order_by(report.c.position)).cte("new_events")
    return select(new_incident.c.id).add_cte(new_entries, new_events)


STORE_REPORTS = _store_reports_statement()


class ReportStore:
    """Stages and stores new reports (it holds the outbox and clock they are staged with).
    The reports that arrive together are stored in one statement (`GroupCommit`): under
    load, one round trip and one commit for many reports."""

    def __init__(self, uows: UnitOfWorkFactory, outbox: Outbox, clock: Clock) -> None:
        self.uows = uows
        self.outbox = outbox
        self.clock = clock
        # A batch that fails for any reason is written again report by report: whatever
        # one tenant's report does to the statement, only that report fails. Only a pool
        # with no connection to give (overload: 503) is everyone's at once.
        self._together: GroupCommit[NewReport, bool] = GroupCommit(
            "intake_reports", self.store_together, item_errors=(Exception,),
            shared_errors=(PoolTimeout,))

    async def store(self, report: NewReport) -> bool:
        """Store the incident, its first timeline entry and its event together; False
        (nothing stored) when the policy is not the caller's or the Idempotency-Key was
        used before."""
        try:
            return await self._together.submit(report)
        except IntegrityError:  # a constraint refused its rows
            return False
        except GroupCommitStopped as exc:
            raise Unavailable("the service is stopping; retry with the same Idempotency-Key "
                              "(the report may have been stored)") from exc

    async def store_together(self, reports: Sequence[NewReport]) -> list[bool]:
        """What the group commit calls: `reports` in one statement; for each, whether it was
        stored."""
        parameters = {}
        for column in REPORT_COLUMNS:
            values = [getattr(report, column.part)[column.name] for report in reports]
            parameters[column.key] = [dumps_text(v) for v in values] if column.is_json else values
        stored = {row.id for row in await self.uows.commit_statement(STORE_REPORTS, parameters,
                                                                      stages_events=True)}
        return [report.incident["id"] in stored for report in reports]
