"""The persona-free stand-in: what a judge answers as itself, with no persona to play.

Fidelity compares role-play against it (the gain from portraying someone), and the preference-space map places
it among the personas, as Fair-PP placed mainstream models among its personas. An LLM judge gets no portrayal
at all. The simulator has no opinions of its own, so its persona-free judge holds the population's (weighted)
most common answer on every topic: a judge that says what the majority says.
"""

from __future__ import annotations

from collections import defaultdict

from polypref.population.sample import Population
from polypref.records import Persona, content_hash

GROUP = "(no persona)"  # the stand-in's group: no survey group can be named this (groups join labels with " · ")


def persona_free(population: Population) -> Persona:
    """The stand-in for ``population``: empty portrayal, no attributes, and each topic's weighted modal answer
    (ties go to the earlier option on the scale, so the answer does not depend on persona order)."""
    spec = population.spec
    attitudes: dict[str, str | None] = {}
    positions: dict[str, float | None] = {}
    for topic in spec.attitudes.items:
        scale = spec.scale(topic)
        mass: dict[str, float] = defaultdict(float)
        for persona in population.personas:
            answer = persona.attitudes.get(topic)
            if answer is not None:
                mass[answer] += persona.weight
        if not mass:
            attitudes[topic] = positions[topic] = None
            continue
        modal = max(scale, key=lambda option: (mass.get(option, 0.0), -scale.index(option)))
        attitudes[topic] = modal
        positions[topic] = scale.index(modal) / (len(scale) - 1)
    return Persona(
        id=content_hash("persona-free", spec.name, sorted(attitudes.items())),
        spec=spec.name,
        respondent_id="",
        replicate=0,
        group=GROUP,
        attributes={},
        attitudes=attitudes,
        positions=positions,
        weight=0.0,
        portrayal="",
    )
