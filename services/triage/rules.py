"""The rulebook's triage rules (section 5) as pure functions: no I/O, no clock, no database.

Absent counts and amounts in a report count as zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from shared.events import (
    Attribution,
    Category,
    CompletionReport,
    JobType,
    Priority,
    RegulatoryGrade,
    VerifiedOutage,
)

EVERY_REGION = "*"


@dataclass(frozen=True)
class ResponseTimes:
    """Acceptance deadlines per priority and the windows for reporting to the regulator."""

    sla: Mapping[Priority, timedelta]
    regulatory_window: timedelta
    critical_infrastructure_window: timedelta
    assessment_acceptance: timedelta = timedelta(hours=72)
    """Acceptance deadline of a risk assessment job (not tied to an incident's priority)."""


@dataclass(frozen=True)
class IncidentFacts:
    """What triage needs of a report and of its policy."""

    category: Category
    systems_down: bool
    critical_infrastructure: bool
    discovered_at: datetime
    records_exposed: int = 0
    affected_hosts: int = 0
    funds_transferred: Decimal = Decimal(0)


def priority(facts: IncidentFacts) -> Priority:
    """P1 to P4, first match wins."""
    ransomware = facts.category is Category.ransomware
    records = facts.records_exposed
    if ((ransomware and facts.systems_down)
            or (facts.critical_infrastructure and facts.systems_down)
            or records >= 1_000_000):
        return Priority.P1
    if (ransomware or facts.systems_down or records >= 100_000
            or facts.funds_transferred >= 1_000_000):
        return Priority.P2
    if (facts.category in (Category.data_breach, Category.business_email_compromise)
            or records >= 1_000 or facts.affected_hosts >= 10):
        return Priority.P3
    return Priority.P4


def regulatory_grade(facts: IncidentFacts) -> RegulatoryGrade:
    """The national incident grade, first match wins."""
    records = facts.records_exposed
    if records >= 100_000_000:
        return RegulatoryGrade.particularly_serious
    if records >= 10_000_000:
        return RegulatoryGrade.serious
    if records >= 1_000_000 or (facts.critical_infrastructure and facts.systems_down):
        return RegulatoryGrade.relatively_serious
    return RegulatoryGrade.general


def regulatory_deadline(facts: IncidentFacts, grade: RegulatoryGrade,
                        times: ResponseTimes) -> datetime | None:
    """When the policyholder must have reported to the regulator; None for a general incident."""
    if grade is RegulatoryGrade.general:
        return None
    window = (times.critical_infrastructure_window if facts.critical_infrastructure
              else times.regulatory_window)
    return facts.discovered_at + window


PLAYBOOK: Mapping[Category, tuple[JobType, ...]] = {
    Category.ransomware: (JobType.forensics, JobType.ransomware_negotiation, JobType.data_recovery),
    Category.data_breach: (JobType.forensics, JobType.legal_counsel),
    Category.business_email_compromise: (JobType.forensics, JobType.funds_recovery),
    Category.ddos: (JobType.ddos_mitigation,),
    Category.malware: (JobType.forensics,),
    Category.unauthorized_access: (JobType.forensics,),
    Category.other: (JobType.forensics,),
    Category.insider_misuse: (JobType.forensics, JobType.legal_counsel),
}


def playbook(facts: IncidentFacts, incident_priority: Priority) -> list[JobType]:
    """The response jobs to open, in the playbook's order."""
    jobs = list(PLAYBOOK[facts.category])
    if facts.category is Category.data_breach and facts.records_exposed > 0:
        jobs.append(JobType.notification_services)
    if incident_priority is Priority.P1:
        jobs.append(JobType.crisis_communications)
    return jobs


def acceptance_deadline(dispatched_at: datetime, incident_priority: Priority,
                        times: ResponseTimes) -> datetime:
    return dispatched_at + times.sla[incident_priority]


# --- vendor selection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VendorLoad:
    """A vendor as selection sees it."""

    vendor_id: str
    capabilities: frozenset[JobType]
    regions: frozenset[str]
    capacity: int
    open_jobs: int
    rating: float
    active: bool = True

    def serves(self, region: str) -> bool:
        return EVERY_REGION in self.regions or region in self.regions

    def can_do(self, job_type: JobType, region: str) -> bool:
        """Active, capable and serving the region, whatever its load."""
        return self.active and job_type in self.capabilities and self.serves(region)

    def has_room(self) -> bool:
        return self.open_jobs < self.capacity


def rank_vendors(vendors: Iterable[VendorLoad], job_type: JobType, region: str,
                 refused: Iterable[str] = ()) -> list[VendorLoad]:
    """The eligible vendors for a job, best first: lowest open_jobs/capacity (exact ratios, so
    1/3 ties 2/6), then highest rating, then vendor_id ascending. `refused`: vendors that
    declined this job or let it expire."""
    excluded = set(refused)
    eligible = [v for v in vendors
                if v.can_do(job_type, region) and v.has_room() and v.vendor_id not in excluded]
    # The ratios as numerators over one common denominator: exact, and integers compare several
    # times faster than Fractions (this runs for every job triage places).
    common = math.lcm(*(v.capacity for v in eligible))
    return sorted(eligible, key=lambda v: (v.open_jobs * (common // v.capacity), -v.rating,
                                           v.vendor_id))


# --- the response's outcome ----------------------------------------------------------------------


def overall_attribution(attributions: Sequence[Attribution]) -> Attribution:
    """state_actor if any job says so (it matters most: the war exclusion), else the first
    job's that is not unknown, else unknown."""
    if Attribution.state_actor in attributions:
        return Attribution.state_actor
    return next((a for a in attributions if a is not Attribution.unknown), Attribution.unknown)


def verified_outage(reports: Iterable[CompletionReport]) -> VerifiedOutage | None:
    """Earliest start to latest end over the reports that verified an outage."""
    outages = [(r.outage_started_at, r.outage_ended_at) for r in reports
               if r.outage_started_at is not None and r.outage_ended_at is not None]
    if not outages:
        return None
    return VerifiedOutage(started_at=min(start for start, _ in outages),
                          ended_at=max(end for _, end in outages))
