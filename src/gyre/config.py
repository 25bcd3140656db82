"""Settings, declared once as data.

Precedence: command-line flag > ``GYRE_*`` environment variable > ``gyre.toml`` > default.
:func:`resolve` remembers which source won, ``gyre config show`` prints it, and the docs and
a test read :data:`SETTINGS` so nothing goes undocumented. Secrets are masked in every repr.

``gyre.toml`` is looked for in the current directory, then in ``GYRE_HOME``; it holds a
``[gyre]`` table whose keys are the setting names in lower case without the ``GYRE_``
prefix (``tracking_uri = "postgresql://..."``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gyre.errors import InvalidArgument

__all__ = [
    "SETTINGS",
    "Resolved",
    "Setting",
    "artifact_uri_for",
    "get",
    "get_int",
    "get_positive_float",
    "gyre_home",
    "resolve",
    "resolve_all",
]

Source = Literal["flag", "env", "gyre.toml", "default"]


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str
    secret: bool = False

    @property
    def toml_key(self) -> str:
        return self.env.removeprefix("GYRE_").lower()


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in [
        Setting("GYRE_HOME", "~/.gyre", "Folder for the embedded database, artifacts and spools."),
        Setting(
            "GYRE_TRACKING_URI",
            "sqlite:///{GYRE_HOME}/gyre.db",
            "Metadata store: sqlite:///path, postgresql://user@host/db, or http(s)://server.",
        ),
        Setting(
            "GYRE_ARTIFACT_URI",
            "{GYRE_HOME}/artifacts",
            "Artifact store: a folder path, file://path, s3://bucket/prefix, or http(s)://server "
            "(defaults to the tracking server when the tracking URI is http(s)).",
        ),
        Setting("GYRE_TOKEN", "", "API token sent to a gyre server (Bearer).", secret=True),
        Setting(
            "GYRE_S3_ENDPOINT_URL",
            "",
            "Endpoint of an S3-compatible store (e.g. http://127.0.0.1:8333); empty for AWS.",
        ),
        Setting("GYRE_EXPERIMENT", "Default", "Experiment used when start_run names none."),
        Setting(
            "GYRE_FLUSH_INTERVAL_MS",
            "200",
            "How often the background writer writes buffered metrics, in milliseconds.",
        ),
        Setting(
            "GYRE_SPOOL_DIR",
            "{GYRE_HOME}/predictions/spool",
            "Where `gyre serve` spools its prediction log before compacting it (`--spool-dir`).",
        ),
        Setting(
            "GYRE_SPOOL_SYNC_MS",
            "100",
            "Prediction-log sync interval: an answered prediction is on disk (fsync'd) at most "
            "this many milliseconds after its response.",
        ),
        Setting(
            "GYRE_COMPACT_INTERVAL_S",
            "30",
            "Seconds between compactions of the prediction spool into Parquet segments "
            "(queries see what was compacted).",
        ),
        Setting(
            "GYRE_COMPACT_NICE",
            "10",
            "CPU niceness `gyre serve` adds to its spool compactor process, so that it yields "
            "to the workers on a busy machine; 0 for the workers' priority.",
        ),
        Setting(
            "GYRE_FAST_PREDICT",
            "1",
            "0 turns off the numpy fast path of scikit-learn linear and HistGradientBoosting "
            "models (checked bit for bit against the estimator before use).",
        ),
        Setting(
            "GYRE_HTTP_RETRY_S",
            "30",
            "Seconds a call to a gyre server (an http:// tracking or artifact URI) keeps "
            "retrying while the server is unreachable or answers 502/503/504; 0 fails at once.",
        ),
        Setting("GYRE_HOST", "127.0.0.1", "Address `gyre server` listens on."),
        Setting("GYRE_PORT", "5050", "Port `gyre server` listens on."),
        Setting(
            "GYRE_MAX_REQUEST_BYTES",
            "33554432",
            "Largest JSON request body `gyre server` accepts (artifact uploads stream and are "
            "not limited by this).",
        ),
        Setting(
            "GYRE_SERVING_URLS",
            "",
            "Prediction servers (`gyre serve` base URLs, comma-separated) whose /metrics the "
            "dashboard reads for live request and error counts per version.",
        ),
        Setting(
            "GYRE_WEBHOOK_ALLOWLIST",
            "",
            "Hosts monitors may send alert webhooks to, comma-separated (`hooks.slack.com`, "
            "`alerts.internal:8443`); empty allows none. Redirects are never followed.",
        ),
    ]
}


@dataclass(frozen=True, slots=True)
class Resolved:
    name: str
    value: str
    source: Source
    secret: bool

    def __repr__(self) -> str:
        shown = "****" if self.secret and self.value else self.value
        return f"Resolved({self.name}={shown!r}, source={self.source!r})"

    @property
    def display(self) -> str:
        return "****" if self.secret and self.value else self.value


def _toml_values() -> dict[str, str]:
    candidates = [Path.cwd() / "gyre.toml"]
    home = os.environ.get("GYRE_HOME")
    if home:
        candidates.append(Path(home).expanduser() / "gyre.toml")
    for path in candidates:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise InvalidArgument(
                    f"{str(path)!r} is not valid TOML: {exc}",
                    hint="fix the file or remove it",
                ) from None
            table = data.get("gyre", {})
            if not isinstance(table, dict):
                raise InvalidArgument(f"{str(path)!r}: [gyre] must be a table")
            return {str(k): str(v) for k, v in table.items()}
    return {}


def resolve(name: str, flag: str | None = None) -> Resolved:
    """The value of setting ``name`` (e.g. ``"GYRE_TRACKING_URI"``) and where it came from."""
    try:
        setting = SETTINGS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown setting {name!r}", hint=f"known settings: {', '.join(SETTINGS)}"
        ) from None
    value: str
    source: Source
    if flag is not None:
        value, source = flag, "flag"
    elif name in os.environ:
        value, source = os.environ[name], "env"
    elif setting.toml_key in (toml := _toml_values()):
        value, source = toml[setting.toml_key], "gyre.toml"
    else:
        value, source = setting.default, "default"
    if "{GYRE_HOME}" in value:
        value = value.replace("{GYRE_HOME}", str(gyre_home()))
    return Resolved(name, value, source, setting.secret)


def resolve_all(flags: dict[str, str | None] | None = None) -> list[Resolved]:
    flags = flags or {}
    return [resolve(name, flags.get(name)) for name in SETTINGS]


def get(name: str, flag: str | None = None) -> str:
    return resolve(name, flag).value


def gyre_home() -> Path:
    raw = os.environ.get("GYRE_HOME") or _toml_values().get("home") or SETTINGS["GYRE_HOME"].default
    return Path(raw).expanduser().resolve()


def get_int(name: str) -> int:
    resolved = resolve(name)
    try:
        return int(resolved.value)
    except ValueError:
        raise InvalidArgument(
            f"{name}={resolved.value!r} (from {resolved.source}) is not a whole number"
        ) from None


def get_positive_float(name: str, *, zero: bool = False) -> float:
    """Setting ``name`` as a finite number above 0 (``zero``: or 0); InvalidArgument
    naming the value and where it came from otherwise."""
    resolved = resolve(name)
    try:
        value = float(resolved.value)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise InvalidArgument(
            f"{name}={resolved.value!r} (from {resolved.source}) is not a "
            + ("number of 0 or more" if zero else "positive number"),
            hint=f"e.g. {name}={SETTINGS[name].default}",
        )
    return value


def artifact_uri_for(tracking_uri: str, flag: str | None = None) -> str:
    """The artifact store to use with ``tracking_uri``: GYRE_ARTIFACT_URI when it was set
    anywhere; otherwise a remote tracking server also serves the artifacts."""
    resolved = resolve("GYRE_ARTIFACT_URI", flag)
    scheme = tracking_uri.split(":", 1)[0].lower()
    if resolved.source == "default" and scheme in ("http", "https"):
        return tracking_uri
    return resolved.value
