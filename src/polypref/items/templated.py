"""Items made from a spec, as Fair-PP made its questions: topics x social groups x value dimensions x question
templates, each item offering two options at opposite poles of one value dimension.

A spec (YAML; ``data/item_specs/NAME.yaml`` by name, or a path) names topics by the survey attitude they ask
about, so each option carries a known stance on that attitude's scale: the simulated judge can judge the items
and its ground truth is known, and a population spec can check that every topic and stance exists.
Both orders of the two options are judged by every build, so Fair-PP's confound of position and value (its
option A was always the same pole) cannot arise. The wording is the spec's own.

    topics:      {natheal: "health care", ...}            # attitude key -> words for {topic}
    groups:      ["older people", ...]                      # words for {group}
    dimensions:                                             # two poles each: the stance an option takes, and
      collective_vs_individual:                             # the value argument it gives for it
        poles:
          - {stance: too little, argument: "..."}
          - {stance: too much, argument: "..."}
    templates:   ["Should the government spend more or less on {topic} for {group}?"]
    options:     {too little: "Spend more on {topic} for {group}: {argument}", too much: "..."}
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from polypref import assets, files
from polypref.errors import ConfigError, validation_problem
from polypref.items.texts import Text  # visible, and storable as UTF-8
from polypref.population.spec import SurveySpec
from polypref.records import Item, Response
from polypref.strict import StrictModel

QUESTION_FIELDS = frozenset({"topic", "group"})
OPTION_FIELDS = frozenset({"topic", "group", "argument"})


def _placeholders(template: str, allowed: frozenset[str], required: frozenset[str]) -> str:
    """``template`` if its {fields} are among ``allowed`` and include ``required``; ValueError otherwise."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"not a template ({e}); write a literal brace as {{{{ or }}}}") from None
    used = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise ValueError(f"unknown placeholder {{{name}}}; use {sorted('{' + a + '}' for a in allowed)}")
        used.add(name)
    if missing := sorted(required - used):
        raise ValueError(f"needs {{{missing[0]}}}")
    return template


class Pole(StrictModel):
    stance: Text
    argument: Text


class Dimension(StrictModel):
    poles: tuple[Pole, Pole]

    @model_validator(mode="after")
    def _opposite(self) -> Dimension:
        if self.poles[0].stance == self.poles[1].stance:
            raise ValueError("poles: the two poles take the same stance; give them opposite ones")
        return self


class ItemSpec(StrictModel):
    topics: dict[Text, Text] = Field(min_length=1)
    groups: list[Text] = Field(min_length=1)
    dimensions: dict[Text, Dimension] = Field(min_length=1)
    templates: list[Text] = Field(min_length=1)
    options: dict[Text, Text] = Field(min_length=1)

    @field_validator("groups")
    @classmethod
    def _distinct_groups(cls, groups: list[str]) -> list[str]:
        if len(set(groups)) != len(groups):
            raise ValueError("a group is listed twice")
        return groups

    @field_validator("templates")
    @classmethod
    def _questions(cls, templates: list[str]) -> list[str]:
        for k, template in enumerate(templates):
            try:
                _placeholders(template, QUESTION_FIELDS, QUESTION_FIELDS)
            except ValueError as e:
                raise ValueError(f"templates.{k}: {e}") from None
        if len(set(templates)) != len(templates):
            raise ValueError("a template is listed twice")
        return templates

    @field_validator("options")
    @classmethod
    def _option_templates(cls, options: dict[str, str]) -> dict[str, str]:
        for stance, template in options.items():
            try:
                _placeholders(template, OPTION_FIELDS, frozenset({"argument"}))
            except ValueError as e:
                raise ValueError(f"options.{stance}: {e}") from None
        return options

    @model_validator(mode="after")
    def _every_stance_has_an_option(self) -> ItemSpec:
        for name, dimension in self.dimensions.items():
            for k, pole in enumerate(dimension.poles):
                if pole.stance not in self.options:
                    raise ValueError(
                        f"dimensions.{name}.poles.{k}.stance: no option wording for stance {pole.stance!r} "
                        f"(options has {sorted(self.options)})"
                    )
        return self

    def items(self) -> list[Item]:
        """Every item the spec makes: topic-major, then group, dimension and template, in the spec's order."""
        made = []
        for topic, words in self.topics.items():
            for g, group in enumerate(self.groups):
                for dimension_name, dimension in self.dimensions.items():
                    for t, template in enumerate(self.templates):
                        item_id = f"{topic}/g{g}/{dimension_name}/t{t}"
                        responses = tuple(
                            Response(
                                id=f"{item_id}/{pole.stance}",
                                text=self.options[pole.stance].format(topic=words, group=group, argument=pole.argument),
                                stance=pole.stance,
                            )
                            for pole in dimension.poles
                        )
                        prompt = template.format(topic=words, group=group)
                        made.append(Item(id=item_id, topic=topic, prompt=prompt, responses=responses))
        return made

    def check_against(self, population: SurveySpec, source: str) -> None:
        """ConfigError unless every topic is an attitude of ``population`` and every stance is on its scale."""
        attitudes = population.attitudes
        problems = [
            (f"topics.{topic}", f"not an attitude of population spec {population.name} ({sorted(attitudes.items)})")
            for topic in self.topics
            if topic not in attitudes.items
        ]
        problems += [
            (f"dimensions.{name}.poles.{k}.stance", f"{pole.stance!r} is not on the scale {list(attitudes.scale)}")
            for name, dimension in self.dimensions.items()
            for k, pole in enumerate(dimension.poles)
            if pole.stance not in attitudes.scale
        ]
        if problems:
            raise ConfigError(source, problems)


def resolve_item_spec(name_or_path: str) -> Path:
    return assets.named_or_path(name_or_path, "data", "item_specs")


def load_item_spec(name_or_path: str) -> ItemSpec:
    """Read an item spec by name (data/item_specs/NAME.yaml) or path; ConfigError naming the file and field."""
    path = resolve_item_spec(name_or_path)
    if not path.is_file():
        shipped = sorted(p.stem for p in assets.path("data", "item_specs").glob("*.yaml"))
        what = "a folder, not a file" if path.is_dir() else f"item spec not found (shipped item specs: {shipped})"
        raise ConfigError(str(path), [("", what)])
    raw: Any = files.read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", f"expected a mapping, got {type(raw).__name__}")])
    try:
        return ItemSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(str(path), [validation_problem(err) for err in e.errors()]) from None
