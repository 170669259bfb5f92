import pytest

from manga_pipeline.config import ConfigError, load_config


def test_defaults_file_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[detect]\nrtl = false\n[identify]\nthreshold = 0.5\n")
    cfg = load_config(f, {"identify.threshold": "0.7"})
    assert cfg.detect.rtl is False and cfg.identify.threshold == 0.7
    assert load_config().detect.rtl is True


def test_unknown_key_names_the_closest_one(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'identify.threshold'"):
        load_config(None, {"identify.treshold": 1})
    f = tmp_path / "bad.toml"
    f.write_text("[detect]\nrtl = 'sideways'\n")
    with pytest.raises(ConfigError, match="true or false"):
        load_config(f)
