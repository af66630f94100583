"""Holds a ledger's write lock from another process: ``python -m tests.tui.lock_holder DB SECS``.

Prints ``locked`` once SQLite granted the lock, then holds it for SECS seconds.
"""

import sqlite3
import sys
import time

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
