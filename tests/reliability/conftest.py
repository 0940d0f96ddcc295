"""Reliability tests run payout and notify in-process on PostgreSQL and the session's Tansu, with
the payout and notify suites' fixtures (sandbox provider, SMTP sink, databases)."""

from tests.notify.conftest import mailbox, make_notify, notify_db, receivers  # noqa: F401
from tests.payout.conftest import make_payout, payout_db, sandbox  # noqa: F401
