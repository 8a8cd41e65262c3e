"""The cost model: closed-form FLOPs against torch's FLOP counter, the meta-device memory tracer, and
the 2K predictions docs/benchmarks.md publishes."""


import pytest
import torch

from swifti2v.bench.cost import CostConfig, run_cost, to_markdown
from swifti2v.models import debug, specs
from swifti2v.models.adapter import token_timesteps
from swifti2v.models.counting import DiTCall, dit_flops, measured_flops, trace_peak
from swifti2v.models.modulation import frame_modulated_forward


def _forward(model, call: DiTCall, timesteps: str, device="cpu", dtype=torch.float32):
    c = model.config
    x = torch.randn(1, c.in_channels, call.frames, call.height, call.width, device=device, dtype=dtype)
    text = torch.randn(1, call.text_tokens, c.text_dim, device=device, dtype=dtype)
    image = (torch.randn(1, call.image_tokens, c.image_dim, device=device, dtype=dtype)
             if call.image_tokens else None)
    frame_t = torch.full((1, call.frames), 500.0, device=device)
    frame_t[:, 0] = 0.0
    if timesteps == "frame":
        return lambda: frame_modulated_forward(model, x, frame_t, text, image)
    p = c.patch_size
    t = (token_timesteps(frame_t, (call.height // p[1]) * (call.width // p[2])) if timesteps == "token"
         else torch.tensor([500.0], device=device))
    return lambda: model(hidden_states=x, timestep=t, encoder_hidden_states=text, encoder_hidden_states_image=image,
                         return_dict=False)


@pytest.mark.parametrize("build", ["tiny_stage1_transformer", "tiny_stage2_transformer", "bench_stage2_transformer"])
@pytest.mark.parametrize("timesteps", ["uniform", "frame", "token"])
def test_closed_form_flops_equal_torch_flop_counter_on_cpu(build, timesteps):
    torch.manual_seed(0)
    model = getattr(debug, build)()
    cfg = dict(model.config)
    call = DiTCall(5, 8, 12, text_tokens=7, image_tokens=4 if cfg.get("image_dim") else 0,
                   mixed_timesteps=timesteps != "uniform")
    counted = measured_flops(_forward(model, call, timesteps))
    assert dit_flops(cfg, call, per_frame_modulation=timesteps != "token")["total"] == counted


@pytest.mark.parametrize("cfg,image", [(specs.WAN22_TI2V_5B, 0), (specs.WAN21_I2V_14B, specs.CLIP_TOKENS)])
def test_closed_form_flops_equal_counter_at_full_size_on_meta(cfg, image):
    model = specs.meta_transformer(cfg)
    call = DiTCall(5, 88, 160, image_tokens=image, mixed_timesteps=True)  # a 2K CSG window: 17,600 tokens
    assert call.tokens(cfg) == 17_600
    counted = measured_flops(_forward(model, call, "frame", "meta", torch.bfloat16))
    assert dit_flops(cfg, call)["total"] == counted
    assert specs.param_count(model) == pytest.approx(16.39e9 if image else 5.0e9, rel=0.01)


def test_trace_peak_counts_live_tensors_and_views_once():
    def work():
        a = torch.empty(1000, device="meta")  # 4,000 bytes
        b = a + 1  # 8,000 live
        view = b[:10]  # a view: no new bytes
        del a, b  # b's storage lives on in the view
        c = view * 2  # 4,000 (view's storage) + 40
        return c

    assert trace_peak(work) == 8000


@pytest.mark.parametrize("cfg,image", [(specs.WAN22_TI2V_5B, 0), (specs.WAN21_I2V_14B, specs.CLIP_TOKENS)])
def test_activation_peak_does_not_depend_on_the_number_of_blocks(cfg, image):
    """dit_memory traces two blocks: the peak of a deeper stack of the same blocks is the same."""
    from swifti2v.footprint import _dit_memory, dit_memory

    call = DiTCall(5, 16, 24, image_tokens=image, mixed_timesteps=True)
    deeper = _dit_memory({**cfg, "num_layers": 5}, call, per_token=True)
    assert dit_memory(cfg, call) == pytest.approx(deeper)
    assert deeper["activations_gib"] > deeper["input_gib"] > 0


def test_per_frame_modulation_saves_the_per_token_tensor_at_2k():
    r = run_cost(CostConfig(preset="wan-2k-refine"))
    window = r["rows"]["stage2"]
    assert window["tokens_per_call"] == 17_600 and window["calls"] == 7 * 8
    d = 3072
    assert window["per_token_modulation_gib"] * 2**30 >= 17_600 * 6 * d * 4, "at least the fp32 (B, L, 6, D) tensor"
    modes = r["memory_modes"]
    assert modes["low"]["peak"] <= 22.0 < modes["balanced"]["peak"] < modes["fast"]["peak"]
    t = r["totals"]
    assert t["swifti2v"]["tflop"] < t["swifti2v_end_to_end_stage2"]["tflop"] < t["baseline"]["tflop"] / 100
    assert "| low |" in to_markdown(r)


def test_csg_costs_less_than_end_to_end_for_long_clips_on_bench_cpu():
    short, long = (run_cost(CostConfig(preset="bench-cpu", frames=f))["rows"] for f in (33, 257))
    assert short["stage2"]["tflop"] > short["stage2_end_to_end"]["tflop"], "context overhead at 33 frames"
    assert long["stage2"]["tflop"] < 0.5 * long["stage2_end_to_end"]["tflop"]
    assert long["stage2"]["activations_gib"] == pytest.approx(short["stage2"]["activations_gib"])



def test_context_parallel_cost_splits_compute_and_counts_the_all_to_alls():
    """K GPUs: DiT compute / K, Ulysses sends 4 x (K-1)/K of each rank's q, k, v, o per layer (bf16) plus the
    output gather; ring passes k, v on K-1 times; the tiled decode's tiles spread; 40 heads refuse K=16."""
    from swifti2v.bench.cost import comm_bytes, scaling_summary
    from swifti2v.models.counting import DiTCall

    r = run_cost(CostConfig(preset="wan-2k-refine", gpus=(1, 2, 4, 16)))
    one, two, four, sixteen = r["parallel"]
    assert one["seconds"] == pytest.approx(one["stage1"]["compute_s"] + one["stage2"]["compute_s"] + one["vae_s"])
    assert one["stage2"]["comm_s"] == 0 and two["stage2"]["compute_s"] == pytest.approx(one["stage2"]["compute_s"] / 2)
    assert one["seconds"] > two["seconds"] > four["seconds"] and not sixteen["fits"] and "40 heads" in sixteen["why"]
    assert four["peak_gib"]["balanced"] < one["peak_gib"]["balanced"]
    cfg = {"num_attention_heads": 24, "attention_head_dim": 128, "num_layers": 30, "patch_size": [1, 2, 2],
           "in_channels": 96, "out_channels": 48}
    call = DiTCall(frames=5, height=88, width=160)  # 5 x 44 x 80 = 17,600 tokens
    local = 17_600 / 4
    gather = 3 * local * 48 * 4 * 2  # the other 3 GPUs get this GPU's output (48 channels x 2x2 patch, bf16)
    assert comm_bytes(cfg, call, 4, "ulysses") == pytest.approx(30 * 4 * local * 3072 * 2 * 3 / 4 + gather)
    assert comm_bytes(cfg, call, 4, "ring") == pytest.approx(30 * 2 * local * 3072 * 2 * 3 + gather)
    assert comm_bytes(cfg, call, 1, "ulysses") == 0
    assert "stops paying at 4" in scaling_summary([{"gpus": 1, "fits": True, "seconds": 10.0},
                                                    {"gpus": 2, "fits": True, "seconds": 6.0},
                                                    {"gpus": 4, "fits": True, "seconds": 5.5}])
    assert "| 16 | stage1: 40 heads" in to_markdown(r)


@pytest.mark.parametrize(("quant", "per_weight", "scale_bytes"), [("Q8_0", 34 / 32, 0), ("Q4_K", 144 / 256, 0),
                                                                  ("int8", 1.0, 4)])
def test_quantized_block_bytes_equal_a_hand_count(quant, per_weight, scale_bytes):
    """One Wan block of the 14B I2V DiT (dim D, ffn F), counted by hand: the eight attention projections, the
    two CLIP-image projections and the two FFN weights quantized; their biases, the q/k norms, the cross-
    attention norm and the modulation table bf16; int8 adds a per-row fp32 scale."""
    from swifti2v.footprint import quantized_gib

    D, F = 5120, 13824
    quantized = 10 * D * D + 2 * D * F
    rows = 10 * D + F + D  # output rows of those ten D x D projections and the two FFN layers
    bf16 = 10 * D + F + D + 4 * D + D + 2 * D + 6 * D  # biases, norm_q/k x2, norm_added_k, norm2, modulation
    hand = quantized * per_weight + rows * scale_bytes + 2 * bf16
    got = quantized_gib(specs.meta_transformer(specs.WAN21_I2V_14B), quant)
    assert got["block_gib"] * 2**30 == pytest.approx(hand, rel=1e-9)
    print(f"{quant}: one 14B block {got['block_gib']:.3f} GiB, the DiT {got['gib']:.2f} GiB")


def test_bench_cost_compares_quants_per_memory_mode():
    r = run_cost(CostConfig(preset="bench-cpu", quants=("none", "fp8", "Q8_0", "Q4_K")))
    rows = {x["quant"]: x for x in r["quant"]}
    assert rows["none"]["peak_gib"] == {m: r["memory_modes"][m]["peak"] for m in ("fast", "balanced", "low")}
    for stage in ("stage1_gib", "stage2_gib"):
        assert rows["Q4_K"][stage] < rows["Q8_0"][stage] < rows["none"][stage]
    assert rows["Q4_K"]["peak_gib"]["fast"] < rows["none"]["peak_gib"]["fast"]
    assert rows["fp8"]["seconds"] < rows["none"]["seconds"] < rows["Q4_K"]["seconds"]
    assert "| Q4_K |" in to_markdown(r)
