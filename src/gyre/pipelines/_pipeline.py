"""``Pipeline``: steps wired by a function, run as one tracked, cached DAG.

The pipeline function is called once, with the run's parameters, to *wire* the DAG: each
step call records a node and returns handles to its outputs; passing a handle to another
step is an edge. Nothing runs while wiring. Then the nodes run in dependency order, each as
soon as its inputs exist, independent ones in parallel, on the chosen executor.

>>> @gyre.Pipeline
... def churn(data: Path = Path("customers.parquet"), max_depth: int = 8):
...     train, test = split(load(data))
...     model = fit(train, max_depth=max_depth)
...     return {"model": model, "auc": evaluate(model, test)}
>>> result = churn.run(params={"max_depth": 4})
>>> result.steps["fit"].cache_hit, result.load("auc")
(False, 0.91)
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
import typing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gyre.entities import Dataset, RunStatus
from gyre.errors import GyreError, InvalidArgument, NotFound
from gyre.pipelines._artifacts import OutputRef, load_output
from gyre.pipelines._cache import CodeFingerprint, cache_key, canonical_literal, code_fingerprint
from gyre.pipelines._executors import Executor, get_executor
from gyre.pipelines._runner import StepTask, TaskResult
from gyre.pipelines._step import Node, Output, step, tracing
from gyre.tracking import Client

__all__ = ["Pipeline", "PipelineResult", "StepResult", "register"]

TAG_PIPELINE = "gyre.pipeline.name"
TAG_KIND = "gyre.pipeline.kind"
TAG_CACHE_KEY = "gyre.step.cache_key"
TAG_OUTPUTS = "gyre.step.outputs"
TAG_CACHE_HIT = "gyre.step.cache_hit"
TAG_CACHED_FROM = "gyre.step.cached_from"


@dataclass(slots=True)
class StepResult:
    """How one step went: FINISHED (ran or came from the cache), FAILED or SKIPPED."""

    name: str
    status: str
    cache_hit: bool = False
    duration: float = 0.0
    attempts: int = 0
    run_id: str | None = None
    outputs: dict[str, OutputRef] = field(default_factory=dict)
    error: str | None = None
    cached_from: str | None = None
    exception: BaseException | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "cache_hit": self.cache_hit,
            "duration": round(self.duration, 4),
            "attempts": self.attempts,
            "run_id": self.run_id,
            "cached_from": self.cached_from,
            "error": self.error,
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
        }


@dataclass(slots=True)
class PipelineResult:
    """A pipeline run: its tracking run id, per-step results and the returned outputs."""

    pipeline: str
    run_id: str
    status: str
    steps: dict[str, StepResult]
    outputs: dict[str, OutputRef]
    duration: float
    executor: str
    artifact_uri: str
    error: str | None = None
    failed_step: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.FINISHED.value

    @property
    def cache_hits(self) -> list[str]:
        return [s.name for s in self.steps.values() if s.cache_hit]

    def load(self, output: str | Output | OutputRef) -> Any:
        """The value of a returned output (by key), or of any step output (handle/ref)."""
        import tempfile

        from gyre import artifacts as _artifacts

        if isinstance(output, str):
            ref = self.outputs.get(output)
            if ref is None:
                raise NotFound(
                    f"pipeline {self.pipeline!r} returned no output {output!r}",
                    hint=f"returned outputs: {', '.join(self.outputs) or 'none'}",
                )
        elif isinstance(output, Output):
            found = self.steps.get(output.node)
            if found is None or output.name not in found.outputs:
                raise NotFound(f"no output {output!r} in pipeline run {self.run_id!r}")
            ref = found.outputs[output.name]
        else:
            ref = output
        workdir = Path(tempfile.mkdtemp(prefix="gyre-pipeline-load-"))  # (a file output's home)
        store = _artifacts.open_artifact_store(self.artifact_uri)
        try:
            return load_output(store, ref, workdir)
        finally:
            _artifacts.close_artifact_store(store)

    def raise_for_status(self) -> None:
        """Re-raise what the failed step raised (with a note naming step and run)."""
        if self.ok:
            return
        failed = self.steps.get(self.failed_step or "")
        exc = failed.exception if failed is not None else None
        if exc is None:
            raise GyreError(self.error or f"pipeline run {self.run_id!r} failed")
        note = f"in step {self.failed_step!r} of pipeline {self.pipeline!r} (run {self.run_id})"
        if note not in getattr(exc, "__notes__", []):
            exc.add_note(note)
        raise exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "duration": round(self.duration, 4),
            "executor": self.executor,
            "error": self.error,
            "failed_step": self.failed_step,
            "steps": [s.to_dict() for s in self.steps.values()],
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
        }


# -- the built-in register step ---------------------------------------------------------


@step(cache=False, name="register")
def _register_step(model: Any, name: str) -> Any:  # pragma: no cover - runs in the driver
    raise AssertionError("the register step runs in the pipeline driver")


def register(model: Output, name: str) -> Output:
    """Inside a pipeline: register the model output ``model`` as the next version of
    ``name`` (the same model again reuses its version). Returns ``{"name", "version"}``.

    >>> register(fit(train), "churn")
    """
    if not isinstance(model, Output):
        raise InvalidArgument(
            f"register() takes a step's model output, got {type(model).__name__!r}",
            hint="call it inside a pipeline function: register(train(df), 'churn')",
        )
    out: Output = _register_step(model, name)
    return out


# -- parameters -------------------------------------------------------------------------


def _coerce(name: str, raw: str, annotation: Any, default: Any) -> Any:
    kind = annotation if annotation is not inspect.Parameter.empty else None
    if kind is None and default not in (inspect.Parameter.empty, None):
        kind = type(default)
    if isinstance(kind, str):
        kind = {"int": int, "float": float, "bool": bool, "str": str, "Path": Path}.get(kind)
    origin = typing.get_origin(kind)
    if origin is not None and type(None) in typing.get_args(kind):  # X | None
        if raw.lower() in ("none", "null", ""):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in (int, float, str):
            return kind(raw)
        if kind is not None and isinstance(kind, type) and issubclass(kind, os.PathLike):
            return Path(raw)
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    except ValueError:
        shown = getattr(kind, "__name__", str(kind))
        raise InvalidArgument(
            f"parameter {name!r} value {raw!r} is not a valid {shown}",
            hint=f"pass --param {name}=<{shown}>",
        ) from None


def _param_text(value: Any) -> str | None:
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    if isinstance(value, list | tuple | dict):
        try:
            text: str = json.dumps(value, default=str)
            return text[:5000]
        except (TypeError, ValueError):
            return None
    return None


# -- the pipeline -----------------------------------------------------------------------


class Pipeline:
    """A DAG of steps, wired by calling them in ``func`` (see the module docs).

    Use it as ``@gyre.Pipeline``, ``@gyre.Pipeline(name="churn", experiment="churn")`` or
    ``Pipeline(func)``. Runs are tracked in ``experiment`` (default: the name).
    """

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        experiment: str | None = None,
        cache: bool = True,
    ) -> None:
        self.func = func
        self._name = name
        self.experiment = experiment
        self.cache = cache

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        return self.func.__name__ if self.func is not None else "pipeline"

    def __call__(self, func: Callable[..., Any]) -> Pipeline:
        if self.func is not None:
            raise InvalidArgument(
                f"pipeline {self.name!r} is run with .run(params=...), not called",
                hint=f"{self.name}.run(params={{...}}), or `gyre pipeline run module:{self.name}`",
            )
        self.func = func
        return self

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"

    # -- parameters and wiring ----------------------------------------------------------

    def _func(self) -> Callable[..., Any]:
        if self.func is None:
            raise InvalidArgument(f"pipeline {self.name!r} has no function")
        return self.func

    def parameters(self) -> dict[str, Any]:
        """Parameter names and their defaults (``inspect.Parameter.empty``: required)."""
        sig = inspect.signature(self._func())
        return {n: p.default for n, p in sig.parameters.items()}

    def parse_params(self, raw: dict[str, str]) -> dict[str, Any]:
        """Typed values for ``--param k=v`` strings, by annotation or default's type."""
        func = self._func()
        sig = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable annotations: fall back to the defaults' types
            hints = {}
        out: dict[str, Any] = {}
        for key, text in raw.items():
            p = sig.parameters.get(key)
            if p is None:
                continue  # reported by _bind, with the list of known names
            out[key] = _coerce(key, text, hints.get(key, p.annotation), p.default)
        for key in raw.keys() - out.keys():
            out[key] = raw[key]  # unknown: _bind names it
        return out

    def _bind(self, params: dict[str, Any] | None) -> dict[str, Any]:
        func = self._func()
        sig = inspect.signature(func)
        params = dict(params or {})
        unknown = [k for k in params if k not in sig.parameters]
        if unknown:
            raise InvalidArgument(
                f"pipeline {self.name!r} has no parameter {unknown[0]!r}",
                hint=f"its parameters: {', '.join(sig.parameters) or 'none'}",
            )
        try:
            bound = sig.bind(**params)
        except TypeError as exc:
            raise InvalidArgument(
                f"pipeline {self.name!r}: {exc}", hint="pass it with --param NAME=VALUE"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def dag(self, params: dict[str, Any] | None = None) -> dict[str, list[str]]:
        """Each step's upstream steps, as wired with ``params`` (nothing runs)."""
        nodes, _ = self._wire(self._bind(params))
        return {name: list(node.upstream) for name, node in nodes.items()}

    def _wire(self, params: dict[str, Any]) -> tuple[dict[str, Node], Any]:
        with tracing() as tracer:
            returned = self._func()(**params)
        if not tracer.nodes:
            raise InvalidArgument(
                f"pipeline {self.name!r} calls no steps",
                hint="decorate the functions it calls with @gyre.step",
            )
        return tracer.nodes, returned

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        params: dict[str, Any] | None = None,
        *,
        executor: str | Executor | None = None,
        address: str | None = None,
        cache: bool | None = None,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        max_workers: int | None = None,
        raise_on_failure: bool = True,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> PipelineResult:
        """Run the pipeline; a :class:`PipelineResult`.

        ``executor``: ``"local"`` (threads, default), ``"processes"``, ``"ray"`` (with
        ``address``) or an :class:`Executor`. ``cache=False`` re-runs every step.
        When a step fails (after its retries) its dependents are skipped, steps that do not
        depend on it still run, the run is FAILED, and — unless ``raise_on_failure=False``
        — what the step raised is re-raised (``PipelineResult.raise_for_status``).
        ``on_step`` is called in this thread as each step ends.
        """
        bound = self._bind(params)
        nodes, returned = self._wire(bound)
        literals = {
            name: {
                arg: canonical_literal(name, arg, v)
                for arg, v in node.args.items()
                if not isinstance(v, Output)
            }
            for name, node in nodes.items()
        }
        returned_refs = _returned_handles(returned)
        if tracking_uri is None:
            from gyre.tracking import get_tracking_uri

            tracking_uri = get_tracking_uri()
        owned = not (executor is not None and not isinstance(executor, str))
        chosen = get_executor(executor, address=address, max_workers=max_workers)
        client = Client(tracking_uri)
        try:
            run = _Run(
                self,
                client,
                chosen,
                nodes,
                literals,
                bound,
                use_cache=self.cache if cache is None else cache,
                experiment=experiment or self.experiment or self.name,
                on_step=on_step,
            )
            result = run.execute(returned_refs)
        finally:
            if owned:
                chosen.close()
            client.close()
        if raise_on_failure:
            result.raise_for_status()
        return result


def _returned_handles(returned: Any) -> dict[str, Output]:
    if returned is None:
        return {}
    if isinstance(returned, Output):
        return {returned.name if returned.name != "output" else returned.node: returned}
    if isinstance(returned, dict):
        return {str(k): v for k, v in returned.items() if isinstance(v, Output)}
    if isinstance(returned, tuple | list):
        return {str(i): v for i, v in enumerate(returned) if isinstance(v, Output)}
    raise InvalidArgument(
        f"a pipeline function returned a {type(returned).__name__!r}",
        hint="return step outputs: one, a tuple of them, or a dict name -> output",
    )


@dataclass(slots=True)
class _Running:
    node: str
    run_id: str
    attempt: int
    started: float
    task: StepTask


class _Run:
    """One execution of a pipeline: the scheduling loop and all tracking writes."""

    def __init__(
        self,
        pipeline: Pipeline,
        client: Client,
        executor: Executor,
        nodes: dict[str, Node],
        literals: dict[str, dict[str, Any]],
        params: dict[str, Any],
        *,
        use_cache: bool,
        experiment: str,
        on_step: Callable[[StepResult], None] | None,
    ) -> None:
        self.pipeline = pipeline
        self.client = client
        self.executor = executor
        self.nodes = nodes
        self.literals = literals
        self.params = params
        self.use_cache = use_cache
        self.experiment = experiment
        self.on_step = on_step
        self.results: dict[str, StepResult] = {}
        self.fingerprints: dict[str, CodeFingerprint] = {}
        self.failed: str | None = None
        self.run_id = ""
        self.experiment_id = ""
        self.commit: str | None = None

    # -- tracking ----------------------------------------------------------------------

    def _start_pipeline_run(self) -> None:
        from gyre.tracking import active_run
        from gyre.tracking._context import source_tags

        parent = active_run()
        run = self.client.create_run(
            self.experiment,
            name=self.pipeline.name,
            tags={
                TAG_PIPELINE: self.pipeline.name,
                TAG_KIND: "pipeline",
                "gyre.pipeline.executor": self.executor.name,
                "gyre.pipeline.cache": str(self.use_cache).lower(),
            },
            parent_run_id=parent.run_id if parent is not None else None,
        )
        self.run_id, self.experiment_id = run.run_id, run.experiment_id
        tags = source_tags()
        self.commit = tags.get("gyre.source.git.commit")
        self.client.set_tags(self.run_id, tags)
        texts = {k: t for k, v in self.params.items() if (t := _param_text(v)) is not None}
        if texts:
            self.client.log_params(self.run_id, texts)
        for node in self.nodes.values():
            for arg, value in node.args.items():
                if _is_dataset(value):
                    self.client.log_dataset(self.run_id, value, arg, context="input")

    def _lookup(self, key: str) -> tuple[str, dict[str, OutputRef]] | None:
        page = self.client.store.search_runs(
            [self.experiment_id],
            filter=f"tags.{TAG_CACHE_KEY} = '{key}' and status = 'FINISHED'",
            order_by=["start_time DESC"],
            max_results=5,
        )
        store = self.client.artifact_store
        for run in page.items:
            raw = run.tags.get(TAG_OUTPUTS)
            if not raw:
                continue
            try:
                outputs = {k: OutputRef.from_dict(v) for k, v in json.loads(raw).items()}
            except (ValueError, KeyError, TypeError):
                continue
            if all(store.has_blob(d) for ref in outputs.values() for d, _ in ref.entries.values()):
                return run.run_id, outputs
        return None

    def _create_step_run(self, name: str, key: str, fingerprint: str) -> str:
        node = self.nodes[name]
        run = self.client.create_run(
            experiment_id=self.experiment_id,
            name=name,
            parent_run_id=self.run_id,
            tags={
                "gyre.pipeline.step": name,
                "gyre.pipeline.run_id": self.run_id,
                TAG_PIPELINE: self.pipeline.name,
                TAG_KIND: "step",
                "gyre.step.function": node.step.key,
                "gyre.step.code": fingerprint,
                "gyre.step.upstream": json.dumps(node.upstream),  # the DAG's edges
                TAG_CACHE_KEY: key,
            },
        )
        texts = {
            arg: t
            for arg, v in node.args.items()
            if not isinstance(v, Output) and (t := _param_text(v)) is not None
        }
        if texts:
            self.client.log_params(run.run_id, texts)
        for arg, value in node.args.items():
            if isinstance(value, Output):
                ref = self.results[value.node].outputs[value.name]
                dataset = ref.meta.get("dataset")
                if ref.kind == "dataframe" and isinstance(dataset, dict):
                    self.client.store.log_inputs(run.run_id, Dataset.from_dict(dataset), "input")
            elif _is_dataset(value):
                self.client.log_dataset(run.run_id, value, arg, context="input")
        return run.run_id

    def _finish_step(
        self, name: str, run_id: str, outputs: dict[str, OutputRef], result: StepResult
    ) -> None:
        self.client.set_tags(
            run_id,
            {
                TAG_OUTPUTS: json.dumps({k: v.to_dict() for k, v in outputs.items()}),
                TAG_CACHE_HIT: str(result.cache_hit).lower(),
                "gyre.step.attempts": str(result.attempts),
                **({TAG_CACHED_FROM: result.cached_from} if result.cached_from else {}),
            },
        )
        numbers = {
            out: float(ref.meta["number"])
            for out, ref in outputs.items()
            if isinstance(ref.meta.get("number"), int | float)
        }
        if numbers:
            self.client.log_metrics(run_id, numbers)
            self.client.log_metrics(
                self.run_id,
                {f"{name}.{k}" if k != "output" else name: v for k, v in numbers.items()},
            )
        self.client.set_terminated(run_id, RunStatus.FINISHED)

    def _done(self, result: StepResult) -> None:
        self.results[result.name] = result
        if result.status == "FAILED" and self.failed is None:
            self.failed = result.name
        if self.on_step is not None:
            self.on_step(result)

    # -- scheduling --------------------------------------------------------------------

    def _start(self, name: str, running: dict[Future[TaskResult], _Running]) -> None:
        node = self.nodes[name]
        started = time.perf_counter()
        step_obj = node.step
        fp = self.fingerprints.get(step_obj.key)
        if fp is None:
            fp = self.fingerprints[step_obj.key] = code_fingerprint(step_obj.func)
        inputs = {
            arg: self.results[v.node].outputs[v.name]
            for arg, v in node.args.items()
            if isinstance(v, Output)
        }
        key = cache_key(
            step_obj.key,
            fp.digest,
            self.literals[name],
            {arg: ref.digest for arg, ref in inputs.items()},
            node.outputs,
        )
        hit = self._lookup(key) if self.use_cache and step_obj.cache else None
        run_id = self._create_step_run(name, key, fp.digest)
        if step_obj is _register_step:
            self._register(name, run_id, inputs["model"], str(node.args["name"]), started)
            return
        if hit is not None:
            cached_from, outputs = hit
            entries = {p: r for ref in outputs.values() for p, r in ref.blob_refs().items()}
            self.client.artifact_store.append_manifest(f"runs/{run_id}", entries)
            result = StepResult(
                name,
                "FINISHED",
                cache_hit=True,
                attempts=0,
                run_id=run_id,
                outputs=outputs,
                cached_from=cached_from,
            )
            self._finish_step(name, run_id, outputs, result)
            result.duration = time.perf_counter() - started
            self._done(result)
            return
        task = StepTask(
            node=name,
            func=step_obj.func,
            literals={a: v for a, v in node.args.items() if not isinstance(v, Output)},
            inputs=inputs,
            outputs=node.outputs,
            run_id=run_id,
            artifact_uri=self.client.artifact_uri,
            model_metadata=self._model_metadata(run_id),
            modules=frozenset(fp.modules),
        )
        self._submit(_Running(name, run_id, 1, started, task), running)

    def _model_metadata(self, run_id: str) -> dict[str, Any]:
        run = self.client.store.get_run(run_id)
        return {
            "run_id": run_id,
            "experiment_id": self.experiment_id,
            "pipeline_run_id": self.run_id,
            "git_commit": self.commit,
            "datasets": [
                {"name": i.dataset.name, "context": i.context, "digest": i.dataset.digest}
                for i in run.inputs
            ],
        }

    def _submit(self, item: _Running, running: dict[Future[TaskResult], _Running]) -> None:
        try:
            future = self.executor.submit(item.task)
        except GyreError as exc:
            failed: Future[TaskResult] = Future()
            failed.set_exception(exc)
            future = failed
        running[future] = item

    def _register(
        self, name: str, run_id: str, model: OutputRef, model_name: str, started: float
    ) -> None:
        from gyre.pipelines._artifacts import save_output
        from gyre.registry import Registry

        try:
            if model.kind != "model":
                raise InvalidArgument(
                    f"register() got output {model.step}.{model.name}, a {model.kind}, not a model",
                    hint="pass the output of the step that returns the trained model",
                )
            registry = Registry(self.client.tracking_uri, self.client.artifact_uri)
            try:
                try:
                    existing = [v for v in registry.versions(model_name) if v.source == model.uri]
                except NotFound:
                    existing = []
                version = existing[0] if existing else registry.register_model(
                    model.uri, model_name, tags={"gyre.pipeline.run_id": self.run_id}
                )  # fmt: skip
            finally:
                registry.close()
            value = {"name": version.name, "version": version.version}
            ref = save_output(self.client.artifact_store, run_id, name, "output", value)
            self.client.set_tags(run_id, {"gyre.registered": f"{version.name}/{version.version}"})
            self.client.set_tags(
                self.run_id, {"gyre.pipeline.registered": f"{version.name}/{version.version}"}
            )
            result = StepResult(
                name, "FINISHED", attempts=1, run_id=run_id, outputs={"output": ref}
            )
            self._finish_step(name, run_id, {"output": ref}, result)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.client.set_terminated(run_id, RunStatus.FAILED, message)
            result = StepResult(
                name, "FAILED", attempts=1, run_id=run_id, error=message, exception=exc
            )
        result.duration = time.perf_counter() - started
        self._done(result)

    def _complete(
        self,
        future: Future[TaskResult],
        item: _Running,
        running: dict[Future[TaskResult], _Running],
    ) -> None:
        exc = future.exception()
        if exc is None:
            task_result = future.result()
            result = StepResult(
                item.node,
                "FINISHED",
                attempts=item.attempt,
                run_id=item.run_id,
                outputs=task_result.outputs,
            )
            self._finish_step(item.node, item.run_id, task_result.outputs, result)
            result.duration = time.perf_counter() - item.started
            self._done(result)
            return
        retries = self.nodes[item.node].step.retries
        message = f"{type(exc).__name__}: {exc}"
        if item.attempt <= retries and not isinstance(exc, InvalidArgument | KeyboardInterrupt):
            self.client.set_tag(item.run_id, f"gyre.step.attempt.{item.attempt}.error", message)
            retry = _Running(item.node, item.run_id, item.attempt + 1, item.started, item.task)
            self._submit(retry, running)
            return
        self.client.set_tags(item.run_id, {"gyre.step.attempts": str(item.attempt)})
        self.client.set_terminated(item.run_id, RunStatus.FAILED, message)
        self._done(
            StepResult(
                item.node,
                "FAILED",
                attempts=item.attempt,
                run_id=item.run_id,
                error=message,
                duration=time.perf_counter() - item.started,
                exception=exc,
            )
        )

    def execute(self, returned: dict[str, Output]) -> PipelineResult:
        started = time.perf_counter()
        self._start_pipeline_run()
        pending = list(self.nodes)  # insertion order is a topological order
        running: dict[Future[TaskResult], _Running] = {}
        try:
            while pending or running:
                progressed = True
                while progressed:
                    progressed = False
                    for name in list(pending):
                        upstream = [self.results.get(u) for u in self.nodes[name].upstream]
                        if any(u is not None and u.status != "FINISHED" for u in upstream):
                            pending.remove(name)
                            self._done(StepResult(name, "SKIPPED"))
                            progressed = True
                        elif all(u is not None for u in upstream):
                            pending.remove(name)
                            self._start(name, running)
                            progressed = True
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    self._complete(future, running.pop(future), running)
        except BaseException as exc:
            for future in running:
                future.cancel()
            for item in running.values():
                self.client.set_terminated(item.run_id, RunStatus.KILLED, type(exc).__name__)
            interrupted = isinstance(exc, KeyboardInterrupt)
            self.client.set_terminated(
                self.run_id,
                RunStatus.KILLED if interrupted else RunStatus.FAILED,
                f"{type(exc).__name__}: {exc}",
            )
            raise
        return self._finish(returned, time.perf_counter() - started)

    def _finish(self, returned: dict[str, Output], seconds: float) -> PipelineResult:
        error = None
        if self.failed is not None:
            error = f"step {self.failed!r} failed: {self.results[self.failed].error}"
        summary = [
            {
                "name": r.name,
                "status": r.status,
                "cache_hit": r.cache_hit,
                "run_id": r.run_id,
                "duration": round(r.duration, 3) if math.isfinite(r.duration) else None,
            }
            for r in self.results.values()
        ]
        self.client.set_tags(
            self.run_id,
            {
                "gyre.pipeline.steps": json.dumps(summary),
                "gyre.pipeline.cache_hits": str(sum(r.cache_hit for r in self.results.values())),
            },
        )
        status = RunStatus.FAILED if error else RunStatus.FINISHED
        self.client.set_terminated(self.run_id, status, error)
        outputs = {
            key: self.results[h.node].outputs[h.name]
            for key, h in returned.items()
            if h.node in self.results and h.name in self.results[h.node].outputs
        }
        ordered = {name: self.results[name] for name in self.nodes if name in self.results}
        return PipelineResult(
            pipeline=self.pipeline.name,
            run_id=self.run_id,
            status=status.value,
            steps=ordered,
            outputs=outputs,
            duration=seconds,
            executor=self.executor.name,
            artifact_uri=self.client.artifact_uri,
            error=error,
            failed_step=self.failed,
        )


def _is_dataset(value: Any) -> bool:
    if isinstance(value, os.PathLike):
        return True
    cls = type(value)
    root = cls.__module__.split(".", 1)[0]
    return (root, cls.__name__) in (("pandas", "DataFrame"), ("numpy", "ndarray"))
