"""Settings: defaults < TOML file < LOOKALIKE_* environment < explicit overrides; bad values are BadOption.
The last test checks the same order through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommender.config import Settings, load_settings
from recommender.errors import BadOption


def toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert (s.db, s.model, s.workers, s.k, s.threshold, s.pooling) == (Path("lookalike.db"), None, 2, 5, 0.5, "gap")


def test_environment_values_are_converted() -> None:
    s = load_settings(
        env={
            "LOOKALIKE_DB": "~/shop/catalogue.db",
            "LOOKALIKE_MODEL": "efficientnet-lite0",
            "LOOKALIKE_WORKERS": "4",
            "LOOKALIKE_THRESHOLD": "0.7",
            "LOOKALIKE_BATCH_WAIT_MS": "2.5",
            "LOOKALIKE_WEIGHTS": "",
            "LOOKALIKE_POOLING": "flatten",
            "UNRELATED": "x",
        }
    )
    assert s.db == Path("~/shop/catalogue.db").expanduser() and not str(s.db).startswith("~")
    assert (s.model, s.workers, s.threshold, s.batch_wait_ms, s.weights, s.pooling) == (
        "efficientnet-lite0",
        4,
        0.7,
        2.5,
        None,
        "flatten",
    )
    assert isinstance(s.workers, int) and isinstance(s.threshold, float)


def test_a_toml_file_with_unknown_keys_kept_as_extra(tmp_path: Path) -> None:
    f = toml(
        tmp_path / "lookalike.toml",
        'db = "shop.db"\nmodel = "tiny"\nbatch-size = 8\nk = 7\n'
        'retrain_delay_s = 1.5\nwatch_channels = [1, 2]\n[discord]\nprefix = "!"\n',
    )
    s = load_settings(f, env={})
    assert (s.db, s.model, s.batch_size, s.k, s.retrain_delay_s) == (Path("shop.db"), "tiny", 8, 7, 1.5)
    assert s.extra == {"watch_channels": [1, 2], "discord": {"prefix": "!"}}
    # the file can also come from LOOKALIKE_CONFIG
    assert load_settings(env={"LOOKALIKE_CONFIG": str(f)}).k == 7


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    f = toml(tmp_path / "c.toml", 'k = 3\nworkers = 3\nthreshold = 0.3\nmodel = "vgg16"\n')
    env = {"LOOKALIKE_WORKERS": "6", "LOOKALIKE_THRESHOLD": "0.6", "LOOKALIKE_CONFIG": "/does/not/matter.toml"}
    s = load_settings(f, env=env, threshold=0.9, model=None)
    assert s.k == 3  # file
    assert s.workers == 6  # environment beats file
    assert s.threshold == 0.9  # override beats both
    assert s.model == "vgg16"  # an override of None leaves it alone
    assert s.replace(k=None, workers=1) == Settings(**{**s.__dict__, "workers": 1})


@pytest.mark.parametrize(
    "env, words",
    [
        ({"LOOKALIKE_WORKERS": "two"}, "'workers' has an invalid value 'two'"),
        ({"LOOKALIKE_WORKERS": "2.5"}, "'workers' has an invalid value '2.5'"),
        ({"LOOKALIKE_WORKERS": "0"}, "workers must be at least 1"),
        ({"LOOKALIKE_K": "-3"}, "k must be between 1 and 25"),
        ({"LOOKALIKE_THRESHOLD": "1.5"}, "threshold must be between 0 and 1"),
        ({"LOOKALIKE_THRESHOLD": "nan"}, "threshold must be between 0 and 1"),
        ({"LOOKALIKE_THRESHOLD": "high"}, "'threshold' has an invalid value"),
        ({"LOOKALIKE_POOLING": "max"}, "pooling must be 'gap' or 'flatten'"),
        ({"LOOKALIKE_BATCH_WAIT_MS": "inf"}, "batch_wait_ms must be a number of 0 or more"),  # a lone photo never ran
        ({"LOOKALIKE_REFRESH_CHECK_S": "nan"}, "refresh_check_s must be a number of 0 or more"),  # polling silently off
        ({"LOOKALIKE_RETRAIN_DELAY_S": "-1"}, "retrain_delay_s must be a number of 0 or more"),
        ({"LOOKALIKE_CONFIG": "/nowhere/lookalike.toml"}, "Config file /nowhere/lookalike.toml does not exist"),
    ],
)
def test_bad_values_are_bad_options(env: dict[str, str], words: str) -> None:
    with pytest.raises(BadOption) as e:
        load_settings(env=env)
    assert words in str(e.value)


def test_a_broken_toml_file_is_a_bad_option(tmp_path: Path) -> None:
    f = toml(tmp_path / "broken.toml", "k = [unclosed\n")
    with pytest.raises(BadOption, match="broken.toml cannot be read"):
        load_settings(f, env={})
    with pytest.raises(BadOption, match="'batch_size' has an invalid value"):
        load_settings(toml(tmp_path / "t.toml", 'batch_size = "lots"\n'), env={})


@pytest.mark.parametrize("name", ["LOOKALIKE_MAX_IMAGE_BYTES", "LOOKALIKE_MAX_IMAGE_PIXELS"])
def test_image_limits_must_be_positive(name: str) -> None:
    with pytest.raises(BadOption, match="at least 1"):
        load_settings(env={name: "0"})


def test_the_cli_follows_the_same_order(tmp_path: Path, monkeypatch, capsys) -> None:
    from bot.cli import main

    f = toml(tmp_path / "c.toml", f'db = "{tmp_path / "from-file.db"}"\n')
    monkeypatch.delenv("LOOKALIKE_DB", raising=False)
    monkeypatch.delenv("LOOKALIKE_CONFIG", raising=False)

    def database(*args: str) -> str:
        assert main(["stats", "--json", *args]) == 0
        return json.loads(capsys.readouterr().out)["database"]

    assert database("--config", str(f)) == str(tmp_path / "from-file.db")
    monkeypatch.setenv("LOOKALIKE_CONFIG", str(f))
    assert database() == str(tmp_path / "from-file.db")
    monkeypatch.setenv("LOOKALIKE_DB", str(tmp_path / "from-env.db"))
    assert database() == str(tmp_path / "from-env.db")
    assert database("--db", str(tmp_path / "from-flag.db")) == str(tmp_path / "from-flag.db")
    assert {p.name for p in tmp_path.glob("*.db")} == {"from-file.db", "from-env.db", "from-flag.db"}
    monkeypatch.setenv("LOOKALIKE_WORKERS", "none")
    assert main(["stats"]) == 1
    assert "lookalike: Setting 'workers' has an invalid value 'none'" in capsys.readouterr().err
