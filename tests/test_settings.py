"""Settings from TRUSTMESS_* variables and flags: defaults, parsing, one-line errors, secrets."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from trustmess.__main__ import main
from trustmess.settings import (
    Settings,
    SettingsError,
    describe_default,
    env_name,
    flag_name,
    resolve_jwt_secret,
    setting_fields,
)


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.database_url is None and settings.embedded
    assert settings.data_dir == Path(".trustmess")


def test_environment_and_overrides() -> None:
    env = {"TRUSTMESS_PORT": "9001", "TRUSTMESS_WS_COMPRESSION": "yes"}
    settings = Settings.from_env(env, overrides={"host": "0.0.0.0"})
    assert (settings.port, settings.ws_compression, settings.host) == (9001, True, "0.0.0.0")
    assert Settings.from_env(env, overrides={"port": "9002"}).port == 9002


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TRUSTMESS_PORT", "eighty", "TRUSTMESS_PORT: must be an integer"),
        ("TRUSTMESS_PORT", "70000", "TRUSTMESS_PORT: must be between"),
        ("TRUSTMESS_DATABASE_URL", "mysql://x/y", "TRUSTMESS_DATABASE_URL: must be a postgresql"),
        ("TRUSTMESS_DATABASE_URL", "postgresql:///db", "TRUSTMESS_DATABASE_URL: must name a host"),
        ("TRUSTMESS_WS_COMPRESSION", "maybe", "TRUSTMESS_WS_COMPRESSION: must be true or false"),
        ("TRUSTMESS_BROKER", "kafka://x", "TRUSTMESS_BROKER: must be 'local' or a redis"),
        ("TRUSTMESS_LOG_LEVEL", "LOUD", "TRUSTMESS_LOG_LEVEL: must be DEBUG"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(expected)


def test_cli_reports_bad_value_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRUSTMESS_PORT", "abc")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "trustmess: TRUSTMESS_PORT: must be an integer, got 'abc'"


def test_cli_flag_is_validated_like_the_variable(capsys) -> None:
    """...and the error names the flag, since that is what the operator typed."""
    assert main(["migrate", "--database-url", "nonsense"]) == 2
    assert capsys.readouterr().err == "trustmess: --database-url: must be a postgresql:// URL\n"
    assert main(["serve", "--port", "80000"]) == 2
    assert capsys.readouterr().err == "trustmess: --port: must be between 0 and 65535, got 80000\n"


def test_pool_bounds_are_checked_together(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRUSTMESS_POOL_MAX", "5")
    assert main(["serve", "--pool-min", "8"]) == 2
    assert capsys.readouterr().err == (
        "trustmess: --pool-min: pool_min (8) must not exceed pool_max (5)\n"
    )


def test_help_shows_every_setting_with_its_values_default_and_variable(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in setting_fields():
        expected = (
            f"{flag_name(f.name)} VALUE {f.metadata['doc']} "
            f"[{f.metadata['values']}; default {describe_default(f.default)}] ${env_name(f.name)}"
        )
        assert expected in text, expected
    assert "--port VALUE TCP port to listen on [integer 0-65535; default 8080]" in text
    assert "[number 0.001-1000000; default 0.5]" in text


def readme_configuration_variables() -> set[str]:
    """The variables named in the first column of the README's configuration table."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `TRUSTMESS_"):
            names |= set(re.findall(r"TRUSTMESS_[A-Z0-9_]+", line.split("|")[1]))
    return names


def test_readme_configuration_table_lists_exactly_the_settings() -> None:
    documented = readme_configuration_variables()
    settings = {env_name(f.name) for f in setting_fields()}
    assert sorted(settings - documented) == [], "settings missing from README.md's table"
    assert sorted(documented - settings) == [], "README.md's table names unknown settings"


def test_embedded_secret_generated_once_with_private_mode(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = resolve_jwt_secret(settings).jwt_secret
    second = resolve_jwt_secret(settings).jwt_secret
    assert first and first == second and len(first) >= 32
    mode = stat.S_IMODE((tmp_path / "data" / "jwt_secret").stat().st_mode)
    assert mode == 0o600


def test_real_database_requires_a_secret(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql://db.example/x", data_dir=tmp_path)
    with pytest.raises(SettingsError, match="TRUSTMESS_JWT_SECRET: required"):
        resolve_jwt_secret(settings)


def test_short_secret_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        resolve_jwt_secret(Settings(jwt_secret="short", data_dir=tmp_path))


def test_cli_refuses_real_database_without_secret(monkeypatch, capsys) -> None:
    monkeypatch.delenv("TRUSTMESS_JWT_SECRET", raising=False)
    assert main(["serve", "--database-url", "postgresql://127.0.0.1/x"]) == 2
    assert "TRUSTMESS_JWT_SECRET: required" in capsys.readouterr().err


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `TRUSTMESS_")]
    documented = {name for row in rows for name in re.findall(r"`(TRUSTMESS_[A-Z0-9_]+)`", row)}
    missing = [env_name(f.name) for f in setting_fields() if env_name(f.name) not in documented]
    assert not missing, f"settings missing from README.md's table: {missing}"
