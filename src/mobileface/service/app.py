"""The HTTP service: verification, embedding, enrolment and identification as JSON over HTTP.

``create_app(config)`` builds a FastAPI application around one gallery (a SQLite file, or a
PostgreSQL database that any number of service processes may share) and one face encoder
(detector + ONNX embedding model; no PyTorch). Endpoints under ``/v1`` need the API
key (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``) whenever authentication is on,
which it is by default on any address that is not loopback. Uploads are read into memory,
used, and dropped: photos are stored only when an enrolment asks for it (``keep_photos``).

Errors are JSON ``{"detail": "...", "code": "..."}`` with a 4xx status that says whose fault
it is: 400 unreadable image, 413 too large, 422 no face or invalid form, 404 unknown person,
401 missing or wrong key, 409 gallery of another model; and 503 ``database_unavailable``
(with ``Retry-After``) while a PostgreSQL gallery's server is down or restarting: the service
reconnects by itself once it is back.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, Security
from fastapi import UploadFile as Upload
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.status import HTTP_204_NO_CONTENT

from mobileface import __version__
from mobileface.errors import (
    DataFormatError,
    ImageError,
    MobileFaceError,
    ModelFileError,
    NoFaceError,
)
from mobileface.gallery import (
    DatabaseUnavailableError,
    FaceEncoder,
    Gallery,
    ModelMismatchError,
    UnknownPersonError,
)
from mobileface.gallery.gallery import face_dict
from mobileface.gallery.index import AGGREGATES

from . import schemas
from .config import ServiceConfig
from .limits import BodyLimitMiddleware

log = logging.getLogger("mobileface.service")

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.Error, "description": text}
    for code, text in {
        400: "unreadable or corrupt image, bad field value",
        401: "missing or wrong API key",
        413: "request body or image too large",
        422: "no face found, or a required field is missing or invalid",
        503: "the gallery's database is unavailable for now (retry after Retry-After seconds)",
    }.items()
}

_TOO_LARGE_HINTS = ("exceeds the limit", "too many pixels")
_RETRY = {"Retry-After": "1"}
_CHALLENGE = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
# Module level: FastAPI resolves the (postponed) annotations that name them in module globals.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
BEARER = HTTPBearer(auto_error=False, description="the API key as a bearer token")


def error_status(exc: MobileFaceError) -> tuple[int, str]:
    """The HTTP status and code for one of the package's errors."""
    if isinstance(exc, DatabaseUnavailableError):
        return 503, "database_unavailable"
    if isinstance(exc, UnknownPersonError):
        return 404, "unknown_person"
    if isinstance(exc, NoFaceError):
        return 422, "no_face"
    if isinstance(exc, ImageError):
        if any(hint in str(exc) for hint in _TOO_LARGE_HINTS):
            return 413, "image_too_large"
        return 400, "bad_image"
    if isinstance(exc, ModelMismatchError):
        return 409, "model_mismatch"
    if isinstance(exc, DataFormatError):
        return 400, "bad_request"
    if isinstance(exc, ModelFileError):
        return 500, "model_error"
    return 400, "bad_request"


def create_app(config: ServiceConfig, *, encoder: FaceEncoder | None = None) -> FastAPI:
    """The service for ``config``; ``encoder`` overrides the one built from ``config.model``.

    The gallery is opened and its index brought up to date here, so a bad database, model or
    setting fails now rather than on the first request.
    """
    config.check()
    _one_blas_thread()
    if encoder is None:
        from mobileface.gallery.pipeline import open_encoder

        encoder = open_encoder(
            config.model,
            detector=config.detector,
            detector_path=config.detector_path,
            threshold=config.threshold,
            workers=config.workers,
            threads=config.threads,
        )
    gallery = Gallery.open(
        config.db,
        encoder,
        index=config.index,
        max_pixels=config.max_pixels,
    )
    try:
        gallery.index.sync()
    except BaseException:
        gallery.store.close()
        raise
    pages = {name: _static(name) for name in STATIC_FILES}
    icon = favicon_ico()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        gallery.close()

    app = FastAPI(
        title="mobileface",
        version=__version__,
        description=(
            "Face verification (1:1) and identification (1:N) with MobileFaceNets. "
            "Send images as multipart/form-data. Endpoints under /v1 need the API key "
            "(header X-API-Key, or Authorization: Bearer) when authentication is on."
        ),
        lifespan=lifespan,
    )
    app.state.gallery = gallery
    app.state.config = config
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    _install_error_handlers(app)

    def require_key(
        key: Annotated[str | None, Security(API_KEY_HEADER)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        given = key or (credentials.credentials if credentials else None)
        if given is None:
            raise HTTPException(401, "API key required: send the header X-API-Key", _CHALLENGE)
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in config.api_keys):
            raise HTTPException(401, "API key not accepted", _CHALLENGE)

    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(require_key)] if config.auth_required else [],
        responses=ERROR_RESPONSES,
    )

    # -- pages and health -------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return _page(pages, "index.html")

    @app.get("/favicon.svg", include_in_schema=False)
    def icon_svg() -> Response:
        return _page(pages, "favicon.svg")

    @app.get("/favicon.ico", include_in_schema=False)
    def icon_ico() -> Response:
        return Response(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @app.get("/ui/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in pages or name == "index.html":
            raise HTTPException(404, f"no such file: {name}")
        return _page(pages, name)

    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    def healthz() -> Any:
        """Liveness: the service is up and its database answers (no key needed)."""
        try:
            gallery.store.count_persons()
        except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
            log.error("health check failed: %s", exc)
            body = {"status": "error", "version": __version__}
            if isinstance(exc, DatabaseUnavailableError):
                body["detail"] = str(exc)
            return JSONResponse(body, status_code=503, headers=_RETRY)
        return {"status": "ok", "version": __version__}

    @v1.get("/info", response_model=schemas.Info, tags=["service"])
    def info() -> Any:
        """The model in use, its threshold, gallery size and request limits."""
        stats = gallery.stats()
        return {
            "version": __version__,
            "model": gallery.model.name,
            "model_version": gallery.model.version,
            "embedding_size": int(getattr(encoder, "embedding_size", 0) or 0),
            "threshold": encoder.threshold,
            "threshold_source": str(getattr(encoder, "threshold_source", "") or ""),
            "persons": stats["persons"],
            "faces": stats["faces"],
            "index": stats["index"],
            "auth": config.auth_required,
            "limits": {
                "max_body_bytes": config.max_body_bytes,
                "max_pixels": config.max_pixels,
                "max_images": config.max_images,
                "max_top_k": config.max_top_k,
            },
            "other_models": stats["other_models"],
        }

    # -- 1:1 and embeddings -----------------------------------------------------------------

    @v1.post("/verify", response_model=schemas.VerifyResult, tags=["faces"])
    def verify(
        image_a: Annotated[Upload, File()],
        image_b: Annotated[Upload, File()],
        crops: Annotated[
            bool,
            Form(description="also return the aligned crops the model saw, as PNG data URLs"),
        ] = False,
    ) -> Any:
        """Are the faces in two photos the same person? (The largest face of each is used.)

        Each face comes with its box and 5 landmarks in the uploaded image's pixels; with
        ``crops=true``, also with the aligned crop that was embedded (a few kB each).
        """
        a = gallery.prepare(_read(image_a, "image_a"), with_crop=crops)
        b = gallery.prepare(_read(image_b, "image_b"), with_crop=crops)
        score = float(np.dot(a.embedding, b.embedding))
        threshold = encoder.threshold
        return {
            "score": round(score, 6),
            "same": None if threshold is None else bool(score >= threshold),
            "threshold": threshold,
            "model": gallery.model.name,
            "model_version": gallery.model.version,
            "faces": {"image_a": face_dict(a.face), "image_b": face_dict(b.face)},
            "crops": {"image_a": png_data_url(a.crop), "image_b": png_data_url(b.crop)}
            if crops
            else None,
        }

    @v1.post("/embed", response_model=schemas.EmbedResult, tags=["faces"])
    def embed(image: Annotated[Upload, File()]) -> Any:
        """The L2-normalised embedding of the largest face in a photo, and where it is."""
        prepared = gallery.prepare(_read(image, "image"))
        return {
            "embedding": prepared.embedding.astype(float).tolist(),
            "dim": int(prepared.embedding.size),
            "model": gallery.model.name,
            "model_version": gallery.model.version,
            "face": face_dict(prepared.face),
        }

    # -- persons ------------------------------------------------------------------------------

    @v1.post("/persons", status_code=201, response_model=schemas.EnrolResult, tags=["persons"])
    def create_person(
        name: Annotated[str, Form(min_length=1, max_length=200)],
        images: Annotated[list[Upload] | None, File(description="one or more photos")] = None,
        image: Annotated[list[Upload] | None, File(description="same as images")] = None,
        metadata: Annotated[str | None, Form(description="a JSON object")] = None,
        keep_photos: Annotated[bool, Form(description="store the photos too")] = False,
    ) -> Any:
        """Enrol a new person from one or more photos (one face each, the largest).

        All photos are checked before anything is written: one without a face fails the
        whole request and nothing is stored.
        """
        uploads = _uploads(images, image, config.max_images)
        result = gallery.enroll(
            name,
            uploads,
            metadata=_metadata(metadata),
            keep_photos=keep_photos,
        )
        return _enrolment(result)

    @v1.post("/persons/{person_id}/faces", response_model=schemas.EnrolResult, tags=["persons"])
    def add_faces(
        person_id: int,
        images: Annotated[list[Upload] | None, File(description="one or more photos")] = None,
        image: Annotated[list[Upload] | None, File(description="same as images")] = None,
        keep_photos: Annotated[bool, Form()] = False,
    ) -> Any:
        """Add photos to an enrolled person."""
        uploads = _uploads(images, image, config.max_images)
        result = gallery.enroll("", uploads, person_id=person_id, keep_photos=keep_photos)
        return _enrolment(result)

    @v1.get("/persons", response_model=schemas.PersonList, tags=["persons"])
    def list_persons(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        name: Annotated[str | None, Query(description="exact name")] = None,
    ) -> Any:
        """Enrolled persons, by id."""
        people = gallery.persons(name=name, limit=limit, offset=offset)
        return {
            "total": gallery.store.count_persons(name),
            "offset": offset,
            "persons": [p.to_dict() for p in people],
        }

    @v1.get("/persons/{person_id}", response_model=schemas.PersonOut, tags=["persons"])
    def get_person(person_id: int) -> Any:
        return gallery.person(person_id).to_dict()

    @v1.delete("/persons/{person_id}", status_code=HTTP_204_NO_CONTENT, tags=["persons"])
    def delete_person(person_id: int) -> Response:
        """Remove a person with all their faces (and photos, if any were kept)."""
        gallery.remove_person(person_id)
        return Response(status_code=HTTP_204_NO_CONTENT)

    # -- 1:N -----------------------------------------------------------------------------------

    @v1.post("/identify", response_model=schemas.IdentifyResult, tags=["faces"])
    def identify(
        image: Annotated[Upload, File()],
        top_k: Annotated[int, Form(ge=1)] = 5,
        aggregate: Annotated[str, Form(description="max or mean over a person's faces")] = "max",
    ) -> Any:
        """Who is this? Enrolled persons most like the largest face in the photo, best first."""
        if top_k > config.max_top_k:
            raise DataFormatError(f"top_k must be at most {config.max_top_k}")
        if aggregate not in AGGREGATES:
            raise DataFormatError(f"aggregate must be one of {', '.join(AGGREGATES)}")
        result = gallery.identify(_read(image, "image"), top_k, aggregate)
        return {
            "matches": [m.to_dict() for m in result.matches],
            "face": face_dict(result.face),
            "threshold": result.threshold,
            "model": result.model.name,
            "model_version": result.model.version,
        }

    app.include_router(v1)
    return app


# -- helpers --------------------------------------------------------------------------------


def _read(upload: Upload, field: str) -> tuple[str, bytes]:
    label = f"{field} ({upload.filename})" if upload.filename else field
    return label, upload.file.read()


def _uploads(
    images: list[Upload] | None, image: list[Upload] | None, limit: int
) -> list[tuple[str, bytes]]:
    files = [*(images or []), *(image or [])]
    if not files:
        raise DataFormatError("send one or more photos in the field 'images'")
    if len(files) > limit:
        raise DataFormatError(f"at most {limit} photos per request, got {len(files)}")
    return [_read(f, f"images[{i}]") for i, f in enumerate(files)]


def _metadata(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"metadata: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataFormatError("metadata: must be a JSON object")
    return value


def _enrolment(result: Any) -> dict[str, Any]:
    return {**result.person.to_dict(), "added": result.added, "duplicates": result.duplicates}


def png_data_url(image_rgb: np.ndarray | None) -> str | None:
    """``data:image/png;base64,...`` of an RGB uint8 image, for a web page to show as is."""
    if image_rgb is None:
        return None
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_rgb, np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def favicon_ico() -> bytes:
    """A small face icon as ICO (16, 32 and 48 px), drawn here rather than shipped as a binary;
    the page itself links the SVG version (``static/favicon.svg``)."""
    import io

    from PIL import Image, ImageDraw

    size = 192  # drawn large, scaled down by the ICO writer
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=36, fill=(29, 78, 137, 255))
    draw.ellipse((40, 28, 152, 164), outline=(255, 255, 255, 255), width=12)
    for x in (76, 116):
        draw.ellipse((x - 9, 78, x + 9, 96), fill=(255, 255, 255, 255))
    draw.arc((68, 92, 124, 138), start=20, end=160, fill=(255, 255, 255, 255), width=10)
    buffer = io.BytesIO()
    image.save(buffer, format="ICO", sizes=[(16, 16), (32, 32), (48, 48)])
    return buffer.getvalue()


def _one_blas_thread() -> None:
    """Requests run in parallel threads: a multi-threaded BLAS under each of them only fights
    for the same cores (the exact search is several times slower for it on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - in the serve extra
        return
    threadpool_limits(1, user_api="blas")


def _static(name: str) -> bytes:
    return resources.files("mobileface.service").joinpath("static", name).read_bytes()


def _page(pages: dict[str, bytes], name: str) -> Response:
    return Response(pages[name], media_type=STATIC_FILES[name], headers=PAGE_HEADERS)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MobileFaceError)
    async def package_error(_: Request, exc: MobileFaceError) -> JSONResponse:
        status, code = error_status(exc)
        if status >= 500:
            log.error("%s: %s", code, exc)
        headers = _RETRY if status == 503 else None
        return JSONResponse({"detail": str(exc), "code": code}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err["msg"])
        return JSONResponse(
            {"detail": "; ".join(problems) or "invalid request", "code": "invalid_request"},
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"detail": str(exc.detail), "code": codes.get(exc.status_code, "http_error")},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
