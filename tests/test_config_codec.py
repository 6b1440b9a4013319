"""The one decoder of HIMARI's frozen config dataclasses: strict, with dotted key paths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from himari_env.config_codec import decode_dataclass, encode_dataclass


class MyError(ValueError):
    pass


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    window: int = 24

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    widths: tuple[int, ...] = (1, 2)
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    extra: dict[str, Any] = field(default_factory=dict)


def test_a_document_round_trips_and_missing_keys_keep_their_defaults():
    value = Outer(name="y", flag=True, inner=Inner(0.5, 3), maybe=Inner(), widths=(4,), extra={"a": [1]})
    document = encode_dataclass(value)
    assert document["widths"] == [4] and document["split"] == [0.6, 0.2, 0.2]
    assert decode_dataclass(Outer, document) == value
    assert decode_dataclass(Outer, {"inner": {"window": 5}}) == Outer(inner=Inner(window=5))


@pytest.mark.parametrize(("document", "message"), [
    ({"inner": {"windw": 3}}, r"unknown key\(s\) \['inner\.windw'\]; known keys here: \['rate', 'window'\]"),
    ({"inner": {"window": 2.5}}, r"inner\.window must be an integer, got 2\.5"),
    ({"flag": 1}, r"flag must be true or false"),
    ({"inner": {"rate": "3e-4"}}, r"inner\.rate must be a number.*write 3\.0e-4"),
    ({"inner": {"rate": math.inf}}, r"inner\.rate must be finite"),
    ({"widths": [1, "2"]}, r"widths\[1\] must be an integer"),
    ({"split": [0.5, 0.5]}, r"split must be a list of 3 items, got 2"),
    ({"inner": {"window": 0}}, r"inner: window must be >= 1, got 0"),
    ({"name": None}, r"name must be a string"),
])
def test_bad_documents_name_the_dotted_key_in_the_callers_error_class(document, message):
    with pytest.raises(MyError, match=message):
        decode_dataclass(Outer, document, error=MyError)


def test_non_finite_values_are_not_encoded():
    with pytest.raises(MyError, match="non-finite"):
        encode_dataclass(Inner(rate=math.nan), error=MyError)
