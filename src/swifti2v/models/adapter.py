"""One adapter over diffusers' WanTransformer3DModel: (x, sigma, window) -> velocity.

It packs the conditioning (channel-concat z_ref for Stage II `concat`, Wan2.1's mask+image latent for
Stage I), converts per-frame sigmas to Wan timesteps (per token when frames differ, so clean context
blocks get t=0), sets the RoPE positions of the window, and picks the expert of a two-expert (A14B) pair.

Prediction: Wan's DiTs output the velocity. A model trained with prediction "x0" outputs the clean latent
as a residual on the conditioning's own guess of it (z_ref for Stage II, the first frame's latent for
Stage I), and the velocity is (x - x0) / sigma. A DiT narrower than its latent channels (the `tiny`
models: 256 wide, 768 channels) cannot pass the noise through to a velocity, but can predict x0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from torch import nn

from swifti2v.models.modulation import frame_modulated_forward, install_frame_modulation
from swifti2v.models.parallel import is_parallel
from swifti2v.models.rope import install_positional_rope, rope_positions
from swifti2v.sampling.csg import Window

NUM_TRAIN_TIMESTEPS = 1000
PREDICTION_FILE = "swifti2v.json"  # beside a transformer's config.json: {"prediction": "x0"} (default velocity)


def frame_timesteps(frame_sigmas: torch.Tensor, batch: int) -> torch.Tensor:
    """Wan timesteps for per-frame sigmas (F,) or per-sample per-frame sigmas (B, F).

    Shape (B,) when all frames of a sample agree, else (B, F) per frame. Computed where the sigmas
    live (the CPU at inference), so deciding between the two costs no device sync.
    """
    t = frame_sigmas.float() * NUM_TRAIN_TIMESTEPS
    t = t.unsqueeze(0).expand(batch, -1) if t.dim() == 1 else t
    return t[:, 0] if bool((t == t[:, :1]).all()) else t


def high_noise(sigma: float, boundary_ratio: float) -> bool:
    """Wan's and diffusers' expert rule for an A14B pair: the high-noise expert at timestep >= boundary timestep.

    Compared as timesteps (the float32 sigma x 1000, as the model gets it), not as sigmas: the float32 sigma
    0.9 is 0.89999998, below a 0.9 boundary, yet its timestep is 900.0 — the tie goes to the high-noise expert.
    """
    timestep = float(torch.tensor(sigma, dtype=torch.float32) * NUM_TRAIN_TIMESTEPS)
    return timestep >= boundary_ratio * NUM_TRAIN_TIMESTEPS


def token_timesteps(frame_t: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """(B, F) -> (B, L) per token (frame-major token order: frame f owns tokens [f*HW, (f+1)*HW))."""
    return frame_t.repeat_interleave(tokens_per_frame, dim=1)


@dataclass
class WanVelocity:
    """Velocity callable for the samplers. Inputs fp32; the model runs in its own dtype."""

    transformer: WanTransformer3DModel
    text_embeds: torch.Tensor  # (B, 512, text_dim)
    image_embeds: torch.Tensor | None = None  # Wan2.1 I2V CLIP tokens
    extra_channels: torch.Tensor | None = None  # appended after x and the reference (Stage I condition)
    transformer_2: WanTransformer3DModel | None = None  # low-noise expert of a Wan2.2 A14B pair
    boundary_sigma: float | None = None  # `transformer` at timestep >= boundary x 1000 (high_noise), else 2
    runner: nn.Module | None = None  # what to call instead of `transformer` (a DDP/FSDP wrapper of it)
    prediction: str = "velocity"  # or "x0" (a residual on the conditioning's guess), "x0-skip" (see x0_guess)

    def __post_init__(self) -> None:
        for model in (self.transformer, self.transformer_2):
            if model is not None:
                install_positional_rope(model)
                install_frame_modulation(model)

    def expert(self, sigma: float) -> WanTransformer3DModel:
        if self.transformer_2 is None or self.boundary_sigma is None or high_noise(sigma, self.boundary_sigma):
            return self.transformer
        return self.transformer_2

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        """x: (B, C, F, H, W); sigma: scalar, per-frame (F,) or per sample and frame (B, F).

        Returns velocity (B, C, F, H, W), fp32.
        """
        b, _, f, h, w = x.shape
        frame_sigmas = sigma.reshape(-1).expand(f) if sigma.numel() == 1 else sigma.reshape(-1, f).squeeze(0)
        model = self.expert(float(frame_sigmas.max()))
        parts = [x]
        if window is not None and window.reference is not None:
            parts.append(window.reference)
        if self.extra_channels is not None:
            parts.append(self.extra_channels)
        streamed = getattr(model, "_swifti2v_streamed", False)  # weights in CPU memory, hooks bring them in
        device, dtype = (x.device if streamed else model.device), model.dtype
        hidden = torch.cat([p.to(device=device, dtype=dtype) for p in parts], dim=1)
        timestep = frame_timesteps(frame_sigmas, b).to(device, non_blocking=True)
        text = self.text_embeds.to(device=device, dtype=dtype)
        image = None if self.image_embeds is None else self.image_embeds.to(device=device, dtype=dtype)
        positions = None if window is None else window.positions
        call = self.runner if self.runner is not None and model is self.transformer else model
        with rope_positions(model, positions):
            # per-frame modulation (modulation.py); a streamed model's hooks, and a context-parallel model's
            # splitting of the timesteps with the tokens (parallel.py), need diffusers' own forward
            if timestep.dim() == 2 and call is model and not streamed and not is_parallel(model):
                out = frame_modulated_forward(model, hidden, timestep, text, image)
            else:
                if timestep.dim() == 2:  # the stock forward (a wrapper, streaming, parallel): per token
                    _, p_h, p_w = model.config.patch_size
                    timestep = token_timesteps(timestep, (h // p_h) * (w // p_w))
                out = call(hidden_states=hidden, timestep=timestep, encoder_hidden_states=text,
                           encoder_hidden_states_image=image, return_dict=False)[0]
        out = out.float()
        if self.prediction == "velocity":
            return out
        sigmas = frame_sigmas.to(out.device).view(-1, 1, f, 1, 1)
        x0 = out + self.x0_guess(x, window, sigmas if self.prediction == "x0-skip" else None)
        return (x.float() - x0) / sigmas.clamp_min(1e-4)

    def x0_guess(self, x: torch.Tensor, window: Window | None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """What the conditioning says x0 is: z_ref at the window (Stage II), the first frame's latent (Stage I).

        With `sigmas` ("x0-skip") the guess also reads the noisy input, as the least-squares blend of the two for
        a unit-variance departure from the conditioning's guess g: g + k (x - (1 - s) g), k = (1 - s) / ((1 - s)^2
        + s^2) — x itself at sigma 0, g at sigma 1 — so low noise is easy from the start (EDM's skip connection).
        """
        if window is not None and window.reference is not None:
            guess = window.reference.float().to(x.device)
        elif self.extra_channels is not None:
            guess = self.extra_channels[:, -x.shape[1] :, :1].float().to(x.device).expand_as(x)
        else:
            guess = torch.zeros_like(x, dtype=torch.float32)
        if sigmas is None:
            return guess
        keep = (1 - sigmas) / ((1 - sigmas) ** 2 + sigmas**2)
        return guess + keep * (x.float() - (1 - sigmas) * guess)


def loss_weight(velocity: WanVelocity, frame_sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample weight that makes the velocity MSE the model's own objective: sigma^2 for x0 (B, 1...)."""
    if velocity.prediction == "velocity":
        return torch.ones_like(frame_sigmas[:, -1])
    return frame_sigmas[:, -1].float() ** 2


def widen_patch_embedding(transformer: WanTransformer3DModel, extra_channels: int) -> WanTransformer3DModel:
    """Give the DiT `extra_channels` more input channels (zero-initialised): the `concat` refiner.

    At init the widened model equals the base model for any content of the new channels. The config
    is updated so `save_pretrained`/`from_pretrained` round-trip with the right `in_channels`.
    (`from_pretrained(..., in_channels=96, ignore_mismatched_sizes=True)` leaves the weight on meta.)
    """
    old = transformer.patch_embedding
    new = nn.Conv3d(
        old.in_channels + extra_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    transformer.patch_embedding = new
    out_channels = transformer.config.out_channels or old.in_channels
    transformer.register_to_config(in_channels=old.in_channels + extra_channels, out_channels=out_channels)
    return transformer
