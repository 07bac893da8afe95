"""Config parsing: the three files, their errors, env overrides and relative paths."""

from __future__ import annotations

import os

import pytest

from cortex.core.config import (
    parse_gateway_config,
    parse_models,
    parse_neuron_config,
    resolve_path,
)
from cortex.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GATEWAY = """
[gateway]
listen = "127.0.0.1:9000"
api_keys = ["k1"]
[eviction]
strategy = "priority"
[[neurons]]
name = "beast"
endpoint = "http://beast.internal:13131"
"""


def test_gateway_config_parses_with_defaults_for_what_is_left_out() -> None:
    """Keys given are read and every other key has the SPEC default."""
    config, warnings = parse_gateway_config(GATEWAY)
    assert warnings == []
    assert config.gateway.listen == "127.0.0.1:9000"
    assert config.gateway.api_keys == ("k1",)
    assert config.gateway.metrics_listen == "0.0.0.0:31314"
    assert config.gateway.max_queue_per_model == 64
    assert config.eviction.strategy == "priority"
    assert config.eviction.defrag_after_cycles == 50
    assert config.neurons[0].name == "beast"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[gateway]\nlistn = 1\n", "unknown key(s) ['listn'] @ $.gateway"),
        ("[gatway]\n", "unknown key(s) ['gatway']"),
        (
            '[gateway]\npoll_interval_s = "5"\n',
            "expected float, got str '5' @ $.gateway.poll_interval_s",
        ),
        ("[gateway]\nmax_queue_per_model = 1.5\n", "expected int"),
        ("[gateway]\ntrust_neuron_urls = 1\n", "expected bool"),
        ("[gateway]\napi_keys = [1]\n", "expected str, got int 1 @ $.gateway.api_keys[0]"),
        ('[[neurons]]\nname = "a"\n', "required key missing @ $.neurons[0].endpoint"),
        ('[eviction]\nstrategy = "random"\n', "strategy must be one of ['lru', 'priority']"),
        ("[gateway\n", "invalid TOML"),
        (
            "[[neurons]]\nname='a'\nendpoint='http://x'\n[[neurons]]\nname='a'\nendpoint='http://y'\n",
            "duplicate neuron name(s) ['a']",
        ),
    ],
)
def test_gateway_config_errors_name_the_key_and_the_reason(text: str, fragment: str) -> None:
    """Each kind of mistake is reported with the file, the key path and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        parse_gateway_config(text, "site/cortex.toml")
    assert caught.value.source == "site/cortex.toml"
    assert any(fragment in line for line in caught.value.lines), caught.value.lines


def test_env_overrides_known_scalars_and_warns_about_the_rest() -> None:
    """CORTEX_<SECTION>__<KEY> overrides a scalar, parsed as TOML; unknown names warn."""
    env = {
        "CORTEX_GATEWAY__POLL_INTERVAL_S": "2",
        "CORTEX_GATEWAY__NEURON_TOKEN": "s3cret",  # a bare word is a string
        "CORTEX_EVICTION__IDLE_UNLOAD_S": "600",
        "CORTEX_GATEWAY__NOPE": "1",
        "CORTEX_GATEWAY__API_KEYS": '["x"]',  # not a scalar key: warned, not applied
        "HOME": "/root",
    }
    config, warnings = parse_gateway_config(GATEWAY, env=env)
    assert config.gateway.poll_interval_s == 2
    assert config.gateway.neuron_token == "s3cret"
    assert config.eviction.idle_unload_s == 600
    assert config.gateway.api_keys == ("k1",)
    assert sorted(warnings) == [
        "CORTEX_GATEWAY__API_KEYS names no known setting; ignored",
        "CORTEX_GATEWAY__NOPE names no known setting; ignored",
    ]


def test_env_override_with_a_bad_value_is_a_config_error() -> None:
    """An override is checked like the file: a wrong type names the key."""
    with pytest.raises(ConfigError, match="max_queue_per_model"):
        parse_gateway_config(GATEWAY, env={"CORTEX_GATEWAY__MAX_QUEUE_PER_MODEL": "many"})


def test_neuron_config_parses_simulated_devices_and_env() -> None:
    """neuron.toml reads simulated devices; NEURON__<KEY> overrides a scalar."""
    text = 'port = 1\n[[simulate_devices]]\nname = "sim-24g"\nvram_total_mb = 24000\n'
    config, warnings = parse_neuron_config(text, env={"NEURON__TOKEN": "t", "NEURON__X": "1"})
    assert config.port == 1 and config.token == "t"
    assert config.simulate_devices[0].vram_total_mb == 24000
    assert warnings == ["NEURON__X names no known setting; ignored"]


def test_neuron_config_rejects_unknown_keys() -> None:
    """A typo in neuron.toml is an error naming the key."""
    with pytest.raises(ConfigError, match="models_dri"):
        parse_neuron_config('models_dri = "x"\n')


def test_models_reject_duplicate_names_across_ids_and_aliases() -> None:
    """An alias may not shadow another model's id or alias."""
    text = '[[models]]\nid = "a"\n[[models]]\nid = "b"\naliases = ["a"]\n'
    with pytest.raises(ConfigError, match=r"name 'a' already used by 'a' @ \$\.models\[1\]"):
        parse_models(text)


def test_models_options_must_be_a_table() -> None:
    """options is passed to the neuron as a table and nothing else."""
    with pytest.raises(ConfigError, match="options"):
        parse_models('[[models]]\nid = "a"\noptions = 3\n')


def test_relative_paths_resolve_against_the_config_files_folder() -> None:
    """A relative path in a file is relative to that file, not to the working directory."""
    assert resolve_path("models.toml", "/etc/cortex/cortex.toml") == "/etc/cortex/models.toml"
    assert resolve_path("../m", "/etc/cortex/neuron.toml") == "/etc/m"
    assert resolve_path("/abs/m", "/etc/cortex/neuron.toml") == "/abs/m"


@pytest.mark.parametrize(
    "name", ["models.example.toml", "cortex.example.toml", "neuron.example.toml"]
)
def test_example_files_parse(name: str) -> None:
    """The documented example files are valid configs (so the docs cannot drift)."""
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        text = f.read()
    if name.startswith("models"):
        models = parse_models(text, name)
        assert models.models, "the example documents at least one model"
    elif name.startswith("cortex"):
        config, warnings = parse_gateway_config(text, name)
        assert config.neurons and warnings == []
    else:
        parse_neuron_config(text, name)


def test_models_example_documents_every_field() -> None:
    """Every ModelConfig field appears in models.example.toml with a comment."""
    import attrs

    from cortex.core.config import ModelConfig

    with open(os.path.join(REPO, "models.example.toml"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    for field in attrs.fields(ModelConfig):
        documented = [ln for ln in lines if ln.lstrip("# ").startswith(f"{field.name} =")]
        assert documented, f"{field.name} is not in models.example.toml"
        assert any("#" in ln.split("=", 1)[1] for ln in documented), f"{field.name} has no comment"
