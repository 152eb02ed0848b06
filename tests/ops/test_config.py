"""Settings: embedded defaults < TOML file < CLINICCONF_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicconf.config import ConfigError, load_settings


def test_defaults_work_with_nothing_set() -> None:
    settings = load_settings()
    assert settings.port == 8080
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert not settings.smtp_configured and not settings.vonage_configured


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "clinic.toml"
    config.write_text(
        'port = 9000\nbase_url = "https://file.example"\ntime_zone = "Europe/Paris"\n'
    )
    settings = load_settings(
        config,
        {"CLINICCONF_PORT": "9100", "CLINICCONF_BASE_URL": "https://env.example/"},
        {"port": "9200", "base_url": None},
    )
    assert settings.port == 9200  # flag
    assert settings.public_base_url == "https://env.example"  # environment, trailing / dropped
    assert settings.time_zone == "Europe/Paris"  # file


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CLINICCONF_PORT": "eighty"}, "port"),
        ({"CLINICCONF_TIME_ZONE": "Mars/Olympus"}, "time_zone"),
        ({"CLINICCONF_BASE_URL": "clinic.example"}, "base_url"),
        ({"CLINICCONF_SMTP_SECURITY": "ssl3"}, "smtp_security"),
        ({"CLINICCONF_VONAGE_API_KEY": "key"}, "vonage_api_secret"),
        ({"CLINICCONF_LOG_LEVEL": "chatty"}, "log_level"),
        ({"CLINICCONF_PHONE_REGION": "ZZ"}, "phone_region"),
        ({"CLINICCONF_JOIN_WINDOW_MINUTES": "-5"}, "join_window_minutes"),
        ({"CLINICCONF_TRUSTED_PROXIES": "127.0.0.1, proxy.clinic"}, "trusted_proxies"),
        ({"CLINICCONF_TRUSTED_PROXIES": "0.0.0.0/0"}, "trusted_proxies"),
    ],
)
def test_bad_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "clinic.toml"
    config.write_text("smtp_hots = 'mail.example'\n")
    with pytest.raises(ConfigError, match="smtp_hots"):
        load_settings(config)
