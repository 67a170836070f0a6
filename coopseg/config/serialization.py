"""Configs as data: JSON-friendly dicts, what of a config defines a result (fingerprints),
dotted-path overrides typed by the schema, and reading configs of earlier versions."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Optional

from coopseg.config.errors import ConfigError
from coopseg.config.schema import (AgentConfig, CooperationConfig, DataConfig, DecoupledConfig,
                                   ExperimentConfig, ModelConfig, RunConfig, TrainConfig)


def to_dict(config: Any) -> dict:
    """A JSON-friendly dict of a config (tuples become lists)."""
    return dataclasses.asdict(config)


# The parts of an ExperimentConfig that do not define a result: a label and the run
# settings. Everything else (method, model, data, train, decoupled) does.
NOT_RESULT_DEFINING = ("name", "run")


def result_dict(config: ExperimentConfig) -> dict:
    """What defines a run's result, as a dict: the config without its name and its run
    settings, and only the fields that differ from their defaults. Leaving defaults out
    keeps the dict of an earlier run valid when coopseg gains a field whose default
    reproduces the earlier behaviour; changing a default changes it."""
    defaults = to_dict(ExperimentConfig())
    full = to_dict(config)
    for key in NOT_RESULT_DEFINING:
        full.pop(key)
    return _changed(full, defaults)


def _changed(values: dict, defaults: dict) -> dict:
    out = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            nested = _changed(value, default)
            if nested:
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


def override(config: Any, dotted: str, value: Any) -> None:
    """Set ``config.a.b = value`` from a dotted path, coerced to the field's declared type.

    Strings (``--set`` values) are parsed by the declared type (``"64,32"`` for a
    ``Tuple[int, ...]`` is ``(64, 32)``); other values must already fit it. Raises
    ConfigError naming the path when it does not exist or the value does not fit.
    """
    *parents, leaf = dotted.split(".")
    target = config
    for part in parents:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise ConfigError(f"unknown config field {dotted!r}")
        target = getattr(target, part)
    if not dataclasses.is_dataclass(target) or leaf not in {f.name for f in dataclasses.fields(target)}:
        raise ConfigError(f"unknown config field {dotted!r}")
    hint = typing.get_type_hints(type(target))[leaf]
    if dataclasses.is_dataclass(hint):
        names = ", ".join(f"{dotted}.{f.name}" for f in dataclasses.fields(hint))
        raise ConfigError(f"{dotted} is a group of fields; set one of them: {names}")
    setattr(target, leaf, coerce_to_type(dotted, hint, value))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return f"comma-separated {_type_name(args[0])}s" if args else "tuple"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def coerce_to_type(path: str, hint: Any, value: Any) -> Any:
    """``value`` as the declared type ``hint`` (bool, int, float, str, ``Optional[X]``,
    ``Tuple[X, ...]``); ConfigError naming ``path`` and the expected type otherwise."""
    def fail(err: Optional[Exception] = None):
        raise ConfigError(f"cannot set {path}={value!r}: expected {_type_name(hint)}") from err

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            fail()
        try:
            return coerce_to_type(path, inner[0], value)
        except ConfigError as err:
            fail(err)
    if origin is tuple:
        item = args[0] if args else str
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            fail()
        try:
            return tuple(coerce_to_type(path, item, v) for v in items)
        except ConfigError as err:
            fail(err)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            fail()
        if hint is int:
            if isinstance(value, bool):
                fail()
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                return int(value.strip())
            fail()
        if hint is float:
            if isinstance(value, bool):
                fail()
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
            fail()
        if hint is str:
            return value if isinstance(value, str) else fail()
    except ValueError as err:
        fail(err)
    raise ConfigError(f"{path}: cannot coerce to the declared type {hint!r}")


def upgrade_legacy_fields(data: dict) -> dict:
    """A config dict written by an earlier coopseg in today's fields (a copy).

    ``data.flip`` (one switch for both flips) became ``data.flip_left_right`` and
    ``data.flip_up_down``; ``data.color_jitter`` was a bool (True = today's "mild"); the
    run settings (``model_dir``, logging cadence, strategy, ...) were fields of ``train``;
    ``decoupled.classifier_run`` was a second name for ``train.init_encoder_from``.
    """
    data = json.loads(json.dumps(data))
    train = data.get("train")
    if isinstance(train, dict):
        run = data.setdefault("run", {})
        for name in _RUN_FIELDS:
            if name in train:
                run.setdefault(name, train.pop(name))
    decoupled = data.get("decoupled")
    if isinstance(decoupled, dict) and "classifier_run" in decoupled:
        classifier_run = decoupled.pop("classifier_run")
        if classifier_run:
            train = data.setdefault("train", {})
            if train.get("init_encoder_from") not in ("", None, classifier_run):
                raise ConfigError(
                    f"decoupled.classifier_run={classifier_run!r} and train.init_encoder_from="
                    f"{train['init_encoder_from']!r} name two different stage-1 runs")
            train["init_encoder_from"] = classifier_run
    d = data.get("data")
    if isinstance(d, dict):
        if "flip" in d:
            flip = bool(d.pop("flip"))
            d.setdefault("flip_left_right", flip)
            d.setdefault("flip_up_down", flip)
        if isinstance(d.get("color_jitter"), bool):
            d["color_jitter"] = "mild" if d["color_jitter"] else "none"
    return data


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


def from_dict(data: dict) -> ExperimentConfig:
    """Inverse of ``to_dict`` (e.g. a run's ``config.json``); lists become tuples.

    Configs of earlier coopseg versions are upgraded (``upgrade_legacy_fields``).
    """
    data = upgrade_legacy_fields(data)

    def build(cls, values: dict):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            sub = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
                   "seg": AgentConfig, "clf": AgentConfig,
                   "cooperation": CooperationConfig,
                   "decoupled": DecoupledConfig, "run": RunConfig}.get(f.name)
            if sub is not None and isinstance(value, dict):
                value = build(sub, value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)
    return build(ExperimentConfig, data)
