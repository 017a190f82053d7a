"""Population: spec YAML -> survey frame -> sampled Personas."""

from polypref.population.sample import Population, sample_population
from polypref.population.spec import SurveySpec, load_spec

__all__ = ["Population", "SurveySpec", "load_spec", "sample_population"]
