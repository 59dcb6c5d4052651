"""The gallery: enrolled persons and their face embeddings, searched 1:N.

- :mod:`.backend`: the store interface, and :func:`open_store`, which picks a backend from
  ``--db`` (a path: SQLite; ``postgresql://...``: PostgreSQL).
- :mod:`.store`: SQLite storage (WAL, one transaction per enrolment, versioned schema).
- :mod:`.index`: exact (NumPy) and approximate (HNSW, FAISS) search kept in step with it.
- :mod:`.postgres`: PostgreSQL storage, searched in the database with pgvector (HNSW).
- :mod:`.transfer`: copying a gallery between backends, counts checked.
- :mod:`.gallery`: enrolment and identification from images, shared by the CLI and service.
- :mod:`.pipeline`: the face encoder (detector + ONNX embedder) a gallery is searched with.

```python
from mobileface.gallery import Gallery
from mobileface.gallery.pipeline import open_encoder

with Gallery.open("people.db", open_encoder("model.onnx")) as gallery:
    gallery.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    print(gallery.identify("who.jpg", top_k=3).matches)
```

Importing this package is cheap (submodules load on first use); nothing here imports PyTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Enrolment": "gallery",
    "FaceEncoder": "gallery",
    "Gallery": "gallery",
    "Identification": "gallery",
    "ImageSource": "gallery",
    "Match": "gallery",
    "ReembedReport": "gallery",
    "DEFAULT_APPROX_THRESHOLD": "index",
    "ExactIndex": "index",
    "HNSWIndex": "index",
    "HNSWParams": "index",
    "ModelIndex": "index",
    "PersonHit": "index",
    "SCHEMA_VERSION": "store",
    "FaceRecord": "store",
    "GalleryStore": "store",
    "ModelKey": "store",
    "ModelMismatchError": "store",
    "NewFace": "store",
    "Person": "store",
    "UnknownPersonError": "store",
    "DatabaseUnavailableError": "backend",
    "GalleryBackend": "backend",
    "open_store": "backend",
    "model_search": "backend",
    "PostgresStore": "postgres",
    "copy_gallery": "transfer",
    "Encoder": "pipeline",
    "open_encoder": "pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
