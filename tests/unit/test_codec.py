"""PixelCodec: the tiny models' lossless space-to-depth codec behind the Wan VAE interface."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

from swifti2v.models.codec import PixelCodec, deblock
from swifti2v.models.vae import WanVAE


@pytest.fixture
def clip():
    return torch.rand(1, 3, 13, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_round_trip_is_exact_and_block0_is_frame0_alone(clip):
    vae = WanVAE(PixelCodec())
    z = vae.encode(clip)
    assert z.shape == (1, 768, 4, 4, 6)
    assert torch.equal(vae.decode(z), clip)
    assert torch.equal(vae.encode(clip[:, :, :1]), z[:, :, :1])  # causal: frame 0 is coded alone


def test_streaming_windows_equal_one_shot(clip):
    vae = WanVAE(PixelCodec())
    z = vae.encode(clip)
    enc = vae.encoder()
    windows = [clip[:, :, :1], clip[:, :, 1:9], clip[:, :, 9:]]
    assert torch.equal(torch.cat([enc(w) for w in windows], dim=2), z)
    dec = vae.decoder()
    assert torch.equal(torch.cat([dec(z[:, :, i : i + 1]) for i in range(4)], dim=2), clip)


def test_normalisation_and_config_round_trip(tmp_path, clip):
    codec = PixelCodec(scale_factor_spatial=4)
    codec.save_pretrained(tmp_path)
    loaded = PixelCodec.from_config(PixelCodec.load_config(tmp_path))
    assert loaded.config.z_dim == 3 * 4 * 4 * 4 and loaded.config.latents_std[0] == 0.5
    raw = codec.encode(clip).latent_dist.mode()
    assert torch.allclose(WanVAE(loaded).encode(clip), raw / 0.5)


def test_bad_sizes_are_refused(clip):
    with pytest.raises(ValueError, match="multiple"):
        PixelCodec().pack(clip[..., :30], first=True)
    with pytest.raises(ValueError, match="1\\+4k"):
        PixelCodec().pack(clip[:, :, :4], first=True)
    with pytest.raises(ValueError, match="z_dim"):
        PixelCodec(z_dim=10)


def test_diffusers_i2v_conditioning_reads_it(clip):
    """WanImageToVideoPipeline.prepare_latents (mask + image latent) works on the codec unchanged."""
    pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=PixelCodec(),
                                   scheduler=FlowMatchEulerDiscreteScheduler(), transformer=None)
    image = clip[:, :, 0]
    _, cond = pipe.prepare_latents(image, 1, 768, 32, 48, 13, torch.float32, torch.device("cpu"),
                                   latents=torch.zeros(1, 768, 4, 4, 6))
    assert cond.shape == (1, 4 + 768, 4, 4, 6)
    assert torch.allclose(cond[:, 4:, :1], WanVAE(PixelCodec()).encode(image[:, :, None]))


def test_pca_recovers_a_subspace_and_the_fitted_codec_round_trips_through_a_folder(tmp_path):
    from swifti2v.models.codec import fit_pca, patch_vectors
    from swifti2v.models.components import _load_vae

    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(48, 6, generator=g))[0]  # data living in a 6-d subspace + an offset
    data = torch.randn(4000, 6, generator=g) * torch.tensor([5.0, 4, 3, 2, 1, 0.5]) @ basis.T + 0.3
    got, mean, var = fit_pca([(data[:2000], 1.0), (data[2000:], 1.0)], 6)
    assert torch.allclose(got @ got.T @ basis, basis, atol=1e-4)  # the same subspace
    assert torch.allclose(mean, torch.full((48,), 0.3), atol=0.2) and var[6:].abs().max() < 1e-4

    clip = torch.rand(2, 3, 9, 16, 16, generator=g) * 2 - 1
    vectors = patch_vectors(clip, spatial=2, temporal=4)
    assert vectors.shape == (2 * 3 * 8 * 8, 48)
    proj, mean, _ = fit_pca([(vectors, 1.0)], 48)  # every component: lossless
    codec = PixelCodec(scale_factor_spatial=2, projected_dim=48, fitted=True, latents_std=[0.7] * 48)
    codec.projection.copy_(proj)
    codec.offset.copy_(mean)
    codec.save_pretrained(tmp_path / "vae")
    loaded = _load_vae(str(tmp_path), "vae")
    assert torch.equal(loaded.projection, proj) and torch.equal(loaded.offset, mean)
    vae = WanVAE(loaded)
    assert torch.allclose(vae.decode(vae.encode(clip)), clip, atol=1e-4)
    loaded.to(torch.bfloat16)  # stored in a run dtype, it still codes in fp32
    assert vae.decode(vae.encode(clip)).dtype == torch.float32


def test_deblock_ramps_tile_edges_and_keeps_gradients():
    tiles = torch.arange(6.0).repeat_interleave(8).expand(1, 3, 1, 16, 48) / 6 - 0.5  # flat 8-px tiles
    smooth = deblock(tiles, 8, 4)
    steps = (smooth[..., 1:] - smooth[..., :-1])[..., 4:-4]  # the frame's outer half-tiles have no boundary
    assert torch.allclose(steps, torch.full_like(steps, 1 / 48), atol=1e-6)  # one even ramp, no step left
    gradient = torch.linspace(-1, 1, 48).expand(1, 3, 1, 16, 48)
    assert torch.allclose(deblock(gradient, 8, 2), gradient, atol=1e-6)
    assert torch.equal(deblock(tiles, 8, 0), tiles)


def test_a_deblocking_codec_decodes_through_the_stream_and_is_refused_past_half_a_patch(clip):
    vae = WanVAE(PixelCodec(deblock=2))
    z = vae.encode(clip)
    dec = vae.decoder()
    streamed = torch.cat([dec(z[:, :, i : i + 1]) for i in range(4)], dim=2)
    assert torch.allclose(streamed, deblock(clip, 8, 2)) and torch.allclose(vae.decode(z), streamed)
    with pytest.raises(ValueError, match="deblock 5 must be 0..4"):
        PixelCodec(deblock=5)
