"""Config is a value: environment defaults, set_config, scoped overrides, validation."""

from __future__ import annotations

import asyncio
import threading

import pytest

import pairio as pa
from pairio.config import Config


def test_defaults_match_what_pairio_users_know():
    cfg = Config()
    assert (cfg.collection, cfg.database_path, cfg.get_from, cfg.set_to) == ("default", "~/.pairio", "local", "local")
    assert cfg.url is None and cfg.channel is None and cfg.password is None


def test_environment_variables_set_the_defaults():
    env = {"PAIRIO_URL": "http://127.0.0.1:9/", "PAIRIO_CHANNEL": "lab", "PAIRIO_PASSWORD": "pw",
           "PAIRIO_COLLECTION": "spikes", "PAIRIO_DB_PATH": "/tmp/x", "PAIRIO_VERBOSE": "true",
           "PAIRIO_GET_FROM": "remote", "PAIRIO_SET_TO": "local_and_remote"}
    cfg = Config.from_env(env)
    assert cfg.url == "http://127.0.0.1:9"  # trailing slash dropped
    assert (cfg.channel, cfg.password, cfg.collection, cfg.database_path) == ("lab", "pw", "spikes", "/tmp/x")
    assert cfg.verbose is True and cfg.get_from == "remote" and cfg.set_to == "local_and_remote"


def test_invalid_choice_raises_at_once_with_the_allowed_choices():
    with pytest.raises(pa.ConfigurationError, match="get_from.*'everywhere'.*local, remote, local_then_remote, remote_then_local"):
        pa.set_config(get_from="everywhere")
    with pytest.raises(pa.ConfigurationError, match="set_to.*local_and_remote"):
        Config(set_to="remote_then_local")
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_VERBOSE"):
        Config.from_env({"PAIRIO_VERBOSE": "maybe"})


def test_unknown_field_is_rejected_naming_it():
    with pytest.raises(pa.ConfigurationError, match="colection"):
        pa.set_config(colection="x")
    with pytest.raises(pa.ConfigurationError, match="colection"):
        with pa.config(colection="x"):
            pass


def test_password_never_appears_in_repr_or_masked_dict():
    cfg = Config(password="hunter2-secret")
    assert "hunter2-secret" not in repr(cfg) and "***" in repr(cfg)
    assert cfg.masked()["password"] == "***"


def test_set_config_changes_the_default_and_returns_it():
    new = pa.set_config(collection="spikes")
    assert new.collection == "spikes" == pa.get_config().collection


def test_with_config_overrides_for_the_block_only():
    before = pa.get_config()
    with pa.config(collection="a") as cfg:
        assert cfg.collection == "a" == pa.get_config().collection
        with pa.config(verbose=True):
            assert pa.get_config().collection == "a" and pa.get_config().verbose
        assert not pa.get_config().verbose
    assert pa.get_config() == before


def test_set_config_inside_a_block_keeps_the_block_overrides():
    with pa.config(collection="a"):
        pa.set_config(verbose=True)
        assert pa.get_config().collection == "a" and pa.get_config().verbose


def test_overrides_are_local_to_a_thread():
    seen = {}

    def other():
        seen["collection"] = pa.get_config().collection

    with pa.config(collection="mine"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["collection"] == "default"


def test_overrides_are_local_to_an_asyncio_task():
    async def task(name):
        with pa.config(collection=name):
            await asyncio.sleep(0.01)
            return pa.get_config().collection

    async def main():
        return await asyncio.gather(task("a"), task("b"))

    assert asyncio.run(main()) == ["a", "b"]


def test_every_call_takes_config_fields_as_keyword_overrides(tmp_path):
    pa.set("k", "v", database_path=str(tmp_path / "other"))
    assert pa.get("k") is None
    assert pa.get("k", database_path=str(tmp_path / "other")) == "v"


def test_content_path_defaults_inside_the_database_path():
    assert Config(database_path="/data/p").content_path.as_posix() == "/data/p/content"
    assert Config(content_dir="/c").content_path.as_posix() == "/c"


def test_an_invalid_environment_variable_is_named_in_the_error():
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_GET_FROM: .*'nowhere'; allowed: local, remote"):
        Config.from_env({"PAIRIO_GET_FROM": "nowhere"})
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_COLLECTION: .*81 characters long; the limit is 80"):
        Config.from_env({"PAIRIO_COLLECTION": "c" * 81})


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0, -1, True])
def test_timeout_must_be_a_positive_finite_number(timeout):
    with pytest.raises(pa.ConfigurationError, match="timeout"):
        Config(timeout=timeout)


def test_a_password_written_into_the_url_is_masked_too():
    cfg = Config(url="http://lab:hunter2-secret@127.0.0.1:8080/")
    assert "hunter2-secret" not in repr(cfg) and "hunter2-secret" not in str(cfg.masked())
    assert cfg.masked()["url"] == "http://lab:***@127.0.0.1:8080"
    assert cfg.url == "http://lab:hunter2-secret@127.0.0.1:8080"  # the real value is kept for requests
