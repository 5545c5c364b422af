"""An adversarial critic for the DiT's one-step frames: a loss that does not reward the average.

Trained on mean squared error alone, a one-step model predicts the mean of the frames its history could
lead to, a blur wherever the outcome is uncertain; fed back as history, the blur compounds until free play
is a wash. A critic that tells the model's frames from real ones penalises exactly that mean, as in
pix2pix-style image translation and in adversarial post-training of one-step video generators: the
regression keeps the frame on the game's track, the critic keeps it looking like a frame of the game.

`FrameCritic` is a small convolutional patch discriminator on single RGB frames (`[N, 3, H, W]` in
[-1, 1]) that scores overlapping cells of 8x8 pixels, each seeing about 38x38, so it judges texture and edges
locally rather than the layout of the whole frame. Its convolutions are spectrally normalised (a 1-Lipschitz
critic trains stably without a gradient penalty), and both sides use the hinge loss:

* critic: `mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`
* model: `-mean(D(fake))`

`adaptive_weight` scales the model's adversarial term against its regression term by the ratio of their
gradient norms at the model's last layer, as VQGAN does, so one `adv_weight` means the same share of the
update whatever the two losses' raw scales are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class FrameCritic(nn.Module):
    """Patch discriminator: frames `[N, 3, H, W]` in [-1, 1] -> logits `[N, H/8, W/8]`.

    Three stride-2 4x4 convolutions (`width`, `2 width`, `4 width` channels, leaky ReLU 0.2) and a 3x3
    convolution to one logit per cell, all spectrally normalised.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        if width < 1:
            raise ValueError(f"critic width must be >= 1, got {width}")
        chans = (3, width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(chans[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"FrameCritic takes frames [N, 3, H, W], got {tuple(frames.shape)}")
        return self.net(frames)[:, 0]


def critic_loss(critic: FrameCritic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the critic on real and (detached) model frames, both `[N, 3, H, W]`."""
    return F.relu(1.0 - critic(real)).mean() + F.relu(1.0 + critic(fake.detach())).mean()


def model_adv_loss(critic: FrameCritic, fake: torch.Tensor) -> torch.Tensor:
    """The model's adversarial loss on its frames `[N, 3, H, W]` (gradients flow into the frames)."""
    return -critic(fake).mean()


def adaptive_weight(regression: torch.Tensor, adversarial: torch.Tensor, last: torch.Tensor,
                    scale: float, max_weight: float = 1e4) -> torch.Tensor:
    """`scale * |grad regression| / |grad adversarial|` at the parameter `last` (the model's output layer),
    detached and clamped to [0, max_weight]; both losses keep their graphs for the backward pass."""
    g_reg = torch.autograd.grad(regression, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adversarial, last, retain_graph=True)[0]
    weight = g_reg.norm() / (g_adv.norm() + 1e-6)
    return (scale * weight).clamp(0.0, max_weight).detach()
