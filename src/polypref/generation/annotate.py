"""Annotate open items with the survey's topics and stances, using the configured LLM backend.

The simulated judge (and any check against the survey) needs each item's topic and each response's stance on the
topic's answer scale. Users' data rarely has them. ``annotate`` asks the model, in free text, which survey
question a prompt is about (when the item has no topic) and which answer option each response takes, and accepts
only an answer that names one option exactly (case and surrounding punctuation aside); anything else is asked
again with a new seed, then left unannotated and counted. "None" is an answer to the topic question (a prompt about
none of the survey's questions): the item stays open, counted as such. Texts are never touched: the result is
written as polypref's own JSONL, which keeps every text, message, model, rating and source label byte-exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polypref import llms, prompts
from polypref.errors import ConfigError
from polypref.files import write_bytes
from polypref.generation.config import SECTION, OpenAIGeneratorConfig, VllmGeneratorConfig
from polypref.judges.options import ask_options
from polypref.llms import LLM
from polypref.population.spec import SurveySpec
from polypref.records import Item, Messages

TOPIC_TEMPLATE = "annotate_topic.j2"
STANCE_TEMPLATE = "annotate_stance.j2"
NONE = "none"  # the answer for a prompt about none of the survey's questions


@dataclass(frozen=True)
class Annotated:
    items: tuple[Item, ...]
    topics_set: int  # items that got a topic
    stances_set: int  # responses that got a stance
    off_survey: int  # items the model said are about none of the survey's questions: open, and rightly so
    unresolved: int  # questions the model never answered with an option
    spent: dict[str, int] = field(default_factory=dict)  # requests, prompt_tokens, completion_tokens: what it cost

    @property
    def still_open(self) -> int:
        """Items the simulated judge cannot judge (no topic, or a response without a stance)."""
        return sum(not item.annotated for item in self.items)


def annotator(judge: Any) -> OpenAIGeneratorConfig | VllmGeneratorConfig:
    """The config's LLM judge as a free-text backend (same model, endpoint and engine), answering greedily."""
    if judge.backend == "simulated":
        raise ConfigError(
            "config",
            [("judge.backend", "annotating needs an LLM backend (vllm or openai); the simulator reads stances")],
        )
    judge_only = {"samples", "allow_ties", "mode", "response_format", "logprobs", "backend", "templates"}
    fields = judge.model_dump(exclude=judge_only)  # templates: the caller renders the questions with them
    fields.pop("structured_outputs_backend", None)
    if "batch_api" in fields:  # questions come in rounds (micro-batches, retries): a day-long batch per round
        fields["batch_api"] = False
    model = OpenAIGeneratorConfig if judge.backend == "openai" else VllmGeneratorConfig
    return model.model_validate({**fields, "backend": judge.backend, "temperature": 0.0, "max_tokens": 32})


def annotate(
    items: Sequence[Item],
    spec: SurveySpec,
    config: OpenAIGeneratorConfig | VllmGeneratorConfig,
    seed: int,
    work: Path,
    templates: str | None = None,
) -> Annotated:
    """Items with topics and stances filled where they were missing and the model named an option; the questions
    from the user's folder's templates where ``templates`` (judge.templates) has them."""
    backend = llms.open(config, seed, work, section=f"{SECTION}.0")  # as the first generator would be
    try:
        return _annotate(list(items), spec, backend, seed, templates)
    finally:
        backend.close()


def _annotate(items: list[Item], spec: SurveySpec, backend: LLM, seed: int, templates: str | None = None) -> Annotated:
    questions = {t: a.topic for t, a in spec.attitudes.items.items()}
    topic_env = prompts.template(TOPIC_TEMPLATE, templates)
    open_topics = [i for i, item in enumerate(items) if item.topic is None]
    topic_answers = ask_options(
        backend,
        [_user(topic_env.render(questions=questions, prompt=items[i].prompt)) for i in open_topics],
        [[*questions, NONE] for _ in open_topics],
        seed,
        "topic",
    )
    topics = topic_answers.options
    topics_set = 0
    for i, answer in zip(open_topics, topics, strict=True):
        if answer not in (None, NONE):
            items[i] = replace(items[i], topic=answer)
            topics_set += 1

    stance_env = prompts.template(STANCE_TEMPLATE, templates)
    asks = [
        (i, j)
        for i, item in enumerate(items)
        if item.topic in questions
        for j, response in enumerate(item.responses)
        if response.stance is None
    ]
    stance_answers = ask_options(
        backend,
        [
            _user(
                stance_env.render(
                    question=questions[items[i].topic],
                    scale=spec.scale(items[i].topic),
                    prompt=items[i].prompt,
                    response=items[i].responses[j].text,
                )
            )
            for i, j in asks
        ],
        [spec.scale(items[i].topic) for i, _ in asks],
        seed,
        "stance",
    )
    stances = stance_answers.options
    stances_set = 0
    for (i, j), answer in zip(asks, stances, strict=True):
        if answer is not None:
            scale = spec.scale(items[i].topic)
            responses = list(items[i].responses)
            responses[j] = replace(responses[j], stance=answer, position=scale.index(answer) / (len(scale) - 1))
            items[i] = replace(items[i], responses=tuple(responses))
            stances_set += 1
    off_survey = topics.count(NONE)  # a valid answer: not among the unresolved
    unresolved = topics.count(None) + stances.count(None)
    asked = [a.spent(range(len(a.options))) for a in (topic_answers, stance_answers)]
    spent = {kind: sum(sum(costs[kind]) for costs in asked) for kind in asked[0]}
    return Annotated(tuple(items), topics_set, stances_set, off_survey, unresolved, spent)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def to_jsonl(items: Sequence[Item]) -> bytes:
    """Items as polypref's own JSONL, every text and message as read."""
    return "".join(json.dumps(_record(item), ensure_ascii=False) + "\n" for item in items).encode("utf-8")


def _turns(messages: Messages | None, text: str) -> Any:
    return [{"role": m.role, "content": m.content} for m in messages] if messages is not None else text


def _record(item: Item) -> dict[str, Any]:
    record: dict[str, Any] = {"id": item.id, "topic": item.topic, "prompt": _turns(item.messages, item.prompt)}
    if item.responses:  # a prompt alone stays one (read as format prompts): an empty list is refused
        record["responses"] = [
            {
                "id": r.id,
                "text": _turns(r.messages, r.text),
                **({"stance": r.stance} if r.stance is not None else {}),
                **({"model": r.model} if r.model is not None else {}),
                **({"score": r.score} if r.score is not None else {}),
            }
            for r in item.responses
        ]
    if item.label is not None:
        record["label"] = item.label
    return record


def write(items: Sequence[Item], path: Path) -> None:
    write_bytes(to_jsonl(items), path)


def summary(result: Annotated, out: Path, model: str) -> str:
    """What annotate did, telling items about none of the survey's questions from answers that named nothing."""
    why = [
        f"{n} {what}"
        for n, what in (
            (result.off_survey, "about none of the survey's questions"),
            (result.unresolved, "answers named no option"),
        )
        if n
    ]
    spent = result.spent
    cost = (
        f"; {spent['requests']} requests ({spent['prompt_tokens']} prompt and {spent['completion_tokens']} completion "
        "tokens)"
        if spent
        else ""
    )
    return (
        f"wrote {out}: {len(result.items)} items; {result.topics_set} topics and {result.stances_set} stances set by "
        f"{model}; {result.still_open} items still open" + (f" ({', '.join(why)})" if why else "") + cost
    )
