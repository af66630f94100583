"""`dltui` as a subprocess for the fleet tests: the test settings, a home, and no ledger from
the calling environment unless the test names one."""

from __future__ import annotations

from tests.support.cli import dltui

__all__ = ["dltui"]
