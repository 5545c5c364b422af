"""`PolicyConfig`: what a memory policy is, as data.

A policy is a frozen combination of the decisions every published KV-cache method makes
(the policy space): which tokens stay (regions + a scorer), in what form (tiers: full precision, int8,
int4, merged), for whom (head groups), at what position (a position policy) and on which events. The
manager (`memory.manager.MemoryManager`) is one class; policies differ only in these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from reverie.memory.ann import ANN_INDEXES, MAX_BITS
from reverie.memory.events import SCENE_HANDLINGS


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """One named memory policy.

    Regions (per layer; the current chunk is scratch and never counted):
        sink_frames / sink_frac: first frames kept forever (max of the fixed count and the fraction of the
            budget in frames).
        recent_frames: FIFO window of the newest frames; None = whatever the budget leaves (>= one chunk).
        mid_frac: share of the bytes left after sink, retrieval and the minimal recent window that goes to
            the score-selected mid pool (tokens leaving `recent` compete for it).
        mid_bits: tier of the mid pool: 0 full precision, 8 (int8) or 4 (int4, packed).
        spill_frac, spill_bits: share of the mid bytes given to a low-bit tier that keeps what the mid
            scorer evicts instead of dropping it (MiKV).
        retrieved_frames: slots for frames pulled back from the pose-indexed archive at each chunk start.
        archive_frames: capacity of the host-memory archive (0 = no archive).
        retrieve_every: frames between retrievals (1 = at every chunk start). Retrieval also runs at the
            first chunk and after every event; in between, the retrieved frames stay as they are (a
            frame of a one-frame-per-chunk model then retrieves per block of frames, as models with
            multi-frame chunks do per chunk).
        demote_every: frames leaving `recent` are demoted (archived, scored and compacted into the mid
            pool) in batches of this many; until then they stay visible as the `pending` region, which the
            budget pays for (`demote_every - 1` frames, out of what recent and mid share; a budget gets
            smaller batches when that would exceed an eighth of its frames). 1 = every commit.
            Batches need the batched layout (a full-precision mid pool without spill tier or merging, or
            none), no head groups, and positions that place a slot by its frame alone (not `packed`).
    Attention restricted by an index (TempCache's AnnSA, `memory.ann`):
        ann_index: how the ring's frames are indexed: "lsh" (sign-projection codes of each slot, on when
            `ann_bits` > 0; a frame scores the (head, table) pairs its slots share with a query) or
            "centroid" (each frame's mean content key per head, a quantized code of the frame; a frame scores
            the attention share its centroid predicts for the chunk's queries).
        ann_bits: bits of each LSH code of the recent ring's keys (0: no LSH index, every slot attended).
        ann_tables: LSH codes per key (tables); a slot is a candidate when one matches a query's.
        ann_frames: older frames of the ring a chunk attends to, those its index scores highest
            (a fixed count, so the cost is bounded and no host sync decides it).
        ann_exact_frames: the ring's newest frames, always attended in full.
        ann_rest_tokens: what the chunk reads of the ring frames the index leaves out: 0 nothing (as
            TempCache), `n` > 0 each frame as `n` mean tokens of consecutive slots with their weight
            (`memory.ann_rest`; rounded down to a divisor of the model's tokens per frame), which keeps
            most of the share of a broad attention that 0 loses.
        An index needs a budget (not `unbounded`), `demote_every = 1` and no head groups; the budget
        pays for its codes or centroids (and the frame means).
    Events:
        on_scene: how a new scene from the player is handled when the player names no handling
            (`engine.session.Session.scene`): "flush" (drop the old scene but the sink), "cut" (keep it, a
            RoPE cut's gap away) or "recache" (keep it, re-encoded under the new condition); see
            `memory.events`.
    Strategies (names in small registries):
        scorer: how mid tokens are ranked (`memory.scorers.SCORERS`).
        positions: temporal position policy (`memory.positions.POSITIONS`).
        merge_threshold: cosine threshold to merge a leaving token into its temporal correspondent in the
            mid pool (TempCache; None = no merging).
        score_decay: moving-average coefficient of attention-mass scores / per-commit decay of change scores.
        age_decay: per-commit factor on learned salience scores, so old tokens slowly yield to new ones.
        head_groups: None, or "profile" to split heads into static/dynamic groups (Forcing-KV): online
            over the first `profile_chunks` chunks, or from the JSON file `head_profile`.
        fov_degrees, retrieval_distance: view-overlap scoring of archived frames (see `memory.spatial`).
        position_span: temporal positions a bounded position policy may use (`relative`/`sink-realign`:
            the largest distance kept before old slots collapse); None = the layout's frame count + chunk, or
            the model's `temporal_span` (the positions it was trained on) when that is larger.
        rope_limit: refuse a layout whose positions would not fit the model's trained RoPE range.
        unbounded: the `full` reference: never evicts (grows, or fills a preallocated horizon).
    """

    name: str
    description: str = ""
    sink_frames: int = 0
    sink_frac: float = 0.0
    recent_frames: int | None = None
    mid_frac: float = 0.0
    mid_bits: int = 0
    spill_frac: float = 0.0
    spill_bits: int = 4
    retrieved_frames: int = 0
    archive_frames: int = 0
    retrieve_every: int = 1
    demote_every: int = 1
    scorer: str = "recency"
    positions: str = "absolute"
    merge_threshold: float | None = None
    head_groups: str | None = None
    static_threshold: float = 0.8
    profile_chunks: int = 2
    score_decay: float = 0.9
    age_decay: float = 1.0
    query_frames: int = 4
    salience_weights: str | None = None
    head_profile: str | None = None
    fov_degrees: float = 90.0
    retrieval_distance: float = 128.0
    rope_limit: int | None = None
    position_span: int | None = None
    unbounded: bool = False
    ann_index: str = "lsh"
    ann_bits: int = 0
    ann_tables: int = 4
    ann_frames: int = 64
    ann_exact_frames: int = 8
    ann_rest_tokens: int = 0
    on_scene: str = "flush"

    def __post_init__(self) -> None:
        if self.sink_frames < 0 or not 0.0 <= self.sink_frac < 1.0:
            raise ValueError("sink_frames must be >= 0 and sink_frac in [0, 1)")
        if self.recent_frames is not None and self.recent_frames < 1:
            raise ValueError("recent_frames must be >= 1 (or None for 'what the budget leaves')")
        for name in ("mid_frac", "spill_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mid_bits not in (0, 8, 4) or self.spill_bits not in (8, 4):
            raise ValueError("mid_bits must be 0, 8 or 4 and spill_bits 8 or 4")
        if self.spill_frac and not self.mid_frac:
            raise ValueError("a spill tier needs a mid pool (mid_frac > 0)")
        if self.merge_threshold is not None and not -1.0 <= self.merge_threshold <= 1.0:
            raise ValueError("merge_threshold is a cosine similarity in [-1, 1]")
        if self.merge_threshold is not None and (self.mid_bits or not self.mid_frac):
            raise ValueError("merging needs a full-precision mid pool (mid_frac > 0, mid_bits = 0)")
        if self.fov_degrees <= 0 or self.retrieval_distance <= 0:
            raise ValueError("fov_degrees and retrieval_distance must be positive")
        if self.retrieved_frames < 0 or self.archive_frames < 0:
            raise ValueError("retrieved_frames and archive_frames must be >= 0")
        if self.retrieve_every < 1:
            raise ValueError("retrieve_every must be >= 1 (frames between retrievals)")
        if self.demote_every < 1:
            raise ValueError("demote_every must be >= 1 (frames per demotion batch)")
        if self.demote_every > 1 and (self.mid_bits or self.spill_frac or self.merge_threshold is not None
                                      or self.head_groups or self.positions == "packed"):
            raise ValueError("demote_every > 1 needs a full-precision mid pool without spill tier or merging, "
                             "no head groups, and positions other than 'packed'")
        if self.retrieved_frames and not self.archive_frames:
            raise ValueError("retrieval needs an archive (archive_frames > 0)")
        if self.head_groups not in (None, "profile"):
            raise ValueError(f"head_groups must be None or 'profile', got {self.head_groups!r}")
        if not 0.0 < self.score_decay <= 1.0 or not 0.0 < self.age_decay <= 1.0:
            raise ValueError("score_decay and age_decay must be in (0, 1]")
        if self.query_frames < 1 or self.profile_chunks < 1:
            raise ValueError("query_frames and profile_chunks must be >= 1")
        if self.rope_limit is not None and self.rope_limit < 1:
            raise ValueError("rope_limit must be >= 1")
        if self.position_span is not None and self.position_span < 2:
            raise ValueError("position_span must be >= 2")
        if self.ann_index not in ANN_INDEXES:
            raise ValueError(f"ann_index must be one of {', '.join(ANN_INDEXES)}, got {self.ann_index!r}")
        if self.ann_bits and (not 1 <= self.ann_bits <= MAX_BITS or self.ann_tables < 1):
            raise ValueError(f"an LSH index needs 1 <= ann_bits <= {MAX_BITS} and ann_tables >= 1")
        if self.indexed and (self.ann_frames < 1 or self.ann_exact_frames < 0):
            raise ValueError("an index needs ann_frames >= 1 and ann_exact_frames >= 0")
        if self.ann_rest_tokens < 0:
            raise ValueError(f"ann_rest_tokens must be >= 0, got {self.ann_rest_tokens}")
        if self.indexed and (self.unbounded or self.demote_every > 1 or self.head_groups):
            raise ValueError("an index (ann_bits > 0 or ann_index='centroid') needs a budget (not unbounded), "
                             "demote_every = 1 and no head groups")
        if self.on_scene not in SCENE_HANDLINGS:
            raise ValueError(f"on_scene must be one of {', '.join(SCENE_HANDLINGS)}, got {self.on_scene!r}")

    @property
    def indexed(self) -> bool:
        """Whether the recent ring has an index that restricts attention (`memory.ann`)."""
        return self.ann_index == "centroid" or self.ann_bits > 0

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
