import re
from pathlib import Path

import pytest

from arena.config import SETTINGS, SettingsError, load_settings, settings_table


def test_every_setting_is_documented():
    for s in SETTINGS:
        assert len(s.help) > 20, f"setting {s.name} needs a real help text"
        assert isinstance(s.default, s.type), f"default of {s.name} is not a {s.type}"
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


SETTINGS_PAGE = Path(__file__).parent.parent / "docs" / "settings.md"
# A row of the settings page: | `name` | `ARENA_NAME` | `default` | meaning |
SETTINGS_ROW = re.compile(
    r"^\|\s*`([a-z_0-9]+)`\s*\|\s*`(ARENA_[A-Z_0-9]+)`\s*\|\s*`([^`]*)`\s*\|(.*)\|\s*$"
)


def settings_row(name: str, env_var: str, default: str, help_text: str) -> str:
    """The page's row for one setting (what to paste when the check below fails)."""
    return f"| `{name}` | `{env_var}` | `{default}` | {help_text} |"


def documented_settings(text: str) -> dict[str, tuple[str, str, str]]:
    """name -> (env var, default, meaning) for every row of the settings page's table."""
    rows = [SETTINGS_ROW.match(line) for line in text.splitlines()]
    found = [m.groups() for m in rows if m]
    names = [row[0] for row in found]
    assert len(names) == len(set(names)), "a setting is listed twice on docs/settings.md"
    return {name: (env, default, meaning.strip()) for name, env, default, meaning in found}


def test_every_setting_is_on_the_settings_page_and_nothing_else():
    """The page lists exactly arena/config.py's settings, each with its variable, default
    and help text (the help lives in config.py; the page repeats it for readers)."""
    documented = documented_settings(SETTINGS_PAGE.read_text(encoding="utf-8"))
    table = settings_table()
    actual = {name: (env, default, help_text) for name, env, default, help_text in table}
    missing = sorted(set(actual) - set(documented))
    assert not missing, f"docs/settings.md does not document {missing}"
    unknown = sorted(set(documented) - set(actual))
    assert not unknown, f"docs/settings.md documents settings that do not exist: {unknown}"
    wrong = [settings_row(*row) for row in table if documented[row[0]] != actual[row[0]]]
    assert not wrong, "docs/settings.md disagrees with arena/config.py; the rows should be:\n" + (
        "\n".join(wrong)
    )


def test_the_settings_page_check_catches_a_missing_made_up_or_changed_row():
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    rows = documented_settings(text)
    assert set(rows) == {s.name for s in SETTINGS}
    dropped = "\n".join(line for line in text.splitlines() if "`ARENA_PORT`" not in line)
    assert "port" not in documented_settings(dropped)
    made_up = text + settings_row("no_such", "ARENA_NO_SUCH", "1", "made up") + "\n"
    assert "no_such" in documented_settings(made_up)
    changed = text.replace("| `7860` |", "| `7861` |")
    assert documented_settings(changed)["port"][1] == "7861"


def test_resolution_order_override_env_default():
    assert load_settings(env={}).port == 7860
    assert load_settings(env={"ARENA_PORT": "9000"}).port == 9000
    assert load_settings(env={"ARENA_PORT": "9000"}, port=9100).port == 9100
    assert load_settings(env={"ARENA_REVEAL_MODELS": "off"}).reveal_models is False


def test_bad_values_name_the_variable_and_the_expected_type():
    with pytest.raises(SettingsError, match=r"ARENA_PORT='abc'.*int"):
        load_settings(env={"ARENA_PORT": "abc"})
    with pytest.raises(SettingsError, match="boolean"):
        load_settings(env={"ARENA_REVEAL_MODELS": "maybe"})
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(env={}, no_such_setting=1)


def test_database_url_defaults_to_the_workspace(tmp_path):
    s = load_settings(env={}, workspace=str(tmp_path))
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/arena.db"
    assert load_settings(env={"ARENA_DB_URL": "sqlite:///x.db"}).database_url == "sqlite:///x.db"
