import pytest

from ramparts.config import load_config
from ramparts.errors import ConfigError


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config(env={})
    assert c.parsers == {} and c.hash_key is None


def test_unknown_key_names_the_closest_known_one(tmp_path):
    p = tmp_path / "ramparts.yaml"
    p.write_text("parsrs: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'parsrs'; did you mean 'parsers'"):
        load_config(p, env={})


def test_parser_options_are_validated_by_the_parser(tmp_path):
    p = tmp_path / "ramparts.yaml"
    p.write_text("parsers:\n  nginx_combined:\n    principal_feld: remote_user\n")
    with pytest.raises(ConfigError, match="parsers.nginx_combined.principal_feld'; did you mean 'principal_field'"):
        load_config(p, env={})
    p.write_text("parsers:\n  ngnix_combined: {}\n")
    with pytest.raises(ConfigError, match="did you mean 'nginx_combined'"):
        load_config(p, env={})


def test_environment_overrides_any_key(tmp_path):
    p = tmp_path / "ramparts.yaml"
    p.write_text("parsers:\n  nginx_combined:\n    principal_is_secret: false\n")
    c = load_config(p, env={"RAMPARTS_PARSERS__NGINX_COMBINED__PRINCIPAL_IS_SECRET": "true",
                            "RAMPARTS_HASH_KEY": "s3cret", "RAMPARTS_WEBHOOK_SECRET": "ignored"})
    assert c.parsers["nginx_combined"]["principal_is_secret"] is True
    assert c.resolved_hash_key() == "s3cret"
    # The secret is masked whenever the config is printed or dumped.
    assert "s3cret" not in repr(c) and "s3cret" not in str(c.model_dump())
    with pytest.raises(ConfigError, match="did you mean 'parsers'"):
        load_config(p, env={"RAMPARTS_PARSER__X": "1"})


def test_unreadable_or_invalid_files_say_so(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("parsers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})


def test_the_readme_config_example_is_valid(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "ramparts.yaml"
    path.write_text(example)
    config = load_config(path, env={})
    assert config.parser_options("envoy_json").fields == {"api_key": ["x-api-key"]}
    assert config.parser_options("nvidia_smi").timezone == "Europe/Berlin"


def test_text_keys_from_the_environment_are_taken_as_written():
    # Read as YAML, a key of digits would be a number and fail; a group "007" would lose its zeros.
    config = load_config(None, env={"RAMPARTS_HASH_KEY": "123456789012", "RAMPARTS_KAFKA__GROUP": "007",
                                    "RAMPARTS_KAFKA__PARTITIONS": "8"})
    assert config.resolved_hash_key() == "123456789012"
    assert config.kafka.group == "007"
    assert config.kafka.partitions == 8


def test_detector_options_from_a_shell_exportable_variable():
    # `export RAMPARTS_DETECTORS__ACCESS.STUFFING__...` is not valid shell; the dot may be written as _.
    config = load_config(None, env={"RAMPARTS_DETECTORS__ACCESS_STUFFING__MIN_COUNT": "7"})
    assert config.detector_options("access.stuffing").min_count == 7
