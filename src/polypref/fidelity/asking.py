"""Asking the fidelity check's questions through the judge's model as a free-text backend: every persona's (its
own answer held out of its portrayal) and the persona-free model's, each drawn as often as ``Sampling`` says,
answers saved as they arrive (``AnswerStore``) and taken from there on a rerun."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypref import llms, progress
from polypref.errors import EndpointUnreachable
from polypref.fidelity.questions import question_messages, question_text
from polypref.fidelity.sample import Sampling
from polypref.fidelity.store import AnswerStore
from polypref.generation.annotate import annotator
from polypref.judges.options import ask_options
from polypref.population.sample import Population
from polypref.records import Persona

log = logging.getLogger("polypref.fidelity")


def llm_answers(
    population: Population,
    personas: Sequence[Persona],
    topics: Sequence[str],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
    sampling: Sampling | None = None,
) -> tuple[dict[str, list[str | None]], dict[str, list[str | None]], int]:
    """Every persona's answers to every topic's question (its own answer held out of the portrayal), the
    persona-free answers, and how many questions got no answer at all; through the judge's model as a free-text
    backend. Each question is asked ``sampling.samples`` times at its temperature (None: once, greedily): a
    topic's answers are draw-major (draw j of persona i at ``j * len(personas) + i``), the persona-free model's
    one per draw. See ``ask`` for ``store`` and ``stop_if_unreachable``."""
    spec = population.spec
    portray = population.portrayer(hold_out=True)
    asks = [(t, p) for t in topics for p in personas]
    templates = getattr(judge, "templates", None)
    # once per topic, not per persona (before the first request)
    text = {t: question_text(spec, t, templates) for t in topics}
    once = [question_messages(text[t], portray(p, t).text, templates) for t, p in asks]
    once += [question_messages(text[t], None, templates) for t in topics]
    scales = [spec.scale(t) for t, _ in asks] + [spec.scale(t) for t in topics]
    samples = sampling.samples if sampling else 1
    draws = [j for j in range(samples) for _ in once]
    got, no_answer = ask(
        once * samples, scales * samples, judge, seed, work, store, stop_if_unreachable, draws, sampling
    )
    answers: dict[str, list[str | None]] = {t: [] for t in topics}
    free: dict[str, list[str | None]] = {t: [] for t in topics}
    for j in range(samples):
        drawn = got[j * len(once) : (j + 1) * len(once)]
        for (topic, _), answer in zip(asks, drawn, strict=False):
            answers[topic].append(answer)
        for topic, answer in zip(topics, drawn[len(asks) :], strict=True):
            free[topic].append(answer)
    return answers, free, no_answer


def ask(
    questions: Sequence[list[dict[str, str]]],
    options: Sequence[Sequence[str]],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
    draws: Sequence[int] | None = None,
    sampling: Sampling | None = None,
) -> tuple[list[str | None], int]:
    """Each question's option (None: none named) and how many got no answer at all. With a ``store``, saved
    answers are taken and only the other questions asked, micro-batch by micro-batch, each micro-batch saved as
    it arrives with what it cost (a stop between them loses none). An endpoint that cannot be reached stops the
    caller (``EndpointUnreachable``), or with ``stop_if_unreachable`` off leaves every question unanswered.
    ``draws``: each question's sample number (repeated samples of one question); ``sampling``: asked at its
    temperature (None: greedily)."""
    keys = AnswerStore.keys(questions, options, draws)
    saved = store.lookup(keys) if store is not None else {}
    got: list[str | None] = [saved.get(i) for i in range(len(questions))]
    todo = [i for i in range(len(questions)) if i not in saved]
    progress.expect(progress.FIDELITY, len(questions))
    progress.advance(progress.FIDELITY, len(saved))
    if saved:
        log.info("fidelity: %d of %d survey questions answered before; asking %d", len(saved), len(got), len(todo))
    if not todo:
        return got, 0
    no_answer = 0
    config = annotator(judge)
    if sampling is not None:
        config = config.model_copy(update={"temperature": sampling.temperature})
    backend = llms.open(config, seed, work, section="judge")
    try:
        for start in range(0, len(todo), backend.config.micro_batch):
            chunk = todo[start : start + backend.config.micro_batch]
            said = ask_options(
                backend,
                [questions[i] for i in chunk],
                [options[i] for i in chunk],
                seed,
                "fidelity",
                [draws[i] for i in chunk] if draws else None,
            )
            for i, answer in zip(chunk, said.options, strict=True):
                got[i] = answer
            no_answer += said.no_answer
            progress.advance(progress.FIDELITY, len(chunk))
            if store is not None:
                # an option, or (when every request was answered) no option named; never a question left unanswered
                kept = [j for j, a in enumerate(said.options) if a is not None or not said.no_answer]
                store.save(keys[[chunk[j] for j in kept]], [said.options[j] for j in kept], said.spent(kept))
    except EndpointUnreachable as e:
        if stop_if_unreachable:
            raise
        log.error("fidelity: %s", e)
        return got, no_answer + sum(1 for i in todo if got[i] is None)
    finally:
        backend.close()
    return got, no_answer
