"""Which loss sections a vendor's completion report may carry, by the job's type
(docs/approvals.md): pure validation, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.triage.schemas import CompletionReportIn
from shared.events import VENDOR_VERIFIABLE_SECTIONS, JobType, Section
from shared.problems import Unprocessable


def report(*sections: Section) -> CompletionReportIn:
    return CompletionReportIn.model_validate({
        "root_cause": "x", "attack_vector": "other", "attribution": "criminal",
        "contained_at": datetime.now(UTC).isoformat(),
        "verified_losses": [{"section": section.value, "amount": "1", "description": "invoice"}
                            for section in sections]})


def test_every_job_type_has_its_row() -> None:
    assert set(VENDOR_VERIFIABLE_SECTIONS) == set(JobType)
    assert not any(Section.business_interruption in row for row in VENDOR_VERIFIABLE_SECTIONS.values())


RESPONSE_JOBS = [job_type for job_type in JobType if VENDOR_VERIFIABLE_SECTIONS[job_type]]


@pytest.mark.parametrize("job_type", RESPONSE_JOBS)
@pytest.mark.parametrize("section", list(Section))
def test_a_job_verifies_only_the_sections_of_its_type(job_type: JobType, section: Section) -> None:
    allowed = next(iter(VENDOR_VERIFIABLE_SECTIONS[job_type]))
    candidate = report(allowed, section)
    if section in VENDOR_VERIFIABLE_SECTIONS[job_type]:
        candidate.check_sections(job_type)
    else:
        with pytest.raises(Unprocessable) as refused:
            candidate.check_sections(job_type)
        assert refused.value.field == "verified_losses.1.section"


def test_a_report_without_losses_fits_every_job() -> None:
    for job_type in JobType:
        report().check_sections(job_type)
