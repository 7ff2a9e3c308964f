"""manifest.json in types: what an index folder says of itself.

`Manifest` is a TypedDict, as report.json's `Report` is: the file is the plain JSON object
it always was (manifests written by earlier versions read unchanged, keys this version
does not know are kept), while mypy checks every key a writer sets and a reader looks up.
`manifest_from_dict` checks what every reader relies on; store.IndexStore reads and writes
the file.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict, cast

from imgsim_index.defaults import IDENTITY_KEYS
from imgsim_index.errors import IndexFormatError


class Manifest(TypedDict, total=False):
    format_version: Required[int]  # store.FORMAT_VERSION of the writer
    # the model identity (defaults.IDENTITY_KEYS): vectors of another identity are refused
    model: Required[str]
    dim: Required[int]
    weights_id: str  # digest of the weights, or import_vectors.IMPORTED_WEIGHTS
    preprocessing: dict[str, Any]
    weights_source: str  # where the weights were read from (a hint for the next build)
    created_at: str
    updated_at: str
    counts: dict[str, int]  # the catalog's counts when the manifest was written


def manifest_from_dict(data: Any, path: str) -> Manifest:
    """A manifest read from JSON, typed: IndexFormatError when a key every reader relies
    on is missing or of another type."""
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path} holds no JSON object; build the index again")
    for key, kind in (("format_version", int), ("model", str), ("dim", int)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise IndexFormatError(f"{path} has no valid {key!r} ({data.get(key)!r}); "
                                   "build the index again")
    return cast(Manifest, data)


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """The manifest as the JSON object written to manifest.json."""
    return dict(manifest)


def identity_of(manifest: Manifest) -> dict[str, Any]:
    """The manifest's model identity (defaults.IDENTITY_KEYS; None for a key it lacks)."""
    raw = manifest_to_dict(manifest)
    return {k: raw.get(k) for k in IDENTITY_KEYS}


__all__ = ["Manifest", "identity_of", "manifest_from_dict", "manifest_to_dict"]
