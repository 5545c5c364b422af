"""ANN-restricted attention (`memory.ann`, the `ann` policy): the index against brute force, what it finds,
and the manager's restricted view, budget and events."""

from dataclasses import replace

import pytest
import torch

from reverie.kernels import attend_ref
from reverie.memory import MemoryManager
from reverie.memory.ann import CentroidIndex, LshIndex, frame_scores_ref, matches_ref

from memtest import chunk_qkv, run_chunk, tiny_spec


def _index(heads=2, head_dim=16, slots=64, bits=6, tables=3, content_from=4):
    return LshIndex(heads=heads, head_dim=head_dim, slots=slots, content_from=content_from, bits=bits,
                    tables=tables, device="cpu", seed=3)


def test_matches_equal_the_brute_force_reference():
    index = _index()
    g = torch.Generator().manual_seed(0)
    index.write(0, torch.randn(2, 40, 16, generator=g))  # slots 40..63 stay uncoded
    q = torch.randn(2, 5, 16, generator=g)
    q[:, 0] = index_key = torch.randn(2, 16, generator=g)
    index.write(40, index_key[:, None])  # one slot holds exactly a query's key: it matches in every table
    got = index.matches(q, 50)
    assert torch.equal(got, matches_ref(index, q, 50))
    assert got[40] == 2 * 3 and got[41:].sum() == 0  # every head and table; uncoded slots never match


def test_codes_ignore_the_temporal_channels_and_near_keys_match_more_than_far_ones():
    index = _index(heads=1, head_dim=32, slots=400, bits=8, tables=4)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 32, generator=g)
    far = torch.randn(1, 200, 32, generator=g)
    near = q + 0.2 * torch.randn(1, 200, 32, generator=g)
    near[..., :4] = torch.randn(1, 200, 4, generator=g) * 10  # temporal channels: not hashed
    index.write(0, far)
    index.write(200, near)
    m = index.matches(q, 400)
    assert m[200:].float().mean() > 5 * m[:200].float().mean() + 0.5


def _ann(spec, budget_frames=24, **kw):
    kw = {"ann_frames": 4, "ann_exact_frames": 2, "ann_index": "lsh", "ann_rest_tokens": 0, **kw}
    return MemoryManager.create(spec, policy="ann", budget_bytes=budget_frames * spec.kv_bytes_per_frame, **kw)


def test_the_view_attends_a_fixed_number_of_ring_slots_with_the_newest_frames_among_them():
    spec = tiny_spec(head_dim=16)
    mem = _ann(spec)
    f = spec.tokens_per_frame
    for c in range(5):  # the ring holds no more than 6 frames' worth: nothing restricted yet
        views = run_chunk(mem, spec, c)
        assert c < 2 or views[0][1].segments[-2].index is None
    for c in range(4, 16):
        views = run_chunk(mem, spec, c)
    ring = mem.layers[0].recent
    recent = views[0][1].segments[-2]
    assert recent.index is not None and recent.visible == 6 * f  # (ann_frames + ann_exact_frames) frames
    newest = [((ring.written - 2 - j) % ring.capacity) for j in range(2)]  # the view predates the last commit
    chosen = set(recent.index.tolist())
    assert all(set(range(r * f, (r + 1) * f)) <= chosen for r in newest)


def test_with_room_for_every_frame_the_restricted_view_is_the_window_exactly():
    spec = tiny_spec(head_dim=16)
    ann, window = _ann(spec, ann_frames=64), MemoryManager.create(spec, policy="window",
                                                                 budget_bytes=24 * spec.kv_bytes_per_frame)
    for c in range(12):
        a, w = run_chunk(ann, spec, c, attend=True), run_chunk(window, spec, c, attend=True)
    ring_frames = len(ann.layers[0].recent.frames)
    assert ring_frames <= len(window.layers[0].recent.frames)  # the codes took a little of the budget
    for (q, view, out), (_, _, ref) in zip(a, w):
        if ring_frames == len(window.layers[0].recent.frames):
            torch.testing.assert_close(out, ref)


def test_the_budget_pays_for_the_codes_and_flush_and_reset_keep_them_true():
    spec = tiny_spec(head_dim=16)
    budget = 24 * spec.kv_bytes_per_frame
    mem, window = _ann(spec), MemoryManager.create(spec, policy="window", budget_bytes=budget)
    assert mem.layout.index_frame_bytes == spec.tokens_per_frame * spec.heads * 4 * 4
    assert mem.layout.recent_frames < window.layout.recent_frames
    assert mem.allocated_bytes() <= budget and mem.layout.layer_bytes() * spec.layers <= budget
    for c in range(30):
        run_chunk(mem, spec, c)
    assert mem.region_bytes()["index"] == spec.layers * len(mem.layers[0].recent.frames) * mem.layout.index_frame_bytes
    assert mem.kv_bytes() <= budget
    mem.begin_chunk(events=["flush"])
    mem.end_chunk()
    for st in mem.layers:
        n = st.recent.slots_used
        assert torch.equal(st.ann.codes[:, :, :n], st.ann.encode(st.recent.k[:, :n]).int())
        assert (st.ann.codes[:, :, n:] == st.ann.empty).all()
    mem.reset()
    assert all((st.ann.codes == st.ann.empty).all() for st in mem.layers)


def test_an_index_refuses_what_it_cannot_serve():
    spec = tiny_spec()
    for kw in ({"unbounded": True}, {"demote_every": 4}, {"ann_bits": 17}, {"ann_frames": 0}):
        with pytest.raises(ValueError, match="index|ann_bits"):
            MemoryManager.create(spec, policy="ann", budget_bytes=24 * spec.kv_bytes_per_frame, **kw)


@pytest.mark.parametrize("index", ["lsh", "centroid"])
def test_restricted_attention_finds_the_far_frames_the_queries_point_at(index):
    """Most cached frames are unrelated; a few old ones (landmarks) hold the keys the queries point at. Full
    attention puts its weight there; the index must find them although they are not among the newest
    frames, so the restricted output stays close to the unrestricted one, and a random pick of as many
    slots does not."""
    spec = tiny_spec(head_dim=32, tokens_per_frame=8, layers=1, heads=2)
    g = torch.Generator().manual_seed(5)
    mark_k, mark_v = torch.randn(2, 8, 32, generator=g), torch.randn(2, 8, 32, generator=g)

    def qkv(chunk, layer):
        noise = torch.Generator().manual_seed(100 + chunk)
        k, v = torch.randn(2, 8, 32, generator=noise), torch.randn(2, 8, 32, generator=noise)
        if chunk in (4, 11, 17):
            k, v = mark_k + 0.05 * k, mark_v
        return 2.0 * mark_k + 0.1 * torch.randn(2, 8, 32, generator=noise), k, v

    mem = _ann(spec, budget_frames=40, ann_frames=6, ann_exact_frames=2, ann_bits=8, ann_index=index)
    for c in range(30):
        (q, view, out), = run_chunk(mem, spec, c, qkv=qkv, attend=True)
    restricted = view.segments[-2]
    assert restricted.index is not None and restricted.visible == 8 * 8 < restricted.pos.shape[0] // 3
    ref = attend_ref(q, replace(view, segments=(*view.segments[:-2], replace(restricted, index=None),
                                                view.segments[-1])))
    pick = torch.randperm(restricted.pos.shape[0], generator=g)[:restricted.visible]
    guess = attend_ref(q, replace(view, segments=(*view.segments[:-2], replace(restricted, index=pick),
                                                  view.segments[-1])))
    error = lambda x: float((x - ref).norm() / ref.norm())  # noqa: E731
    assert error(out) < 0.1 and error(guess) > 4 * error(out), (error(out), error(guess))


def test_centroid_scores_equal_the_frame_by_frame_reference():
    g = torch.Generator().manual_seed(2)
    index = CentroidIndex(heads=2, head_dim=16, frames=8, tokens_per_frame=4, content_from=4, device="cpu")
    k, q = torch.randn(2, 24, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    index.write(0, k[:, :16])
    index.write(16, k[:, 16:])
    torch.testing.assert_close(index.frame_scores(q, 6, 4), frame_scores_ref(index, k, q))
    assert float(index.frame_scores(q, 6, 4).sum()) == pytest.approx(2 * 5)  # one share per head and query
    with pytest.raises(ValueError, match="whole frames"):
        index.write(2, k[:, :4])


def test_the_budget_pays_for_the_centroids_and_flush_and_reset_keep_them_true():
    spec = tiny_spec(head_dim=16)
    budget = 24 * spec.kv_bytes_per_frame
    mem = _ann(spec, ann_index="centroid")
    hashed = spec.head_dim - spec.rope.dims if spec.rope.dims < spec.head_dim else spec.head_dim
    assert mem.layout.index_frame_bytes == spec.heads * hashed * 4
    assert mem.allocated_bytes() <= budget and mem.layout.layer_bytes() * spec.layers <= budget
    for c in range(30):
        run_chunk(mem, spec, c)
    assert mem.kv_bytes() <= budget
    mem.begin_chunk(events=["flush"])
    mem.end_chunk()
    f = spec.tokens_per_frame
    for st in mem.layers:
        n = st.recent.slots_used // f
        c0 = st.ann.content_from
        want = st.recent.k[:, :n * f, c0:].reshape(spec.heads, n, f, -1).mean(2)
        torch.testing.assert_close(st.ann.centroids[:, :n], want)
    mem.reset()
    assert all(not st.ann.centroids.any() for st in mem.layers)
    with pytest.raises(ValueError, match="ann_index"):
        MemoryManager.create(spec, policy="ann", budget_bytes=budget, ann_index="pq")


def _restricted_and_whole(mem, spec, qkv, chunks):
    """After `chunks` chunks, the next chunk's first layer: its view, the restricted output and the output
    of the same view with the ring unrestricted and without frame means (what the index stands in for),
    both taken before any commit changes the buffers the view aliases."""
    for c in range(chunks):
        run_chunk(mem, spec, c, qkv=qkv)
    q, k, v = qkv(chunks, 0)
    mem.begin_chunk()
    view = mem.view(0, q, k, v)
    ring = next(i for i, s in enumerate(view.segments) if s.index is not None)
    whole = replace(view, segments=(*view.segments[:ring], replace(view.segments[ring], index=None),
                                    view.segments[-1]))
    return view, attend_ref(q, view), attend_ref(q, whole)


@pytest.mark.parametrize("index", ["lsh", "centroid"])
def test_frame_means_make_the_left_out_frames_exact_when_a_frame_keys_are_equal(index):
    """A frame whose tokens share one key and one value is exactly its mean token with weight F, so with
    frame means the restricted view attends exactly like the whole ring; without them it does not."""
    spec = tiny_spec(head_dim=16, tokens_per_frame=4, layers=1)

    def qkv(chunk, layer):
        g = torch.Generator().manual_seed(200 + chunk)
        k, v = (torch.randn(2, 1, 16, generator=g).expand(2, 4, 16).contiguous() for _ in range(2))
        return 0.5 * torch.randn(2, 4, 16, generator=g), k, v

    errors = {}
    for n in (0, 1, 2):
        mem = _ann(spec, budget_frames=40, ann_frames=3, ann_exact_frames=2, ann_bits=6, ann_index=index,
                   ann_rest_tokens=n)
        view, out, ref = _restricted_and_whole(mem, spec, qkv, 30)
        assert view.segments[-3 if n else -2].visible == 5 * 4
        assert not n or view.segments[-2].visible == n * (view.segments[-3].pos.shape[0] // 4 - 5)
        errors[n] = float((out - ref).norm() / ref.norm())
    assert errors[1] < 1e-5 and errors[2] < 1e-5 and errors[0] > 0.05, errors


def test_frame_means_keep_most_of_a_broad_attention_and_one_per_slot_is_exact():
    """Random keys and soft queries: attention spreads over every frame. Leaving out the frames the index
    does not pick loses their share; one mean per frame keeps some of it, one per pair of slots more, and
    a mean per slot (n = F) is the whole ring again."""
    spec = tiny_spec(head_dim=16, tokens_per_frame=8, layers=1)

    def qkv(chunk, layer):
        g = torch.Generator().manual_seed(300 + chunk)
        return tuple(s * torch.randn(2, 8, 16, generator=g) for s in (0.3, 1.0, 1.0))

    errors = {}
    for n in (0, 1, 4, 8):
        mem = _ann(spec, budget_frames=60, ann_frames=4, ann_exact_frames=2, ann_index="centroid",
                   ann_rest_tokens=n)
        _, out, ref = _restricted_and_whole(mem, spec, qkv, 50)
        errors[n] = float((out - ref).norm() / ref.norm())
    assert errors[8] < 1e-5 and errors[4] < errors[1] < errors[0] / 2, errors


def test_the_budget_pays_for_the_frame_means_and_flush_and_reset_keep_them_true():
    spec = tiny_spec(head_dim=16)  # 4 tokens per frame: 3 means per frame round down to 2
    budget = 24 * spec.kv_bytes_per_frame
    mem = _ann(spec, ann_index="centroid", ann_rest_tokens=3)
    hashed = spec.head_dim - spec.rope.dims
    assert mem.layout.index_frame_bytes == spec.heads * hashed * 4 + 2 * 2 * spec.heads * spec.head_dim * 4
    assert mem.allocated_bytes() <= budget and mem.layout.layer_bytes() * spec.layers <= budget
    for c in range(30):
        run_chunk(mem, spec, c)
    assert mem.kv_bytes() <= budget
    f = spec.tokens_per_frame
    mem.begin_chunk(events=["flush"])
    mem.end_chunk()
    for st in mem.layers:
        n = st.recent.slots_used // f
        for got, src in ((st.means.k, st.recent.k), (st.means.v, st.recent.v)):
            torch.testing.assert_close(got[:, :2 * n], src[:, :n * f].reshape(spec.heads, 2 * n, 2, -1).mean(2))
    mem.reset()
    assert all(not st.means.k.any() and not st.means.v.any() for st in mem.layers)
    with pytest.raises(ValueError, match="ann_rest_tokens"):
        MemoryManager.create(spec, policy="ann", budget_bytes=budget, ann_rest_tokens=-1)
