"""Bundles: a whole model package in one file, for machines with no tracking server.

A bundle (``model.gyre``) is a zip archive::

    bundle.json              {"format": "gyre-bundle", "format_version": 1,
                              "model": {"name": "churn", "version": 3} or null,
                              "manifest_sha256": "<sha256 of model/gyre-model.yaml>"}
    model/gyre-model.yaml    the package's manifest: the sha256 of every other file
    model/...                every file the manifest lists (model, requirements, reference
                             profile, input example)

Writing is deterministic (members sorted, fixed timestamps and modes): the same package
gives the same bytes. Reading trusts nothing in the archive: a member whose name would leave
the extraction folder (``..``, an absolute path, a drive letter, a backslash) or that is a
link is refused by name, the manifest must have the digest bundle.json names, and every file
the digest its manifest records. A bundle is extracted once per machine, into the
content-addressed folder ``$GYRE_HOME/cache/bundles/<manifest sha256>``; no tracking server
and no network are involved.

>>> info = write_bundle("churn-model", "churn.gyre", name="churn", version=3)  # doctest: +SKIP
>>> load_model("churn.gyre").predict(rows)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gyre import config
from gyre.errors import IntegrityError, InvalidArgument, NotFound
from gyre.models._manifest import MANIFEST_FILE, ModelManifest
from gyre.models._package import _sha256, _verify_files

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_INFO_FILE",
    "BundleInfo",
    "extract_bundle",
    "read_bundle_info",
    "verify_package",
    "write_bundle",
]

BUNDLE_FORMAT = "gyre-bundle"
BUNDLE_FORMAT_VERSION = 1
BUNDLE_INFO_FILE = "bundle.json"
PACKAGE_DIR = "model"

# Zip's epoch: members carry no build time, so rebuilding gives identical bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_DRIVE = re.compile(r"^[A-Za-z]:")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What ``bundle.json`` says: the manifest's sha256 and, if known, name and version."""

    manifest_sha256: str
    model_name: str | None = None
    model_version: int | None = None
    format_version: int = BUNDLE_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        model = None
        if self.model_name is not None:
            model = {"name": self.model_name, "version": self.model_version}
        return {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "model": model,
            "manifest_sha256": self.manifest_sha256,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> BundleInfo:
        hint = "the file is not a gyre bundle, or it was damaged"
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise InvalidArgument(f"{where}: {BUNDLE_INFO_FILE} is not a gyre bundle's", hint=hint)
        version = doc.get("format_version")
        if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
            raise InvalidArgument(
                f"{where}: bundle format_version {version!r} is not supported "
                f"(this gyre reads up to {BUNDLE_FORMAT_VERSION})",
                hint="upgrade gyreml",
            )
        digest = doc.get("manifest_sha256")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise InvalidArgument(f"{where}: manifest_sha256 {digest!r} is not a sha256", hint=hint)
        model = doc.get("model") or {}
        if not isinstance(model, dict):
            raise InvalidArgument(f"{where}: model {model!r} is not a mapping", hint=hint)
        name, number = model.get("name"), model.get("version")
        return cls(
            manifest_sha256=digest,
            model_name=str(name) if name is not None else None,
            model_version=int(number) if isinstance(number, int) else None,
            format_version=version,
        )


def verify_package(path: str | os.PathLike[str]) -> ModelManifest:
    """The manifest of the package folder at ``path``, after checking every file's digest.

    Raises NotFound without a manifest, IntegrityError naming a file that differs from it.
    Nothing is deserialised: this is cheap and safe on packages of unknown origin.

    >>> verify_package("churn-model").flavor  # doctest: +SKIP
    'sklearn'
    """
    root = Path(path)
    if not (root / MANIFEST_FILE).is_file():
        raise NotFound(
            f"no model package at {str(root)!r} ({MANIFEST_FILE} not found)",
            hint="pass the folder save_model wrote",
        )
    manifest = ModelManifest.read(root / MANIFEST_FILE)
    _verify_files(root, manifest)
    return manifest


def write_bundle(
    package: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: int | None = None,
) -> BundleInfo:
    """Write the package folder ``package`` (verified first) as one bundle file ``dest``.

    ``name`` and ``version`` are recorded when the package came from the registry. The
    file appears only when complete.

    >>> write_bundle("churn-model", "churn.gyre", name="churn", version=3)  # doctest: +SKIP
    BundleInfo(manifest_sha256='5d41…', model_name='churn', model_version=3, format_version=1)
    """
    root = Path(package)
    manifest = verify_package(root)
    info = BundleInfo(_sha256(root / MANIFEST_FILE), name, version)
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            body = json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n"
            with zf.open(_member(BUNDLE_INFO_FILE, len(body.encode())), "w") as out:
                out.write(body.encode())
            for rel in sorted([MANIFEST_FILE, *manifest.files]):
                file = root / rel
                member = _member(f"{PACKAGE_DIR}/{rel}", file.stat().st_size)
                with file.open("rb") as src, zf.open(member, "w") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return info


def _member(name: str, size: int) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    member.compress_type = zipfile.ZIP_DEFLATED
    member.create_system = 3  # unix, whatever machine writes it
    member.external_attr = (stat.S_IFREG | 0o644) << 16
    member.file_size = size  # lets zipfile choose zip64 up front for big files
    return member


def read_bundle_info(path: str | os.PathLike[str]) -> BundleInfo:
    """``bundle.json`` of the bundle at ``path`` (nothing is extracted).

    >>> read_bundle_info("churn.gyre").model_version  # doctest: +SKIP
    3
    """
    with _open_zip(Path(path)) as zf:
        return _info(zf, str(path))


def extract_bundle(path: str | os.PathLike[str]) -> Path:
    """The verified package folder of the bundle at ``path``, extracted on first use.

    The folder is ``$GYRE_HOME/cache/bundles/<manifest sha256>``; it appears only once
    every file matches its digest, so a later call returns it at once.
    Raises InvalidArgument naming a member that would escape the folder or is a link, and
    IntegrityError when the contents differ from their recorded digests.

    >>> load_model(extract_bundle("churn.gyre"))  # doctest: +SKIP
    """
    source = Path(path)
    where = str(source)
    with _open_zip(source) as zf:
        members = _checked_members(zf, where)
        info = _info(zf, where)
        manifest_member = members.get(f"{PACKAGE_DIR}/{MANIFEST_FILE}")
        if manifest_member is None:
            raise InvalidArgument(
                f"bundle {where!r} has no {PACKAGE_DIR}/{MANIFEST_FILE}",
                hint="the file is not a gyre bundle, or it was damaged",
            )
        actual = hashlib.sha256(_read(zf, manifest_member, where)).hexdigest()
        if actual != info.manifest_sha256:
            raise IntegrityError(
                f"bundle {where!r}: the manifest's sha256 is {actual[:12]}…, but "
                f"{BUNDLE_INFO_FILE} records {info.manifest_sha256[:12]}…",
                hint="the bundle was changed or damaged after it was built: build it again",
            )
        cache = config.gyre_home() / "cache" / "bundles" / actual
        if cache.is_dir():
            return cache
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{actual[:16]}-", dir=cache.parent))
        try:
            for name, member in members.items():
                if not name.startswith(f"{PACKAGE_DIR}/"):
                    continue
                _extract(zf, member, staging / name.removeprefix(f"{PACKAGE_DIR}/"), where)
            verify_package(staging)
            try:
                os.replace(staging, cache)
            except OSError:
                if not cache.is_dir():  # not a lost race with another process: a real error
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise NotFound(f"bundle {str(path)!r} does not exist", hint="check the path")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InvalidArgument(
            f"{str(path)!r} is not a gyre bundle (not a zip archive)",
            hint="build one with `gyre models build URI --target bundle --output model.gyre`",
        ) from None


def _info(zf: zipfile.ZipFile, where: str) -> BundleInfo:
    try:
        member = zf.getinfo(BUNDLE_INFO_FILE)
    except KeyError:
        raise InvalidArgument(
            f"{where!r} is not a gyre bundle ({BUNDLE_INFO_FILE} not found)",
            hint="build one with `gyre models build URI --target bundle --output model.gyre`",
        ) from None
    try:
        doc = json.loads(_read(zf, member, where))
    except ValueError as exc:
        raise InvalidArgument(
            f"{where}: {BUNDLE_INFO_FILE} is not valid JSON: {exc}", hint="the bundle is damaged"
        ) from None
    return BundleInfo.from_dict(doc, where)


def _checked_members(zf: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    """Every file member by name, after refusing any that could write outside the folder."""
    hint = "a bundle holds bundle.json and model/...; this one was not written by gyre"
    found: dict[str, zipfile.ZipInfo] = {}
    for member in zf.infolist():
        name = member.filename
        parts = name.split("/")
        if name.startswith("/") or _DRIVE.match(name) or "\\" in name or "\x00" in name:
            raise InvalidArgument(
                f"bundle {where!r}: member {name!r} would escape the extraction folder "
                "(absolute path)",
                hint=hint,
            )
        if ".." in parts:
            raise InvalidArgument(
                f"bundle {where!r}: member {name!r} would escape the extraction folder ('..')",
                hint=hint,
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise InvalidArgument(
                f"bundle {where!r}: member {name!r} is a link; bundles hold regular files only",
                hint=hint,
            )
        if member.is_dir():
            continue
        if name != BUNDLE_INFO_FILE and (
            len(parts) < 2 or parts[0] != PACKAGE_DIR or any(p in ("", ".") for p in parts[1:])
        ):
            raise InvalidArgument(
                f"bundle {where!r}: member {name!r} is outside {PACKAGE_DIR}/", hint=hint
            )
        if name in found:
            raise InvalidArgument(f"bundle {where!r}: member {name!r} appears twice", hint=hint)
        found[name] = member
    return found


# What reading a damaged member raises: a CRC mismatch or an odd header (BadZipFile), an
# unknown compression, a compressed stream that is not deflate data, or one cut short.
_UNREADABLE = (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError)


def _damaged(member: zipfile.ZipInfo, where: str, exc: Exception) -> IntegrityError:
    return IntegrityError(
        f"bundle {where!r}: member {member.filename!r} cannot be read ({exc})",
        hint="the bundle is damaged: build it again",
    )


def _read(zf: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> bytes:
    try:
        with zf.open(member) as src:
            return src.read()
    except _UNREADABLE as exc:
        raise _damaged(member, where, exc) from None


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, file: Path, where: str) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, file.open("xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (FileExistsError, NotADirectoryError):
        raise InvalidArgument(
            f"bundle {where!r}: member {member.filename!r} clashes with another member",
            hint="a bundle holds bundle.json and model/...; this one was not written by gyre",
        ) from None
    except _UNREADABLE as exc:
        raise _damaged(member, where, exc) from None
