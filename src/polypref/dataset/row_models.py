"""Record contracts: one pydantic model per config's row, which generates schemas/*.json (``generated``).

At run time the JSON Schema files (not these models) define the Arrow schema and the checks (``dataset.schema``,
whose ``--check`` fails when the files drift from these models and ``--update`` rewrites them), so what the
files promise is what the Parquet holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from polypref.records import LLMVerdict

_TEXT_MAP = {"type": "object", "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]}}


class MessageRecord(BaseModel):
    """One turn of a conversation (TRL's conversational format)."""

    model_config = ConfigDict(extra="forbid", title="message")
    role: str
    content: str


# A text, or a conversation when the item source was conversational (one kind per build).
_TEXT_OR_MESSAGES = {"x-arrow": "text-or-messages"}


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(description="Identifies the build run (differs between otherwise identical builds)")
    created_at: datetime = Field(description="When the row was written (UTC)")


class PersonaRecord(_Record):
    persona_id: str = Field(description="Content hash of (spec, respondent_id, replicate)")
    spec: str = Field(description="Population spec the persona was sampled from")
    respondent_id: str = Field(description="The survey respondent this persona portrays")
    replicate: int = Field(ge=0, description="Earlier draws of the same respondent in this population")
    group: str = Field(description="Social group: the spec's group attributes joined by ' · '")
    attributes: dict[str, str | None] = Field(
        description="Attribute -> label (null = not answered)", json_schema_extra={"x-arrow": "struct"}
    )
    attitudes: dict[str, str | None] = Field(
        description="Topic -> the respondent's survey answer", json_schema_extra={"x-arrow": "struct"}
    )
    weight: float = Field(gt=0, description="Group population share / group sample share")
    portrayal: str = Field(description="Role-play text rendered from the spec's prompts/ template")


class JudgmentRecord(_Record):
    persona_id: str = Field(description="The judging persona (personas config)")
    pair_id: str = Field(description="Content hash of (prompt, response A, response B)")
    prompt_id: str = Field(description="Id of the item (prompt and its responses)")
    source_columns: dict[str, str | None] | None = Field(
        None,
        description="The source's own columns kept with the item (items.keep_columns, and its prompt_id when it "
        "has one), each as text (numbers and nested values as JSON); a build that keeps none has no such column",
        json_schema_extra={"x-arrow": "struct"},
    )
    topic: str | None = Field(description="Survey topic the item is about; null for an open item")
    portrayal_topics: list[str] = Field(
        description="Survey topics whose answers the judging portrayal showed (the judged topic is held out "
        "unless portrayal.hold_out_judged_topic is false)"
    )
    order: Literal["AB", "BA"] = Field(description="AB: response A shown first")
    sample: int = Field(ge=0, description="Repeat number of the same (persona, pair, order)")
    first_response_id: str = Field(description="Response shown first (position A)")
    second_response_id: str = Field(description="Response shown second (position B)")
    choice: Literal["A", "B", "tie"] | None = Field(description="As the judge said it, in shown order")
    winner_id: str | None = Field(description="The response the choice names (null for tie or invalid)")
    strength: int | None = Field(ge=1, le=5, description="How strongly the choice is preferred, 1-5")
    confidence: float | None = Field(ge=0, le=1, description="The judge's confidence in its choice, 0-1")
    rationale: str | None = Field(description="The judge's short reason")
    raw: str | None = Field(description="Raw model output (LLM judges)")
    error: str | None = Field(description="Why the verdict is invalid; null when valid")
    true_choice: Literal["A", "B", "tie"] | None = Field(description="Simulator ground truth; null for LLMs")
    agreement: float | None = Field(
        ge=0,
        le=1,
        description="Share of the pair's voting verdicts (those left after the validity and swap filters) that "
        "name its leading response; null when none is left",
    )
    drop_reason: str | None = Field(
        description="First filter that dropped the row; null = kept. no_answer: the endpoint never answered "
        "(a rerun asks again); invalid: it answered with no usable verdict; identical_texts: the pair's two "
        "responses are the same text (generated samples can be), so no verdict states a preference"
    )
    attempts: int = Field(
        ge=0,
        description="Requests made for this judgment: failed requests retried and invalid outputs re-asked count "
        "(0: none was made, as for a pair of two identical texts)",
    )
    prompt_tokens: int | None = Field(description="Tokens sent (LLM judges)")
    completion_tokens: int | None = Field(description="Tokens generated (LLM judges)")
    response_format: str | None = Field(
        description="Output constraint the answer was asked under: json_schema, json_object, none or choice "
        "(LLM judges)"
    )
    judge_backend: str = Field(description="simulated | vllm | openai")
    judge_model: str = Field(description="Model name, or the simulator's version")
    prompt_template: str | None = Field(description="Prompt templates and their content hashes (LLM judges)")
    simulated: bool = Field(description="True when the verdict comes from the simulator, not a model")


class PreferenceRecord(_Record):
    prompt: str | list[MessageRecord] = Field(
        description="The user prompt, as the source had it: a text, or a list of {role, content} messages",
        json_schema_extra=_TEXT_OR_MESSAGES,
    )
    chosen: str | list[MessageRecord] = Field(
        description="The response the persona preferred (text or messages, like prompt)",
        json_schema_extra=_TEXT_OR_MESSAGES,
    )
    rejected: str | list[MessageRecord] = Field(
        description="The other response (text or messages, like prompt)", json_schema_extra=_TEXT_OR_MESSAGES
    )
    prompt_id: str = Field(description="Id of the item (prompt and its responses)")
    source_columns: dict[str, str | None] | None = Field(
        None,
        description="The source's own columns kept with the item (items.keep_columns, and its prompt_id when it "
        "has one), each as text (numbers and nested values as JSON); a build that keeps none has no such column",
        json_schema_extra={"x-arrow": "struct"},
    )
    topic: str | None = Field(description="Survey topic the item is about; null for an open item")
    pair_id: str = Field(description="Content hash of (prompt, response A, response B)")
    chosen_id: str = Field(description="Id of the chosen response")
    rejected_id: str = Field(description="Id of the rejected response")
    chosen_stance: str | None = Field(
        description="Stance of the chosen response on the topic's answer scale (null: not annotated)"
    )
    rejected_stance: str | None = Field(description="Stance of the rejected response")
    chosen_model: str | None = Field(description="Model that wrote the chosen response, when known")
    rejected_model: str | None = Field(description="Model that wrote the rejected response, when known")
    source_label_agrees: bool | None = Field(
        description="The persona chose the response the source itself prefers (its chosen, or its higher "
        "rating); null when the source has no preference for the pair"
    )
    persona_id: str = Field(description="The judging persona (personas config)")
    persona_group: str = Field(description="The persona's social group")
    persona_attributes: dict[str, str | None] = Field(
        description="The persona's attributes", json_schema_extra={"x-arrow": "struct"}
    )
    persona_view: str | None = Field(description="The persona's own survey answer on this topic")
    weight: float = Field(gt=0, description="Persona weight (post-stratification)")
    strength: float = Field(ge=1, le=5, description="Mean strength of the kept verdicts")
    confidence: float = Field(
        ge=0,
        le=1,
        description="Calibrated probability that the chosen response is the persona's true preference: the "
        "judge's order-debiased log-odds, swap agreement, sample agreement and confidence, mapped through a "
        "calibrator fitted on simulated judgments with known truth (see the card's Calibration section)",
    )
    judge_confidence: float = Field(
        ge=0,
        le=1,
        description="Mean confidence the judge itself stated for the kept verdicts (verbal 0-100 / 100, or the "
        "logprob probability in choice mode), uncalibrated",
    )
    agreement: float = Field(ge=0, le=1, description="Share of the kept verdicts that name the chosen response")
    n_judgments: int = Field(ge=1, description="Kept verdicts behind this row")
    matches_ground_truth: bool | None = Field(description="Simulated judge: chosen equals the true preference")
    judge_backend: str = Field(description="simulated | vllm | openai")
    judge_model: str = Field(description="Model name, or the simulator's version")
    simulated: bool = Field(description="True when the verdicts come from the simulator, not a model")


class PairRecord(_Record):
    pair_id: str = Field(description="Content hash of (prompt, response A, response B): the key of every other config")
    prompt_id: str = Field(description="Id of the item (prompt and its responses)")
    source_columns: dict[str, str | None] | None = Field(
        None,
        description="The source's own columns kept with the item (items.keep_columns, and its prompt_id when it "
        "has one), each as text (numbers and nested values as JSON); a build that keeps none has no such column",
        json_schema_extra={"x-arrow": "struct"},
    )
    topic: str | None = Field(description="Survey topic the item is about; null for an open item")
    prompt: str | list[MessageRecord] = Field(
        description="The user prompt, as the source had it (text or messages, as in preferences)",
        json_schema_extra=_TEXT_OR_MESSAGES,
    )
    response_a: str | list[MessageRecord] = Field(
        description="Response A of the pair (text or messages, like prompt)", json_schema_extra=_TEXT_OR_MESSAGES
    )
    response_b: str | list[MessageRecord] = Field(
        description="Response B of the pair (text or messages, like prompt)", json_schema_extra=_TEXT_OR_MESSAGES
    )
    response_a_id: str = Field(description="Id of response A (chosen_id / rejected_id in preferences)")
    response_b_id: str = Field(description="Id of response B")
    response_a_stance: str | None = Field(description="Stance of response A on the topic's answer scale")
    response_b_stance: str | None = Field(description="Stance of response B")
    response_a_model: str | None = Field(description="Model that wrote response A, when known")
    response_b_model: str | None = Field(description="Model that wrote response B, when known")
    source_preferred_id: str | None = Field(
        description="The response the source itself prefers (its chosen, or its higher rating); null: none"
    )


class WeightRecord(_Record):
    persona_id: str = Field(description="The target persona: the one whose preference the row is (preferences config)")
    pair_id: str = Field(description="The pair (preferences config)")
    tier: int = Field(
        ge=1,
        description="1 + the number of other personas who chose the other response of the pair (or, with "
        "weights.missing_as_dissent, kept no preference on it); binned into weights.tiers tiers of about equal "
        "rows, numbered 1..tiers, when it takes more values than that",
    )
    weight: float = Field(
        gt=0,
        description="Fair-PP's sample weight of the row for training toward its persona: (tier / P)^alpha x "
        "(1 / rows of the persona in the tier)^beta, normalised over the persona's tiers (P: personas with "
        "preferences; alpha, beta: the weights config's, as the card states)",
    )


class ReviewRecord(_Record):
    persona_id: str = Field(description="The persona whose judgment of the pair is in doubt")
    pair_id: str = Field(description="The pair")
    reason: Literal["group_split", "judge_inconsistent"] = Field(
        description="group_split: the persona's social group is split on the pair (its majority below the "
        "threshold); judge_inconsistent: the judge contradicted itself (orders or samples disagree)"
    )
    share: float = Field(
        ge=0,
        le=1,
        description="group_split: the share of the group's personas that chose the majority response; "
        "judge_inconsistent: the share of the persona's valid judgments on the majority side",
    )


class MapRecord(_Record):
    point_id: str = Field(description="The persona (personas config), or the persona-free run's label")
    kind: Literal["persona", "persona-free"] = Field(
        description="persona: a persona's preferences; persona-free: a run of the judge with no persona, "
        "projected onto the personas' axes"
    )
    group: str | None = Field(description="The persona's social group; null for a persona-free run")
    x: float = Field(
        description="First principal component of the personas' votes on the pairs (+1/-1 per pair, oriented "
        "by the pair's response ids in sorted order; a missing vote counts as the pair's mean)"
    )
    y: float = Field(description="Second principal component (0 when the votes vary along one direction only)")
    n_pairs: int = Field(ge=0, description="Pairs of the map the point has a preference on")
    explained_x: float = Field(ge=0, le=1, description="Share of the personas' vote variance along x")
    explained_y: float = Field(ge=0, le=1, description="Share of the personas' vote variance along y")


class DistributionRecord(_Record):
    pair_id: str = Field(description="The pair (pairs config): side a is its response_a, side b its response_b")
    prompt_id: str = Field(description="Id of the item (prompt and its responses)")
    topic: str | None = Field(description="Survey topic the item is about; null for an open item")
    group: str | None = Field(
        description="The personas' social group (as the personas config has it); null: the row of the pair "
        "overall, every group together (each persona counted once, unweighted)"
    )
    personas: int = Field(
        ge=1,
        description="Personas counted: those with a kept preference on the pair plus those dropped as "
        "indifferent (their vote's majority was a tie); personas dropped for any other reason (invalid, swap "
        "inconsistent, low agreement or confidence, no majority, no answer) are not counted",
    )
    votes_a: int = Field(ge=0, description="Counted personas whose kept preference chose response a")
    votes_b: int = Field(ge=0, description="Counted personas whose kept preference chose response b")
    votes_indifferent: int = Field(ge=0, description="Counted personas dropped as indifferent (a tie majority)")
    share_a: float = Field(ge=0, le=1, description="votes_a / personas")
    share_b: float = Field(ge=0, le=1, description="votes_b / personas")
    share_indifferent: float = Field(ge=0, le=1, description="votes_indifferent / personas")
    share_a_low: float = Field(ge=0, le=1, description="Lower end of share_a's Wilson 95% interval (z = 1.959964)")
    share_a_high: float = Field(ge=0, le=1, description="Upper end of share_a's Wilson 95% interval")
    share_b_low: float = Field(ge=0, le=1, description="Lower end of share_b's Wilson 95% interval")
    share_b_high: float = Field(ge=0, le=1, description="Upper end of share_b's Wilson 95% interval")
    true_personas: int | None = Field(
        ge=1,
        description="Simulated judge: the personas of the row that judged the pair with a known true preference, "
        "counted or not (the population the true shares describe); null for LLM judges",
    )
    true_share_a: float | None = Field(
        ge=0, le=1, description="Simulated judge: share of true_personas whose true preference is response a"
    )
    true_share_b: float | None = Field(
        ge=0, le=1, description="Simulated judge: share of true_personas whose true preference is response b"
    )
    true_share_indifferent: float | None = Field(
        ge=0, le=1, description="Simulated judge: share of true_personas truly indifferent (the simulator's tie)"
    )


class LabelRecord(BaseModel):
    """One preference of a persona inside an episode: the pair, its texts, and which response it chose."""

    model_config = ConfigDict(extra="forbid", title="label")
    pair_id: str
    prompt_id: str
    topic: str | None
    prompt: str | list[MessageRecord]
    chosen: str | list[MessageRecord]
    rejected: str | list[MessageRecord]
    chosen_id: str
    rejected_id: str


# A list of labels (LabelRecord); their texts are messages when the build's are.
_LABELS = {"x-arrow": "labels"}


class EpisodeRecord(_Record):
    persona_id: str = Field(description="The persona (personas config)")
    persona_group: str = Field(description="Social group: the spec's group attributes joined by ' · '")
    persona_attributes: dict[str, str | None] = Field(
        description="Attribute -> label (null = not answered)", json_schema_extra={"x-arrow": "struct"}
    )
    seed: int = Field(ge=0, description="output.episodes.seed: orders each persona's labels (shot order)")
    n_shots: int = Field(ge=1, description="Labels in shots (output.episodes.shots)")
    n_queries: int = Field(ge=1, description="Labels in queries: the persona's other preferences")
    shots: list[LabelRecord] = Field(
        description="The persona's first n_shots preferences in shot order (a seeded hash of persona and pair): "
        "pair_id, prompt_id, topic, prompt, chosen, rejected, chosen_id, rejected_id",
        json_schema_extra=_LABELS,
    )
    queries: list[LabelRecord] = Field(
        description="The persona's other preferences, in shot order, with the same fields", json_schema_extra=_LABELS
    )


RECORDS: dict[str, type[BaseModel]] = {
    "persona": PersonaRecord,
    "judgment": JudgmentRecord,
    "preference": PreferenceRecord,
    "pair": PairRecord,
    "weight": WeightRecord,
    "review": ReviewRecord,
    "map": MapRecord,
    "distribution": DistributionRecord,
    "episode": EpisodeRecord,
}


def generated() -> dict[str, dict[str, Any]]:
    """Schema file name -> JSON Schema, as the models define them today."""
    out = {}
    for name, model in RECORDS.items():
        schema = model.model_json_schema()
        props = schema["properties"]  # run metadata last, so the columns read content first
        schema["properties"] = {k: v for k, v in props.items() if k not in ("run_id", "created_at")} | {
            k: props[k] for k in ("run_id", "created_at")
        }
        out[f"{name}.json"] = schema
    out["verdict.json"] = LLMVerdict.model_json_schema()
    return out
