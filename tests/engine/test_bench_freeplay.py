"""`reverie bench freeplay`: its frame metrics on synthetic cases, the real game's turn convention,
`Session.observe`, and one end-to-end run on a tiny random-weights model."""

import json
import zlib

import numpy as np
import pytest
import torch

from reverie.engine.bench import metrics as M
from reverie.engine.bench.metrics import PSNR_CAP

torch.set_num_threads(1)
H, W = 48, 64


def texture(h: int, w: int, seed: int = 0, block: int = 2) -> np.ndarray:
    """A structured uint8 RGB image: random colour blocks of `block` pixels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (-(-h // block), -(-w // block), 3), dtype=np.uint8)
    return small.repeat(block, 0).repeat(block, 1)[:h, :w].copy()


def panning(steps: int, shift: int, seed: int = 0) -> np.ndarray:
    """`steps` frames of a wide texture seen through a window that moves so the picture moves `shift`
    pixels right per frame (`frame[k + 1](x) = frame[k](x - shift)`)."""
    pano = texture(H, W + abs(shift) * steps + 2, seed, block=3)
    x0 = abs(shift) * steps if shift > 0 else 0
    return np.stack([pano[:, x0 - k * shift: x0 - k * shift + W] for k in range(steps)])


def box_blur(img: np.ndarray, k: int = 7) -> np.ndarray:
    pad = np.pad(img.astype(np.float64), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="edge")
    out = sum(pad[y:y + img.shape[0], x:x + img.shape[1]] for y in range(k) for x in range(k)) / k ** 2
    return np.round(out).astype(np.uint8)


# --- segments ----------------------------------------------------------------------------------------------
def test_segments_split_at_the_documented_boundaries():
    assert M.segments(1024) == [(1, 32), (33, 128), (129, 512), (513, 1024)]
    assert M.segments(2048) == [(1, 32), (33, 128), (129, 512), (513, 1024), (1025, 2048)]
    assert M.segments(3000)[-2:] == [(1025, 2048), (2049, 3000)]
    assert M.segments(256) == [(1, 32), (33, 128), (129, 256)]
    assert M.segments(32) == [(1, 32)] and M.segments(5) == [(1, 5)]


# --- motion, sharpness -------------------------------------------------------------------------------------
def test_a_frozen_frame_has_no_motion_and_a_moving_one_has_some():
    frames = panning(6, 4)
    frozen = np.repeat(frames[:1], 6, axis=0)
    assert np.all(M.motion(frozen[:-1], frozen[1:]) == 0)
    assert np.all(M.motion(frames[:-1], frames[1:]) > 20)


def test_a_blurred_frame_is_much_less_sharp_and_a_flat_one_has_no_sharpness():
    img = texture(H, W, 1)
    ratio = M.sharpness(box_blur(img)[None])[0] / M.sharpness(img[None])[0]
    assert ratio < 0.4
    assert M.sharpness(np.full((1, H, W, 3), 90, np.uint8))[0] == 0
    ramp = np.broadcast_to(np.arange(W, dtype=np.uint8)[None, :, None], (H, W, 3))  # +1 per pixel along x
    assert M.sharpness(ramp[None])[0] == pytest.approx(0.5, abs=1e-4)  # (1 along x + 0 along y) / 2


# --- horizontal shift, turn agreement ----------------------------------------------------------------------
@pytest.mark.parametrize("shift", [3, 8, -3, -8])
def test_phase_correlation_finds_a_pure_horizontal_shift_in_both_directions(shift):
    frames = panning(5, shift)
    assert np.all(M.horizontal_shift(frames[:-1], frames[1:]) == shift)


def test_turn_agreement_follows_the_game_convention_both_ways():
    right = panning(5, 6)  # the picture moves right: what turning left does
    left = panning(5, -6)
    assert M.TURN_SHIFT_SIGN == {M.TURN_LEFT: 1, M.TURN_RIGHT: -1}
    assert M.turn_agreement(right[:-1], right[1:], [M.TURN_LEFT] * 4) == (1.0, 4)
    assert M.turn_agreement(left[:-1], left[1:], [M.TURN_RIGHT] * 4) == (1.0, 4)
    assert M.turn_agreement(right[:-1], right[1:], [M.TURN_RIGHT] * 4) == (0.0, 4)
    forward = 1  # not a pure turn: not counted
    assert M.turn_agreement(right[:-1], right[1:], [forward, M.TURN_LEFT, forward, M.TURN_RIGHT]) == (0.5, 2)
    frac, n = M.turn_agreement(right[:-1], right[1:], [forward] * 4)
    assert np.isnan(frac) and n == 0


def test_blurred_or_frozen_frames_never_agree_with_a_turn():
    frames = panning(5, 6)
    flat = np.full_like(frames, 120)  # blurred all the way: a uniform frame
    acts = [M.TURN_LEFT, M.TURN_RIGHT] * 2
    assert M.turn_agreement(flat[:-1], flat[1:], acts) == (0.0, 4)
    assert M.turn_agreement(frames[:-1], flat[1:], acts) == (0.0, 4)
    blurred = np.repeat(box_blur(frames[0])[None], 5, axis=0)  # a frozen blur
    assert M.turn_agreement(blurred[:-1], blurred[1:], acts) == (0.0, 4)
    assert np.all(M.horizontal_shift(blurred[:-1], blurred[1:]) == 0)


# --- psnr, the one of every bench ---------------------------------------------------------------------------
def test_psnr_is_per_frame_and_capped_only_for_identical_frames():
    a = texture(H, W, seed=1)
    b = a.copy()
    b[0, 0, 0] ^= 1  # one value off by one: the highest PSNR two different frames can have
    assert M.psnr(a, a) == PSNR_CAP
    assert M.psnr(a, b) == pytest.approx(10 * np.log10(255.0 ** 2 * H * W * 3), abs=1e-9) and M.psnr(a, b) < PSNR_CAP
    stack = np.stack([a, b, 255 - a])
    per_frame = M.psnr(stack, a)  # a single frame broadcasts against a stack
    assert per_frame.shape == (3,) and per_frame[0] == PSNR_CAP and per_frame[2] < 10
    assert np.array_equal(per_frame, [M.psnr(f, a) for f in stack])


# --- realism (nearest bank frame) ----------------------------------------------------------------------------
def test_nearest_psnr_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, (23, 6, 8, 3), dtype=np.uint8)
    queries = np.clip(bank[[4, 17, 9]].astype(int) + rng.integers(-30, 31, (3, 6, 8, 3)), 0, 255).astype(np.uint8)
    queries = np.concatenate([queries, rng.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)])
    brute = [max(M.psnr(q, b) for b in bank) for q in queries]
    assert np.allclose(M.nearest_psnr(queries, bank, chunk=5), brute)


def test_a_colour_wash_is_unrealistic_and_a_view_of_the_map_is_realistic():
    bank = panning(40, 5)  # structured frames of one "map"
    wash = np.full((1, H, W, 3), bank.mean(axis=(0, 1, 2)).round().astype(np.uint8))
    view = bank[17].astype(int) + np.random.default_rng(2).integers(-4, 5, (H, W, 3))
    near = np.clip(view, 0, 255).astype(np.uint8)[None]
    assert M.nearest_psnr(wash, bank)[0] < 12
    assert M.nearest_psnr(near, bank)[0] > 35


def test_a_model_stuck_on_one_plausible_view_is_realistic_but_does_not_move():
    bank = panning(40, 5)
    stuck = np.repeat(bank[7:8], 10, axis=0)
    real = panning(11, 5, seed=0)[1:]  # what the game showed meanwhile
    assert np.all(M.nearest_psnr(stuck, bank) == PSNR_CAP)
    ratio = M.motion(stuck[:-1], stuck[1:]).mean() / M.motion(real[:-1], real[1:]).mean()
    assert ratio == 0.0


# --- the real game -----------------------------------------------------------------------------------------
def test_the_real_game_turns_the_way_the_convention_says():
    pytest.importorskip("vizdoom")
    from reverie.world.dit.data import play_episode

    counts = {M.TURN_LEFT: 0, M.TURN_RIGHT: 0}
    for seed in (7001, 7002):  # the bench's own episodes, shortened
        ep = play_episode("maze", "wander", 150, seed, 4, (W, H))
        agree, n = M.turn_agreement(ep.frames[:-1], ep.frames[1:], ep.actions[1:])
        assert n >= 20 and agree >= 0.8, (seed, agree, n)
        for a in counts:
            counts[a] += int(np.sum(ep.actions[1:] == a))
    assert min(counts.values()) > 0  # both directions were checked


# --- Session.observe ---------------------------------------------------------------------------------------
def test_session_observe_commits_known_frames_like_the_sampler_does():
    from reverie.engine.sampler import FrameContext, commit_frames, generate_chunk
    from reverie.engine.session import Session
    from tinyworld import ListMemory, TinyWorld, list_memory_factory

    model = TinyWorld()
    frames = np.stack([texture(16, 16, s, block=4) for s in range(4)])
    actions = [0, 3, 1, 4]
    session = Session(model, frames[0], policy="full", seed=5, memory_factory=list_memory_factory)
    session.observe(frames[1:3], actions[1:3])
    assert session.memory.frames_committed == 3 and session.frame_index == 0 and not session.replayable
    assert session.pose != (0.0, 0.0, 0.0)  # the pose head moved it over the observed frames
    got = session.step(actions[3]).frame

    mem, ctx = ListMemory(model.spec), FrameContext(model.spec)  # the same by hand
    with torch.inference_mode():
        for f, a in zip(frames[:3], actions[:3]):
            mem.begin_chunk()
            commit_frames(model, mem, model.encode(torch.from_numpy(f)[None]), torch.tensor([a]), ctx)
            mem.end_chunk()
        mem.begin_chunk()
        x0, _ = generate_chunk(model, mem, torch.tensor([actions[3]]), seed=5, chunk_index=0, context=ctx)
        want = model.decode(x0)[0].numpy()
    assert np.array_equal(got, want)


def test_session_observe_refuses_bad_input():
    from reverie.engine.session import Session
    from tinyworld import TinyWorld, list_memory_factory

    model = TinyWorld(chunk_frames=3)
    frames = np.stack([texture(16, 16, s, block=4) for s in range(4)])
    session = Session(model, frames[0], memory_factory=list_memory_factory)
    session.observe(frames[1:4], [1, 1, 3])  # one whole chunk
    assert session.memory.frames_committed == 6
    with pytest.raises(ValueError, match="multiple of 3"):
        session.observe(frames[1:3], [1, 1])
    with pytest.raises(ValueError, match="uint8"):
        session.observe(frames[1:4].astype(np.float32), [1, 1, 1])
    with pytest.raises(ValueError, match="outside 0..26"):
        session.observe(frames[1:4], [1, 1, 27])
    session.step(1)
    with pytest.raises(RuntimeError, match="pending"):
        session.observe(frames[1:4], [1, 1, 1])


# --- end to end --------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:ignoring the bundled salience head")
def test_the_bench_runs_end_to_end_on_a_tiny_model(tmp_path, capsys):
    pytest.importorskip("vizdoom")
    from reverie.engine.cli import main

    code = main(["bench", "freeplay", "--json", "--model-arg", "pretrained=false", "--model-arg", "config=tiny",
                 "--episodes", "1", "--frames", "40", "--context", "3", "--bank-frames", "50",
                 "--out", str(tmp_path)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"model", "policy", "maps", "fps", "real_time_fps", "episodes", "frames"}
    assert list(result["maps"]) == ["maze", "freedoom2-map02"] and result["policy"] == "dual"
    for m in result["maps"].values():
        assert {"segments", "turn_agreement", "turn_agreement_real", "turn_frames"} <= set(m)
        assert [(s["start"], s["end"]) for s in m["segments"]] == [(1, 32), (33, 40)]
        first = m["segments"][0]
        assert set(first) == {"start", "end", "realism_psnr", "realism_psnr_real", "sharpness_ratio",
                              "sharpness_ratio_real", "motion_ratio", "psnr_vs_game", "psnr_repeat_last"}
        assert 5 < first["realism_psnr"] <= PSNR_CAP and first["psnr_vs_game"] > 5
        assert m["segments"][1]["psnr_vs_game"] is None
    assert result["fps"] > 0 and result["real_time_fps"] > 0
    assert json.loads((tmp_path / "freeplay.json").read_text()) == result
    png = (tmp_path / "freeplay_strip.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (3 * (W * 4 + 4) + 4, 2 * H * 4 + 3 * 4)  # frames 1, 4 and 16 of 40
    idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    pygame = pytest.importorskip("pygame")
    assert pygame.image.load(str(tmp_path / "freeplay_strip.png")).get_size() == (width, height)
