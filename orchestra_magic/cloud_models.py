"""Model ids in each cloud's form: one table from the spec's model names, beside the price table.

A spec names models as the Anthropic API does (`claude-sonnet-5-5`); Bedrock and Vertex AI name the
same models their own way (`anthropic.claude-sonnet-4-5-20250929-v1:0`, `claude-sonnet-4-5@20250929`).
The cloud providers translate through `CLOUD_MODELS`; a name missing from the table (or one already in
the cloud's form, such as a Bedrock inference-profile ARN) is sent as written. Foundry deployments are
named like the API's models, so Foundry needs no column. `base_model` goes the other way, so an answer
is priced by the model behind a cloud id.

Older models carry a date in their cloud ids; from Opus 4.6 on the clouds dropped it. Edit this table
when a cloud adds a model.
"""

from __future__ import annotations

import re

Cloud = str  # "bedrock" or "vertex"

# spec model name -> (Bedrock model id, Vertex AI model id)
CLOUD_MODELS: dict[str, tuple[str, str]] = {
    "claude-fable-5-1": ("anthropic.claude-fable-5-1-v1", "claude-fable-5-1"),
    "claude-mythos-5-1": ("anthropic.claude-mythos-5-1-v1", "claude-mythos-5-1"),
    "claude-fable-5": ("anthropic.claude-fable-5-v1", "claude-fable-5"),
    "claude-mythos-5": ("anthropic.claude-mythos-5-v1", "claude-mythos-5"),
    "claude-opus-5-5": ("anthropic.claude-opus-5-5-v1", "claude-opus-5-5"),
    "claude-opus-5": ("anthropic.claude-opus-5-v1", "claude-opus-5"),
    "claude-opus-4-8": ("anthropic.claude-opus-4-8-v1", "claude-opus-4-8"),
    "claude-opus-4-7": ("anthropic.claude-opus-4-7-v1", "claude-opus-4-7"),
    "claude-opus-4-6": ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
    "claude-opus-4-5": ("anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5@20251101"),
    "claude-sonnet-5-5": ("anthropic.claude-sonnet-5-5-v1", "claude-sonnet-5-5"),
    "claude-sonnet-5": ("anthropic.claude-sonnet-5-v1", "claude-sonnet-5"),
    "claude-sonnet-4-6": ("anthropic.claude-sonnet-4-6-v1", "claude-sonnet-4-6"),
    "claude-sonnet-4-5": ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5@20250929"),
    "claude-haiku-5-5": ("anthropic.claude-haiku-5-5-v1", "claude-haiku-5-5"),
    "claude-haiku-4-5": ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5@20251001"),
}
_COLUMN = {"bedrock": 0, "vertex": 1}
# Bedrock's cross-region inference profiles: `global.` routes anywhere; the geographic ones stay in an area.
BEDROCK_PROFILES = ("global", "us", "eu", "apac", "jp", "au")
_BEDROCK_ID = re.compile(r"(?:(?:global|us|eu|apac|jp|au)\.)?anthropic\.(claude-[a-z0-9-]+?)(?:-\d{8})?-v\d+(?::\d+)?")
_VERTEX_ID = re.compile(r"(claude-[a-z0-9-]+?)@\d{8}")


def cloud_model_id(cloud: Cloud, model: str, bedrock_profile: str | None = None) -> str:
    """The id `cloud` knows `model` by; on Bedrock with an inference profile's prefix (`global.`, `us.`)."""
    entry = CLOUD_MODELS.get(model)
    if entry is None:
        return model  # already the cloud's own id, an ARN, or a model this table does not know
    ident = entry[_COLUMN[cloud]]
    return f"{bedrock_profile}.{ident}" if cloud == "bedrock" and bedrock_profile else ident


def base_model(model: str) -> str:
    """The spec's name behind a cloud id (`us.anthropic.claude-sonnet-5-5-v1` -> `claude-sonnet-5-5`);
    any other id as it is."""
    for pattern in (_BEDROCK_ID, _VERTEX_ID):
        match = pattern.fullmatch(model)
        if match:
            return match.group(1)
    return model
