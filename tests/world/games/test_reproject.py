"""Camera reprojection against its closed forms (no game needed)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reverie.world.games.reproject import eye_motion, reproject_grid

H, W = 6, 8
U = torch.arange(W) + 0.5 - W / 2  # pixel centres from the image centre
V = torch.arange(H) + 0.5 - H / 2
F90 = (W / 2) / math.tan(math.radians(45))


def _depth(n=2):
    return torch.randint(1, 200, (n, H, W), generator=torch.Generator().manual_seed(0)).float()


def test_no_move_is_the_identity_whatever_the_depth():
    depth = _depth()
    depth[0, 0, 0] = 0  # nearer than a unit: still finite, still the identity
    ident = F.affine_grid(torch.eye(2, 3)[None].expand(2, 2, 3), [2, 3, H, W], align_corners=False)
    assert torch.allclose(reproject_grid(depth, torch.zeros(2, 4)), ident, atol=1e-6)


def test_a_turn_moves_every_pixel_by_its_angle_whatever_the_depth():
    turn = 10.0  # to the left: what is straight ahead now was to the left before
    grid = reproject_grid(_depth(), torch.tensor([[0.0, 0.0, turn, 0.0]] * 2))
    expect_x = torch.tan(torch.atan(U / F90) - math.radians(turn)) * F90 / (W / 2)
    assert torch.allclose(grid[..., 0], expect_x.expand(2, H, W), atol=1e-5)
    assert (grid[:, :, W // 2, 0] < 0).all()


def test_walking_ahead_pulls_pixels_towards_the_centre_by_their_depth():
    depth = _depth()
    ahead, unit = 20.0, 8.5
    grid = reproject_grid(depth, torch.tensor([[ahead, 0.0, 0.0, 0.0]] * 2), depth_unit=unit)
    dist = depth * unit
    shrink = dist / (dist + ahead)  # the earlier eye was `ahead` further away
    assert torch.allclose(grid[..., 0], (U / (W / 2)) * shrink, atol=1e-5)
    assert torch.allclose(grid[..., 1], (V[:, None] / (H / 2)) * shrink, atol=1e-5)


def test_a_rising_eye_slides_the_picture_down_near_things_most():
    depth = torch.full((1, H, W), 4.0)
    depth[0, :, W // 2:] = 40.0
    grid = reproject_grid(depth, torch.tensor([[0.0, 0.0, 0.0, 5.0]]))  # the eye rose 5 units since
    dy = grid[..., 1] - (V[:, None] / (H / 2))  # each pixel is fetched from higher up in the earlier frame
    assert (dy < 0).all() and (dy[0, :, : W // 2] < dy[0, :, W // 2:]).all()
    assert torch.allclose(dy[0, :, 0], torch.tensor(-5.0 * F90 / (4.0 * 8.5) / (H / 2)).expand(H))


def test_eye_motion_is_in_the_earlier_view_and_agrees_in_numpy_and_torch():
    cam0 = np.array([[10.0, 20.0, 41.0, 90.0]])  # facing +y
    cam1 = np.array([[13.0, 27.0, 43.0, 100.0]])
    m = eye_motion(cam0, cam1)
    assert np.allclose(m, [[7.0, 3.0, 10.0, 2.0]])  # 7 ahead, 3 to the right (+x when facing +y)
    assert np.allclose(eye_motion(torch.tensor(cam0), torch.tensor(cam1)).numpy(), m)
    wrap = eye_motion(np.array([0, 0, 0, 355.0]), np.array([0, 0, 0, 5.0]))
    assert wrap[2] == pytest.approx(10.0)
