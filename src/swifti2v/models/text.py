"""Prompt encoding as diffusers' Wan pipelines do it (cleaned prompt, UMT5, zero-padded to 512 tokens),
but running the encoder on the prompt's real tokens only: the padding is masked out of attention, so the
embeddings are the same (tests/integration/test_loading.py compares with diffusers' helper) at a fraction
of the compute, which is what makes the 5.7B encoder cheap to run on the CPU (memory modes).

Wan2.1 I2V and Wan2.2 TI2V share the umt5-xxl encoder, so one encoding serves both stages. Wan2.1 I2V
mis-splits image tokens silently if the text context is not padded to 512.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from swifti2v.errors import UserError

MAX_TOKENS = 512


@dataclass
class TextEncoder:
    tokenizer: PreTrainedTokenizerBase
    model: UMT5EncoderModel

    @torch.no_grad()
    def encode(self, prompt: str, device: torch.device | str) -> torch.Tensor:
        """(1, 512, text_dim) embeddings; tokens past the prompt are zero (an empty prompt is allowed)."""
        ids = self.tokenizer(prompt_clean(prompt), add_special_tokens=True, return_tensors="pt").input_ids
        n = ids.shape[1]
        if n > MAX_TOKENS:
            raise UserError(f"--prompt is {n} tokens, over the encoder's {MAX_TOKENS}; shorten it")
        if n == 0:  # nothing to encode (a tokenizer without special tokens, empty prompt)
            return torch.zeros(1, MAX_TOKENS, self.model.config.d_model, device=device)
        hidden = self.model(ids.to(self.model.device), attention_mask=torch.ones_like(ids).to(self.model.device))
        embeds = hidden.last_hidden_state.float()
        return torch.nn.functional.pad(embeds, (0, 0, 0, MAX_TOKENS - n)).to(device)
