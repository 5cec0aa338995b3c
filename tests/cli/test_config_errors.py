"""Config and flag mistakes end as one ``error: ...`` line with a hint and exit 2, checked
before any long work, never a traceback (the cases measured in issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyfuse.cli import build_parser
from polyfuse.cli.serve import serve_config
from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError
from polyfuse.guard.policy import Policy
from polyfuse.serve.config import ServeConfig
from tests.conftest import SMALL_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def _config(**sections: dict[str, object]) -> dict[str, object]:
    return {**SMALL_CONFIG, **sections}


@pytest.mark.parametrize(
    ("load", "data", "key", "says"),
    [
        (Config.from_dict, _config(model={"dropout": "lots"}), "model.dropout", "number"),
        (Config.from_dict, _config(model={"dim": -4}), "model.dim", "greater than"),
        (Config.from_dict, _config(model={"dim": -5}), "model.dim", "greater than"),
        (Config.from_dict, _config(train={"epochs": "5"}), "train.epochs", "integer"),
        (Config.from_dict, _config(train={"feature_cache": "no"}), "train.feature_cache", "bool"),
        (Config.from_dict, _config(train={"precison": "bf16"}), "train.precison", "precision"),
        (ServeConfig.from_dict, {"max_items": "abc"}, "serve.max_items", "integer"),
        (ServeConfig.from_dict, {"port": "8000"}, "serve.port", "integer"),
        (ServeConfig.from_dict, {"port": 70000}, "serve.port", "less than"),
        (ServeConfig.from_dict, {"gc_freeze": "no"}, "serve.gc_freeze", "bool"),
        (ServeConfig.from_dict, {"cache": "memcached"}, "serve.cache", "redis"),
        (ServeConfig.from_dict, {"degraded": "fail"}, "serve.degraded", "refuse"),
        (ServeConfig.from_dict, {"prot": 9000}, "serve.prot", "port"),
        (Policy.from_dict, {"entities": {"US_SNN": "redact"}}, "policy.entities.US_SNN", "US_SSN"),
        (
            Policy.from_dict,
            {"entities": {"US_SSN": "mask"}},
            "policy.entities.US_SSN.action",
            "redact",
        ),
    ],
)
def test_bad_values_name_their_key(
    load: object, data: dict[str, object], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(data)  # type: ignore[operator]
    assert err.value.key == key
    assert says in str(err.value) and err.value.hint


def test_every_runtime_option_is_reachable_from_the_serve_config() -> None:
    config = ServeConfig.from_dict(
        {
            "cache": "redis",
            "redis_url": "redis://cache:6379/1",
            "breaker_failures": 3,
            "breaker_reset_s": 5,
            "degraded": "refuse",
            "encoder_timeout_s": 2.5,
            "max_batch": "auto",
            "max_wait_ms": 4,
            "queue_size": 64,
            "workers": 4,
        }
    )
    options = config.runtime_options()
    assert options["cache"] == "redis" and options["degraded"] == "refuse"
    assert options["max_batch"] == "auto" and options["workers"] == 4
    assert ServeConfig().runtime_options() == {}  # unset: the runtime's own defaults
    from polyfuse.serve.runtime.settings import BatchSettings, RuntimeConfig

    batching = {k: options.pop(k) for k in ("max_batch", "max_wait_ms")}
    runtime = RuntimeConfig.from_options(**options, batching=BatchSettings(**batching))
    assert runtime.redis_url == "redis://cache:6379/1" and runtime.breaker_failures == 3


def test_precedence_defaults_file_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 9000\nmax_items: 4\nrate_limit: 2\n")
    monkeypatch.setenv("POLYFUSE_MAX_ITEMS", "8")
    monkeypatch.setenv("POLYFUSE_GC_FREEZE", "false")
    monkeypatch.setenv("POLYFUSE_RATE_LIMIT", "3")
    args = build_parser().parse_args(["serve", "art", "--config", str(path), "--rate-limit", "5"])
    config = serve_config(args)
    assert config.port == 9000  # file over default
    assert config.max_items == 8 and config.gc_freeze is False  # env over file
    assert config.rate_limit == 5.0  # flag over env
    monkeypatch.setenv("POLYFUSE_MAX_ITEMS", "zero")
    with pytest.raises(ConfigError) as err:
        serve_config(args)
    assert err.value.key == "serve.max_items"


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from polyfuse.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
        cwd=ROOT,
    )


def _yaml(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("serve_max_items", "serve.max_items"),
        ("serve_port", "serve.port"),
        ("serve_env", "serve.max_items"),
        ("serve_policy", "policy.entities.US_SNN"),
        ("train_dropout", "model.dropout"),
        ("train_dim", "model.dim"),
        ("validate_dim", "model.dim"),
        ("predict_batch", "--batch-size"),
        ("predict_out", "--out"),
        ("search_k", "-k"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, case: str, key: str) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "a", "label": "x"}\n')
    argv: dict[str, list[str]] = {
        "serve_max_items": [
            "serve",
            "art",
            "--config",
            _yaml(tmp_path, "s.yaml", {"max_items": "abc"}),
        ],
        "serve_port": ["serve", "art", "--config", _yaml(tmp_path, "s2.yaml", {"port": "8000"})],
        "serve_env": ["serve", "art"],
        "serve_policy": [
            "serve",
            "art",
            "--policy",
            _yaml(tmp_path, "p.yaml", {"entities": {"US_SNN": "redact"}}),
        ],
        "train_dropout": [
            "train",
            _yaml(tmp_path, "c.yaml", _config(model={"dropout": "lots"})),
            "--train",
            str(manifest),
            "--out",
            str(tmp_path / "o"),
        ],
        "train_dim": [
            "train",
            _yaml(tmp_path, "c2.yaml", _config(model={"dim": -5})),
            "--train",
            str(manifest),
            "--out",
            str(tmp_path / "o"),
        ],
        "validate_dim": [
            "validate",
            str(manifest),
            "--config",
            _yaml(tmp_path, "c3.yaml", _config(model={"dim": -5})),
        ],
        "predict_batch": ["predict", "art", "--data", str(manifest), "--batch-size", "0"],
        "predict_out": ["predict", "art", "--data", str(manifest), "--out", str(tmp_path)],
        "search_k": ["search", "--db", str(tmp_path), "--text", "a dog", "-k", "0"],
    }
    env = {"POLYFUSE_MAX_ITEMS": "abc"} if case == "serve_env" else None
    done = _cli(*argv[case], env=env)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), lines
    assert "(hint: " in lines[0]


def test_python_constructors_raise_config_errors_too() -> None:
    from polyfuse.core.config import ModelConfig
    from polyfuse.serve.runtime.ray import RayConfig

    for make, key in [
        (lambda: ServeConfig(port=0), "serve.port"),
        (lambda: ModelConfig(dim=0), "model.dim"),
        (lambda: RayConfig(num_cpus=0), "ray.num_cpus"),
    ]:
        with pytest.raises(ConfigError) as err:
            make()
        assert err.value.key == key
