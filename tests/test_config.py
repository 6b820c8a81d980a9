from pathlib import Path

import pytest

from inspectd.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.station.mm_per_px == 0.05
    assert (cfg.recipe.overhang_min_mm, cfg.recipe.overhang_max_mm) == (0.45, 4.0)


def test_example_station_file_is_valid():
    cfg = load_config(REPO / "calibration" / "example-station.toml")
    assert cfg.station.name == "L1-S2"
    assert cfg.corners.n == 512


def test_unknown_key_names_file_line_and_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[station]\nname = "A"\n\n[recipe]\noverhang_minn = 0.5\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:5:" in msg and "recipe.overhang_minn" in msg and "unknown key" in msg


def test_bad_value_names_line(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[station]\nmm_per_px = -0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:2: station.mm_per_px" in str(e.value)


def test_cross_field_rule(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[recipe]\noverhang_min_mm = 5.0\noverhang_max_mm = 4.0\n")
    with pytest.raises(ConfigError, match="overhang_min_mm must be below"):
        load_config(p)


def test_unknown_table(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[stattion]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r":1: stattion: unknown key"):
        load_config(p)


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[station\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    p.write_bytes(b'[station]\nname = "L1-\xff\xfe"\n')  # not UTF-8: a ConfigError, so SIGHUP keeps the recipe
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(p)


def test_overrides_beat_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[station]\nname = 'file'\nmm_per_px = 0.1\n")
    cfg = load_config(p, {"station.name": "flag", "station.mm_per_px": None})
    assert cfg.station.name == "flag" and cfg.station.mm_per_px == 0.1
