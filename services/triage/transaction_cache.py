"""What triage has locked and staged in one transaction (`shared.db.transaction_state`).

The consumer applies a whole fetch of reported incidents in one transaction. Every incident
locks the vendors that may take its jobs; those locks are held until the commit, so the
second incident that needs the same vendors finds them here, as the first left them, instead
of locking and reading them again. Every change this service makes to a vendor's open jobs
goes through `dispatch.take_slots` and `dispatch.release_slot`, which keep these loads current. The locks
hold only the rows they returned: a vendor registered or made eligible by another transaction
meanwhile is seen from the next fetch on (a fetch takes milliseconds); a job left unassigned
for want of it is offered again by the timer pass. Capacity never depends on the cache: every
slot is taken by a conditional UPDATE. (The fetch's incidents and policies are in
`shared.db.TransactionRows`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncSession

from services.triage.rules import VendorLoad
from shared.db import transaction_state

LockedPool = tuple[tuple[str, ...], tuple[str, ...], str]
"""(job types, named vendors, region): what one `dispatch.lock_vendors` asked for."""


@dataclass
class TransactionCache:
    vendors: dict[str, VendorLoad] = field(default_factory=dict)
    """Every vendor this transaction has locked, as it stands now."""
    pools: dict[LockedPool, tuple[str, ...]] = field(default_factory=dict)
    """Which vendors each lock returned."""

    @classmethod
    def of(cls, session: AsyncSession) -> TransactionCache:
        return transaction_state(session, cls)

    def slots_changed(self, open_jobs: dict[str, int]) -> None:
        """Vendors' open jobs as an UPDATE of this transaction returned them."""
        for vendor_id, count in open_jobs.items():
            known = self.vendors.get(vendor_id)
            if known is not None:
                self.vendors[vendor_id] = replace(known, open_jobs=count)
