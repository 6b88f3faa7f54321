"""A parity run, one room per stage: ``plan`` (what will run), ``collect`` (the stream and what it keeps),
``execute`` (``run``), ``followups`` (lint, localize, advise, INT8) and ``assemble`` (the one place a result is
built, for a run and a merge alike)."""
from .assemble import assemble, derive
from .collect import MAX_THUMBNAIL_CLIPS, REPRO_CLIPS, Collector, thumbnail_frames
from .execute import run
from .plan import agree, parse_shard

__all__ = ["MAX_THUMBNAIL_CLIPS", "REPRO_CLIPS", "Collector", "agree", "assemble", "derive", "parse_shard", "run", "thumbnail_frames"]
