"""SQLAlchemy 2.0 tables, the engine and session helpers.

The schema is owned by Alembic migrations (``arena/migrations``); these models
are the single source of truth they are checked against (tests/test_db.py).
SQLite runs in WAL mode with a busy timeout and ``synchronous=FULL`` so that a
vote acknowledged after commit survives a crash of the process or the machine.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Model(Base):
    """A text-to-image model, or (kind='reference') a set of real reference images."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PromptSet(Base):
    """What is known about a prompt set beyond its prompts: whether it is held out.

    A set without a row here is not held out (prompts name their set by
    ``Prompt.prompt_set``; this table is keyed by the same name).
    """

    __tablename__ = "prompt_sets"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Kept for final evaluation only: never tuned on (reports can filter it in or out).
    held_out: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("prompt_set", "external_id", name="uq_prompt_set_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_set: Mapped[str] = mapped_column(String(200), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    """One stored image. Files live in the workspace as images/<sha[:2]>/<sha>.png."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("model_id", "sha256", name="uq_image_model_sha"),
        UniqueConstraint(
            "model_id", "prompt_id", "seed", "settings_hash", name="uq_image_generation"
        ),
        Index("ix_images_model_prompt", "model_id", "prompt_id"),
        # The gallery's prompt view: every model's images of one (prompt, seed).
        Index("ix_images_prompt_seed", "prompt_id", "seed"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), nullable=True)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    settings_hash: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    # Why an image is kept out of matchmaking and metrics ("black", "nan", "uniform", ...).
    broken: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_name: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Rater(Base):
    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="human")
    login: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The rater's group ("expert", "crowd", any name; None: none), set by the login
    # file, the Admin app or per judge -- never by a browser (see vocabulary).
    rater_group: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded_reason: Mapped[str] = mapped_column(Text, default="")
    # Set when an admin decides by hand; the automatic policy never overrides it.
    exclusion_manual: Mapped[bool] = mapped_column(Boolean, default=False)
    # Keyed hash of the network group the id was issued to (see Battle.client_group).
    client_group: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A judge's definition (model, prompt template, answer words): every vote of the
    # rater was made with it (``arena judge``). None for people.
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def web_raters(raters=None):
    """SQL condition: raters the web app created (an issued id or a login). They carry
    an address group; raters of scripts and simulations have none and are the
    evaluator's own. Web raters' votes count only after ``probation_votes``."""
    raters = Rater.__table__ if raters is None else raters
    return raters.c.client_group.is_not(None)


class Battle(Base):
    __tablename__ = "battles"
    __table_args__ = (
        Index("ix_battles_rater_pair", "rater_id", "left_image_id", "right_image_id"),
        # The gallery's vote counts: the battles of a few prompts.
        Index("ix_battles_prompt", "prompt_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    left_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    right_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    policy: Mapped[str] = mapped_column(String(40))
    # "normal", or "gold" (an image against a degraded copy; never enters the leaderboard).
    kind: Mapped[str] = mapped_column(String(20), default="normal")
    # For gold battles: which side holds the intact image ("left"/"right").
    gold_answer: Mapped[str | None] = mapped_column(String(10), nullable=True)
    served_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Opaque, per-battle image handles (the URLs the rater fetches); never a content hash.
    left_handle: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    right_handle: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # Keyed hash of the client's network group (IPv4 /32, IPv6 /64); never the address.
    client_group: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (Index("ix_votes_rater_created", "rater_id", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    battle_id: Mapped[int] = mapped_column(ForeignKey("battles.id"), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    outcome: Mapped[str] = mapped_column(String(10))
    decision_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Why the vote is suspicious ("fast", ...); stored, but may be excluded by policy.
    flag: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # A judge's answer probabilities and the order it saw the pair in; None for people.
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class ServerSecret(Base):
    """Keys the server signs with (rater ids, address hashes), shared by every process."""

    __tablename__ = "server_secrets"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("image_id", "metric", "version", name="uq_score"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    metric: Mapped[str] = mapped_column(String(80), index=True)
    version: Mapped[str] = mapped_column(String(80))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The metric's direction when the score was written, so readers need no registry.
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    # Metric-specific extras, e.g. per-tag hits for tag accuracy.
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImageFlag(Base):
    """A reviewer's verdict on an image: one row per failure mode flagged, or one row with
    ``flag`` = ``"none"`` (``vocabulary.NO_FAILURE``) for "looked, no failure".

    ``blind``: the verdict was given in the blind review (a random sample shown without
    model names); a reviewer has at most one blind and one open verdict per image, and
    saving again replaces it (``Store.save_review``). ``note`` is the verdict's note,
    repeated on each of its rows.
    """

    __tablename__ = "image_flags"
    __table_args__ = (
        UniqueConstraint("image_id", "reviewer", "blind", "flag", name="uq_image_flag"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    flag: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Feature(Base):
    """A cached feature vector (float32 bytes) of one image under one extractor version."""

    __tablename__ = "features"
    __table_args__ = (UniqueConstraint("image_id", "extractor", name="uq_feature"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    extractor: Mapped[str] = mapped_column(String(120))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelMetric(Base):
    """A model-level number (KID, FID, CMMD, FD-DINO, diversity, AS) against a reference set,
    over all the model's images (``slice`` "") or those of one prompt category or prompt
    set (``slice`` "category=<name>" / "prompt_set=<name>", ``arena distribution --by``)."""

    __tablename__ = "model_metrics"
    __table_args__ = (
        UniqueConstraint("model_id", "metric", "reference", "slice", name="uq_model_metric_slice"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    metric: Mapped[str] = mapped_column(String(80))
    reference: Mapped[str] = mapped_column(String(200), default="")
    slice: Mapped[str] = mapped_column(String(260), default="", server_default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    std: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
    higher_is_better: Mapped[bool] = mapped_column(Boolean)  # e.g. False for FID
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, FULL sync and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
