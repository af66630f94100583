from pathlib import Path

import pytest

from dltui import config
from dltui.config import Settings, load, parse_size
from dltui.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_file_or_env(tmp_path) -> None:
    assert load(tmp_path / "missing.toml", {}) == Settings()


def test_file_then_env_override(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[dltui]\nworkers = 8\nmax-bandwidth = "10M"\ntrust_env = false\n')
    s = load(cfg, {"DLTUI_WORKERS": "2", "DLTUI_READ_TIMEOUT": "5.5"})
    assert (s.workers, s.max_bandwidth, s.trust_env, s.read_timeout) == (2, 10 << 20, False, 5.5)


def test_top_level_keys_work_too(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("retries = 9\n")
    assert load(cfg, {}).retries == 9


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("workers = 'many'", {}, "not a valid int"),
        ("nonsense = 1", {}, "unknown setting 'nonsense'"),
        ("workers = [", {}, "not valid TOML"),
        ("", {"DLTUI_WORKERS": "0"}, "greater than zero"),
        ("", {"DLTUI_MAX_BANDWIDTH": "fast"}, "not a size"),
        ("", {"DLTUI_TRUST_ENV": "perhaps"}, "not a valid bool"),
        ("retries = -1", {}, "must not be negative"),
    ],
)
def test_bad_settings(tmp_path, text, env, needle) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load(cfg, env)


def test_explicit_missing_file_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", {}, required=True)


def test_sizes() -> None:
    assert parse_size("512K", what="x") == 512 << 10
    assert parse_size("1.5G", what="x") == int(1.5 * (1 << 30))
    assert parse_size("100MiB", what="x") == 100 << 20
    assert config.format_size(8 << 20) == "8M"


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, _default, doc in config.docs():
        assert f"`{name}`" in readme, f"README lacks the setting {name}"
        assert doc


def test_subprocess_tests_run_on_the_in_process_settings() -> None:
    """TEST_ENV is derived from TEST_SETTINGS: a `dltui` subprocess of a test reads the same
    settings its in-process neighbours use (they once differed in retries, lease TTL and the
    breaker's threshold)."""
    from tests.conftest import TEST_ENV, TEST_SETTINGS

    assert config.load(None, environ=TEST_ENV) == TEST_SETTINGS
