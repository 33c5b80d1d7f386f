import pytest

from arena.config import SETTINGS, SettingsError, load_settings


def test_every_setting_is_documented():
    for s in SETTINGS:
        assert len(s.help) > 20, f"setting {s.name} needs a real help text"
        assert isinstance(s.default, s.type), f"default of {s.name} is not a {s.type}"
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


def test_every_setting_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [s.env_var for s in SETTINGS if s.env_var not in readme]
    assert not missing, f"README does not document {missing}"


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
