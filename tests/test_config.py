"""Settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import load_config, public_url_from_env


@pytest.mark.parametrize(
    ("env", "multi_user"),
    [
        ({}, False),
        ({"GRADIO_SERVER_NAME": "127.0.0.1"}, False),
        ({"GRADIO_SERVER_NAME": "0.0.0.0"}, True),  # a public deployment keeps users apart
        ({"GRADIO_SERVER_NAME": "0.0.0.0", "MULTI_USER": "0"}, False),
        ({"SPACE_ID": "me/studio"}, True),
        ({"MULTI_USER": "true"}, True),
    ],
)
def test_users_are_kept_apart_whenever_the_app_is_shared(env, multi_user):
    assert load_config({"DATA_DIR": "/tmp/studio-test", **env}).multi_user is multi_user


def test_data_dir_and_public_url_come_from_the_environment(tmp_path: Path):
    config = load_config({"DATA_DIR": str(tmp_path), "PUBLIC_URL": "https://studio.example/"})
    assert config.data_dir == tmp_path
    assert config.outputs_dir == tmp_path / "outputs"
    assert config.public_url == "https://studio.example"
    assert public_url_from_env({"SPACE_HOST": "me-studio.hf.space,studio.example"}) == (
        "https://me-studio.hf.space"
    )
    assert public_url_from_env({}) is None


def test_keys_never_show_in_the_config_repr(tmp_path: Path):
    config = load_config({"DATA_DIR": str(tmp_path), "DEFAPI_API_KEY": "dk-abcdef0123456789"})
    assert "dk-abcdef0123456789" not in repr(config)
