"""JSON shapes of the service's responses (they also document the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    detail: str = Field(description="what is wrong, naming the input")
    code: str = Field(
        description="machine-readable reason: bad_image, image_too_large, no_face, "
        "unknown_person, model_mismatch, invalid_request, request_too_large, unauthorized, "
        "database_unavailable, ..."
    )


class FaceBox(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image")
    score: float | None = Field(None, description="detector confidence")
    landmarks: list[list[float]] | None = Field(
        None, description="5 points (x, y): eyes, nose tip, mouth corners"
    )
    found_by: str | None = Field(
        None,
        description="which detection pass found the face: photo (the photo as sent) or "
        "low_light (a contrast-restored copy, tried when the first pass found no face)",
    )


class Health(BaseModel):
    status: str
    version: str


class Info(BaseModel):
    version: str
    model: str
    model_version: str
    embedding_size: int
    threshold: float | None
    threshold_source: str
    persons: int
    faces: int
    index: str
    auth: bool
    limits: dict[str, int]
    other_models: list[dict[str, Any]]


class VerifyResult(BaseModel):
    score: float = Field(description="cosine similarity of the two faces' embeddings, -1..1")
    same: bool | None = Field(description="score >= threshold (null when no threshold is known)")
    threshold: float | None
    model: str
    model_version: str
    faces: dict[str, FaceBox] = Field(description="the face used in image_a and in image_b")
    crops: dict[str, str | None] | None = Field(
        None,
        description="only when asked (crops=true): the aligned crop of each face that the model "
        "embedded, as a PNG data URL (data:image/png;base64,...)",
    )


class EmbedResult(BaseModel):
    embedding: list[float] = Field(description="L2-normalised embedding")
    dim: int
    model: str
    model_version: str
    face: FaceBox


class FaceOut(BaseModel):
    id: int
    model: str
    model_version: str
    image_sha256: str
    box: list[float] | None
    det_score: float | None
    created_at: str


class PersonOut(BaseModel):
    id: int
    name: str
    metadata: dict[str, Any]
    created_at: str
    faces: list[FaceOut]
    photos: int = Field(description="source photos stored (only when enrolled with keep_photos)")


class EnrolResult(PersonOut):
    added: list[int] = Field(description="ids of the faces this request added")
    duplicates: list[str] = Field(description="images already enrolled for this person")


class PersonList(BaseModel):
    total: int
    offset: int
    persons: list[PersonOut]


class MatchOut(BaseModel):
    person_id: int
    name: str
    score: float = Field(description="the person's aggregated cosine similarity")
    same: bool | None = Field(description="score >= threshold (null when none is known)")
    face_id: int = Field(description="the person's best-matching enrolled face")


class IdentifyResult(BaseModel):
    matches: list[MatchOut] = Field(description="best first")
    face: FaceBox
    threshold: float | None
    model: str
    model_version: str
