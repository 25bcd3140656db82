"""Request bodies of the REST API, as pydantic models (they also document /docs).

Responses are the entities' own ``to_dict()``, so the wire format has one definition.
Non-finite metric values travel as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
pydantic parses those into floats.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gyre.entities import Dataset, Metric, RunStatus

__all__ = [
    "AppendManifestRequest",
    "BlobRefBody",
    "CreateExperimentRequest",
    "CreateModelVersionRequest",
    "CreateRegisteredModelRequest",
    "CreateRunRequest",
    "DatasetBody",
    "LogBatchRequest",
    "LogInputsRequest",
    "MetricBody",
    "RecordAuditRequest",
    "RecordGateRequest",
    "SearchRunsRequest",
    "SetAliasRequest",
    "SetTagsRequest",
    "UpdateRunRequest",
]


class CreateExperimentRequest(BaseModel):
    name: str
    tags: dict[str, str] | None = None


class CreateRunRequest(BaseModel):
    experiment_id: str
    name: str | None = None
    tags: dict[str, str] | None = None
    parent_run_id: str | None = None
    start_time: int | None = None
    run_id: str | None = Field(
        default=None, description="Client-chosen id: creating the same run twice is a no-op."
    )


class UpdateRunRequest(BaseModel):
    status: RunStatus
    end_time: int | None = None
    error: str | None = None


class MetricBody(BaseModel):
    key: str
    value: float
    step: int = 0
    timestamp: int

    def to_metric(self) -> Metric:
        return Metric(self.key, self.value, self.step, self.timestamp)


class LogBatchRequest(BaseModel):
    metrics: list[MetricBody] = Field(default_factory=list)
    params: dict[str, str] | None = None
    tags: dict[str, str] | None = None
    batch_id: str | None = Field(
        default=None, description="Client-chosen id: a batch already applied is not re-applied."
    )


class SearchRunsRequest(BaseModel):
    experiment_ids: list[str]
    filter: str = ""
    order_by: list[str] = Field(default_factory=list)
    max_results: int = 100
    page_token: str | None = None


class DatasetBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    digest: str
    num_rows: int | None = None
    # "schema" would shadow a BaseModel attribute, hence the alias.
    schema_: list[dict[str, str]] = Field(default_factory=list, alias="schema")
    source: str = ""
    source_type: str = ""

    def to_dataset(self) -> Dataset:
        return Dataset(
            name=self.name,
            digest=self.digest,
            num_rows=self.num_rows,
            schema=self.schema_,
            source=self.source,
            source_type=self.source_type,
        )


class LogInputsRequest(BaseModel):
    dataset: DatasetBody
    context: str


class BlobRefBody(BaseModel):
    digest: str
    size: int


class AppendManifestRequest(BaseModel):
    scope: str = Field(description="Manifest scope, e.g. runs/<run_id>.")
    entries: dict[str, BlobRefBody]


class CreateRegisteredModelRequest(BaseModel):
    name: str
    description: str = ""
    tags: dict[str, str] | None = None


class CreateModelVersionRequest(BaseModel):
    source: str = Field(
        description="Where the model package lives: runs:/<run_id>/<path> or a URI."
    )
    run_id: str | None = None
    description: str = ""
    tags: dict[str, str] | None = None
    git_commit: str | None = None
    actor: str = "unknown"


class SetTagsRequest(BaseModel):
    tags: dict[str, str]


class SetAliasRequest(BaseModel):
    version: int
    actor: str = "unknown"
    reason: str = ""


class RecordGateRequest(BaseModel):
    verdict: str = Field(description="'blessed' or 'rejected'.")
    report: dict[str, Any]
    actor: str = "unknown"


class RecordAuditRequest(BaseModel):
    action: str
    actor: str = "unknown"
    reason: str = ""
    alias: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    details: dict[str, Any] | None = None
