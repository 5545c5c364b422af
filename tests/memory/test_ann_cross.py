"""AnnCA: the k-means-indexed cross-attention to a prompt against the full attention it restricts."""

import pytest
import torch

from reverie.memory.ann_cross import (CrossAnnConfig, PromptAttention, cross_attention_ref, kmeans,
                                      prompt_index_bytes, record_calls)


def grouped(n, heads=2, d=16, nq=24, group=8, seed=0):
    """Keys in near-duplicate groups, each query looking for one group (peaked attention)."""
    gen = torch.Generator().manual_seed(seed)
    groups = n // group
    centres = torch.nn.functional.normalize(torch.randn(heads, groups, d, generator=gen), dim=-1) * 3.0
    k = centres[:, torch.arange(n) % groups] + 0.3 * torch.randn(heads, n, d, generator=gen)
    q = centres[:, torch.randint(0, groups, (nq,), generator=gen)] + 0.3 * torch.randn(heads, nq, d, generator=gen)
    v = torch.randn(heads, n, d, generator=gen)
    return q * d ** 0.25, k * d ** 0.25, v


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_config_rejects_bad_knobs_and_counts_tokens():
    for bad in ({"probes": 0}, {"cluster_size": 0}, {"iters": -1}):
        with pytest.raises(ValueError, match="AnnCA needs"):
            CrossAnnConfig(**bad)
    cfg = CrossAnnConfig(probes=2, cluster_size=8)
    assert cfg.tokens == 32 and cfg.clusters_for(60) == 8 and cfg.clusters_for(64) == 8
    assert cfg.restricts(60) and not cfg.restricts(32) and not CrossAnnConfig(probes=8).restricts(60)


def test_prompt_attention_rejects_mismatched_keys_and_values():
    with pytest.raises(ValueError, match=r"\[H, Np, D\]"):
        PromptAttention(torch.zeros(2, 5, 4), torch.zeros(2, 6, 4))
    with pytest.raises(ValueError, match=r"\[H, Np, D\]"):
        PromptAttention(torch.zeros(5, 4), torch.zeros(5, 4))


def test_unrestricted_prompt_is_the_full_attention():
    q, k, v = grouped(32)
    for ann in (None, CrossAnnConfig(probes=4, cluster_size=8)):  # 4 x 16 tokens cover all 32
        att = PromptAttention(k, v, ann)
        assert att.index_bytes == 0
        torch.testing.assert_close(att(q), cross_attention_ref(q, k, v))


def test_kmeans_assigns_each_row_its_nearest_centroid():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, 8, generator=gen)
    centroids, assign = kmeans(x, 7, iters=5, seed=0)
    assert centroids.shape == (3, 7, 8) and assign.shape == (3, 50)
    torch.testing.assert_close(assign, torch.cdist(x, centroids).argmin(-1))


def test_candidates_are_valid_distinct_and_cover_the_probed_clusters():
    q, k, v = grouped(256)
    ann = CrossAnnConfig(probes=3, cluster_size=8)
    att = PromptAttention(k, v, ann)
    idx, valid = att.candidates(q)
    assert idx.shape == valid.shape == (2, 24, ann.tokens) and idx.dtype == torch.int64
    assert int(idx.min()) >= 0 and int(idx.max()) < 256
    assert bool(valid.any(-1).all())  # every query reads something
    for h in range(2):
        for i in range(24):
            chosen = idx[h, i][valid[h, i]]
            assert chosen.unique().numel() == chosen.numel()


def test_restricted_attention_tracks_a_peaked_prompt_and_beats_a_random_pick():
    q, k, v = grouped(1024)
    ann = CrossAnnConfig(probes=4, cluster_size=8)
    att = PromptAttention(k, v, ann)
    full = cross_attention_ref(q, k, v)
    err = rel_err(att(q), full)
    gen = torch.Generator().manual_seed(5)
    pick = torch.randperm(1024, generator=gen)[:ann.tokens]  # as many tokens, chosen blind
    blind = rel_err(cross_attention_ref(q, k[:, pick], v[:, pick]), full)
    assert err < 0.5 and err < 0.5 * blind
    mass, read = att.reads(q)
    assert mass > 0.8 and read <= ann.tokens  # most of each query's weight lies in the tokens it reads
    assert PromptAttention(k, v).reads(q) == (1.0, 1024.0)


def test_index_bytes_match_the_footprint_formula():
    q, k, v = grouped(512, heads=3, d=16)
    ann = CrossAnnConfig(probes=2, cluster_size=8)
    assert PromptAttention(k, v, ann).index_bytes == prompt_index_bytes(3, 16, 512, ann) > 0
    assert prompt_index_bytes(3, 16, 512, None) == 0 == prompt_index_bytes(3, 16, 16, ann)


def test_record_calls_sees_every_call_with_its_error_and_reads():
    q, k, v = grouped(256)
    att = PromptAttention(k, v, CrossAnnConfig(probes=2, cluster_size=8))
    att(q)  # outside the block: not recorded
    with record_calls() as calls:
        att(q)
        att(q)
    att(q)
    assert len(calls.rel_err) == len(calls.ms_ann) == len(calls.ms_full) == 2
    mass, read = att.reads(q)
    assert calls.tokens_read == [read, read] and 0 < read <= 32 and calls.prompt_tokens == [256, 256]
    assert calls.mass == [mass, mass]
    assert calls.rel_err[0] == pytest.approx(rel_err(att(q), cross_attention_ref(q, k, v)), rel=1e-5)
