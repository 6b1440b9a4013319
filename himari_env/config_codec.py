"""One decoder and one encoder for HIMARI's frozen configuration dataclasses.

:func:`decode_dataclass` builds a dataclass from a JSON/YAML mapping, strictly: an unknown
key, a value of the wrong type (``true`` for a number, ``2.5`` for an integer, a non-finite
float) or an invalid value (the dataclass's own ``__post_init__`` check) raises the caller's
error class with the dotted key path (``evt.long_tail.xi``, ``ppo.net_arch_pi[1]``). Keys
left out keep their defaults. Supported field types: nested dataclasses, ``X | None``,
``tuple[T, ...]``, fixed tuples ``tuple[A, B, C]``, ``dict[...]`` (taken as is), ``bool``,
``int``, ``float``, ``str`` and ``Any``.

:func:`encode_dataclass` is the inverse: plain JSON types (tuples become lists), refusing
non-finite floats.

Used by the experiment config (:mod:`agents.config`), the RSS risk config
(:mod:`himari_env.risk.config`), the pipeline config and the labeler settings of the run
bundle.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["decode_dataclass", "encode_dataclass"]

T = TypeVar("T")


def decode_dataclass(cls: type[T], document: Any, *, path: str = "",
                     error: type[ValueError] = ValueError) -> T:
    """Build ``cls`` from ``document`` (a mapping); see the module docstring.

    Parameters
    ----------
    cls : a dataclass type.
    document : the mapping read from JSON or YAML.
    path : dotted prefix of the keys in messages (``""`` at the top level).
    error : the ValueError subclass raised (e.g. ``ConfigError``); an error of that class
        raised by ``cls`` itself passes through unchanged.
    """
    where = path or "the top level"
    if not isinstance(document, Mapping):
        raise error(f"{where} must be a mapping, got {type(document).__name__}")
    hints = typing.get_type_hints(cls)
    known = [item.name for item in dataclasses.fields(typing.cast(Any, cls))]
    unknown = [str(key) for key in document if key not in known]
    if unknown:
        prefix = f"{path}." if path else ""
        raise error(f"unknown key(s) {[prefix + key for key in unknown]}; known keys here: {known}")
    values = {key: _decode_value(hints[key], raw, f"{path}.{key}" if path else key, error)
              for key, raw in document.items()}
    try:
        return cls(**values)
    except error:
        raise
    except (ValueError, TypeError) as failure:
        raise error(f"{where}: {failure}") from None


def _decode_value(annotation: Any, value: Any, key: str, error: type[ValueError]) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None:
            if type(None) in options:
                return None
            raise error(f"{key} must not be null")
        non_null = [option for option in options if option is not type(None)]
        if len(non_null) != 1:
            raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # a bug, not bad input
        return _decode_value(non_null[0], value, key, error)
    if dataclasses.is_dataclass(annotation):
        return decode_dataclass(typing.cast(type, annotation), value, path=key, error=error)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise error(f"{key} must be a list, got {value!r} ({type(value).__name__})")
        item_types = typing.get_args(annotation)
        if len(item_types) == 2 and item_types[1] is Ellipsis:
            item_types = (item_types[0],) * len(value)
        elif len(item_types) != len(value):
            raise error(f"{key} must be a list of {len(item_types)} items, got {len(value)}")
        return tuple(_decode_value(kind, item, f"{key}[{i}]", error)
                     for i, (kind, item) in enumerate(zip(item_types, value, strict=True)))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise error(f"{key} must be a mapping, got {value!r} ({type(value).__name__})")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise error(f"{key} must be true or false, got {value!r} ({type(value).__name__})")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{key} must be an integer, got {value!r} ({type(value).__name__})")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = " (YAML reads 3e-4 as text: write 3.0e-4)" if isinstance(value, str) else ""
            raise error(f"{key} must be a number, got {value!r} ({type(value).__name__}){hint}")
        if not math.isfinite(value):
            raise error(f"{key} must be finite, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise error(f"{key} must be a string, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # a bug, not bad input


def encode_dataclass(value: Any, *, error: type[ValueError] = ValueError) -> Any:
    """Plain JSON types for a dataclass (recursively): mappings, lists, numbers, strings.

    Raises ``error`` on a non-finite float (JSON cannot hold it faithfully).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: encode_dataclass(getattr(value, item.name), error=error)
                for item in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [encode_dataclass(item, error=error) for item in value]
    if isinstance(value, dict):
        return {str(key): encode_dataclass(item, error=error) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"cannot store the non-finite value {value!r} in a config")
    return value
