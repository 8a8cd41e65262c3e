"""Per-frame timestep modulation for Wan DiTs (DESIGN.md §3).

diffusers' WanTransformer3DModel takes per-token timesteps (B, L) for windows whose frames sit at
different noise levels (CSG: clean anchor and neighbours, noisy blocks) and materialises the adaLN
modulation per token in fp32: (B, L, 6, D), ~1.5 GiB per 2K window of the 5B model, once more inside
every block. Every token of a frame shares its frame's timestep, so the same numbers can be kept per
frame, (B, F, 6, D), and broadcast over the frame's H*W tokens.

`frame_modulated_forward` is the model's forward with per-frame timesteps (B, F): the same submodules in
the same order (RoPE, patch embedding, condition embedder, blocks, output norm and projection), only the
modulation is broadcast per frame. Blocks get a subclass whose forward accepts per-frame modulation and
otherwise defers to diffusers' (a class swap: weights, hooks, LoRA and `compile_repeated_blocks` are
unaffected). tests/equivalence/test_modulation.py guards equality with the stock per-token path.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel, WanTransformerBlock

Tensor = torch.Tensor


def _per_frame(x: Tensor, frames: int) -> Tensor:
    """(B, L, D) -> (B, F, L/F, D): token order is frame-major."""
    b, length, d = x.shape
    return x.view(b, frames, length // frames, d)


def _modulate(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """x * (1 + scale) + shift with x (B, L, D) and scale/shift per frame (B, F, 1, D)."""
    return (_per_frame(x, scale.shape[1]) * (1 + scale) + shift).flatten(1, 2)


class FrameModulatedBlock(WanTransformerBlock):
    """A WanTransformerBlock that also takes modulation per frame (B, F, 6, D) with F < L."""

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor, temb: Tensor,
                rotary_emb) -> Tensor:
        if temb.ndim != 4 or temb.shape[1] == hidden_states.shape[1]:
            return super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)
        frames = temb.shape[1]
        # each (B, F, 1, D), fp32 as in diffusers
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table.unsqueeze(0) + temb.float()).chunk(
            6, dim=2)
        h = hidden_states
        x = _modulate(self.norm1(h.float()), scale, shift).type_as(h)
        h = (_per_frame(h.float(), frames) + _per_frame(self.attn1(x, None, None, rotary_emb), frames) * gate)
        h = h.flatten(1, 2).type_as(hidden_states)
        h = h + self.attn2(self.norm2(h.float()).type_as(h), encoder_hidden_states, None, None)
        x = _modulate(self.norm3(h.float()), c_scale, c_shift).type_as(h)
        out = _per_frame(h.float(), frames) + _per_frame(self.ffn(x).float(), frames) * c_gate
        return out.flatten(1, 2).type_as(hidden_states)


def install_frame_modulation(model: WanTransformer3DModel) -> WanTransformer3DModel:
    """Swap every block's class to FrameModulatedBlock (idempotent; state dict unchanged)."""
    for block in model.blocks:
        if type(block) is WanTransformerBlock:
            block.__class__ = FrameModulatedBlock
    return model


def frame_modulated_forward(
    model: WanTransformer3DModel,
    hidden_states: Tensor,
    frame_timesteps: Tensor,
    encoder_hidden_states: Tensor,
    encoder_hidden_states_image: Tensor | None = None,
) -> Tensor:
    """WanTransformer3DModel.forward with timesteps per latent frame. hidden_states (B, C, F, H, W);
    frame_timesteps (B, F). Returns the model output (B, C_out, F, H, W)."""
    install_frame_modulation(model)
    b, _, f, h, w = hidden_states.shape
    p_t, p_h, p_w = model.config.patch_size
    frames = f // p_t
    rotary_emb = model.rope(hidden_states)
    x = model.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # (B, L, D)
    temb, proj, text, image = model.condition_embedder(
        frame_timesteps[:, ::p_t].flatten(), encoder_hidden_states, encoder_hidden_states_image,
        timestep_seq_len=frames)
    proj = proj.unflatten(2, (6, -1))  # (B, F, 6, D)
    if image is not None:
        text = torch.cat([image, text], dim=1)
    for block in model.blocks:
        if torch.is_grad_enabled() and model.gradient_checkpointing:
            x = model._gradient_checkpointing_func(block, x, text, proj, rotary_emb)
        else:
            x = block(x, text, proj, rotary_emb)
    shift, scale = (model.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
    x = _modulate(model.norm_out(x.float()), scale, shift).type_as(x)
    x = model.proj_out(x)
    x = x.reshape(b, frames, h // p_h, w // p_w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
