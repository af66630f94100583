"""The settings every test runs with, in process and as DLTUI_* variables for subprocesses."""

from __future__ import annotations

import dataclasses

from dltui.config import Settings

#: Fast, deterministic settings for tests: no proxies from the environment, short timeouts.
TEST_SETTINGS = Settings(
    trust_env=False,
    read_timeout=2.0,
    connect_timeout=2.0,
    backoff_initial=0.05,
    backoff_max=0.2,
    retry_after_max=1.5,
    retries=4,
    checkpoint_interval=0.2,
    control_poll=0.05,
    lease_ttl=10.0,
    min_free=0,
    breaker_threshold=50,
    netrc=False,  # never the machine's own ~/.netrc
)

def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the DLTUI_* variables a `dltui` subprocess reads: every value that
    differs from the default, so in-process and subprocess tests run on the same settings."""
    default = Settings()
    out = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value != getattr(default, f.name):
            out[f"DLTUI_{f.name.upper()}"] = ("1" if value else "0") if isinstance(value, bool) \
                else str(value)
    return out


#: The same settings as DLTUI_* variables, for `dltui` subprocesses (one source: above).
TEST_ENV = settings_env(TEST_SETTINGS)
