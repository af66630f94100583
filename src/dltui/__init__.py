"""dltui: a keyboard-driven terminal download manager with a crash-safe SQLite ledger."""

__version__ = "0.1.0"
__all__ = ["__version__"]
