"""The base of every user-facing model (configs, specs): unknown keys are errors, values are frozen."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
