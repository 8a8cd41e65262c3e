"""Prompt encoding with diffusers' own Wan helper (UMT5, padded to 512 tokens).

Wan2.1 I2V and Wan2.2 TI2V share the umt5-xxl encoder, so one encoding serves both stages. Wan2.1 I2V
mis-splits image tokens silently if the text context is not padded to 512, which the helper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import WanPipeline
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from swifti2v.errors import UserError

MAX_TOKENS = 512


@dataclass
class TextEncoder:
    tokenizer: PreTrainedTokenizerBase
    model: UMT5EncoderModel

    def __post_init__(self) -> None:
        self._helper = WanPipeline(tokenizer=self.tokenizer, text_encoder=self.model, vae=None, scheduler=None)

    @torch.no_grad()
    def encode(self, prompt: str, device: torch.device | str) -> torch.Tensor:
        """(1, 512, text_dim) embeddings; tokens past the prompt are zero (an empty prompt is allowed)."""
        n = len(self.tokenizer(prompt, add_special_tokens=True).input_ids)
        if n > MAX_TOKENS:
            raise UserError(f"--prompt is {n} tokens, over the encoder's {MAX_TOKENS}; shorten it")
        embeds, _ = self._helper.encode_prompt(
            prompt, do_classifier_free_guidance=False, max_sequence_length=MAX_TOKENS, device=self.model.device
        )
        return embeds.float().to(device)
