"""Streaming encode/decode (cache carried across windows) equals diffusers' one-shot calls."""

import pytest
import torch

from swifti2v.models.debug import tiny_vae_21, tiny_vae_22
from swifti2v.models.vae import WanVAE, frame_windows


@pytest.fixture(scope="module", params=["wan2.1", "wan2.2"])
def vae(request):
    torch.manual_seed(0)
    return WanVAE(tiny_vae_21() if request.param == "wan2.1" else tiny_vae_22())


@pytest.mark.parametrize("windows", [[1, 4, 4, 4], [5, 8], [13], [1, 12], [9, 4]])
def test_streaming_encode_equals_one_shot(vae, windows):
    x = torch.rand(1, 3, 13, 64, 96) * 2 - 1
    one_shot = vae.normalize(vae.vae.encode(x).latent_dist.mode())
    enc, parts, at = vae.encoder(), [], 0
    for n in windows:
        parts.append(enc(x[:, :, at : at + n]))
        at += n
    assert torch.equal(torch.cat(parts, dim=2), one_shot)
    assert one_shot.shape[2] == 4 and one_shot.shape[1] == vae.z_dim


@pytest.mark.parametrize("windows", [[1, 1, 1, 1], [1, 3], [2, 2], [4]])
def test_streaming_decode_equals_one_shot(vae, windows):
    z = torch.randn(1, vae.z_dim, 4, 4, 6)
    one_shot = vae.vae.decode(vae.denormalize(z)).sample
    dec, parts, at = vae.decoder(), [], 0
    for n in windows:
        parts.append(dec(z[:, :, at : at + n]))
        at += n
    out = torch.cat(parts, dim=2)
    assert out.shape == one_shot.shape == (1, 3, 13, 4 * vae.spatial, 6 * vae.spatial)
    assert torch.equal(out, one_shot)


def test_window_restart_is_what_streaming_fixes(vae):
    """Coding a later window alone (the public API) is wrong: that is why the wrapper exists."""
    x = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    full = vae.encode(x)
    alone = vae.normalize(vae.vae.encode(x[:, :, 5:9]).latent_dist.mode())
    assert alone.shape[2] != 1 or not torch.allclose(alone, full[:, :, 2:3], atol=1e-4)


def test_bad_windows_are_refused(vae):
    enc = vae.encoder()
    with pytest.raises(ValueError, match="1\\+4k"):
        enc(torch.zeros(1, 3, 4, 32, 32))
    enc(torch.zeros(1, 3, 1, 32, 32))
    with pytest.raises(ValueError, match="multiple of 4"):
        enc(torch.zeros(1, 3, 3, 32, 32))
    frames = [torch.zeros(1, 3, 8, 8)] * 9
    assert [w.shape[2] for w in frame_windows(frames)] == [1, 4, 4]
    with pytest.raises(ValueError, match="4k\\+1"):
        list(frame_windows(frames[:7]))


def test_tiled_decode_with_one_tile_is_the_streaming_decode(vae):
    z = torch.randn(1, vae.z_dim, 3, 4, 6)
    assert torch.equal(vae.decoder(tile=6)(z), vae.decoder()(z))


def test_tiled_decode_streams_block_by_block(vae):
    """Per-tile causal caches: decoding block by block equals decoding the blocks in one call."""
    z = torch.randn(1, vae.z_dim, 4, 8, 12)
    whole = vae.decoder(tile=6, overlap=2)(z)
    dec = vae.decoder(tile=6, overlap=2)
    parts = torch.cat([dec(z[:, :, i : i + 1]) for i in range(4)], dim=2)
    assert torch.equal(parts, whole)
    assert whole.shape == (1, 3, 13, 8 * vae.spatial, 12 * vae.spatial)


def test_tile_blend_weights_cover_every_pixel():
    """Overlaps ramp linearly from one tile to the next; every pixel has weight, none more than 1 per tile."""
    from swifti2v.models.vae import _blend_weight, _tiles

    vae = WanVAE(tiny_vae_21())
    total = torch.zeros(12 * 8, 20 * 8)
    for tile in _tiles(12, 20, tile=8, overlap=3):
        (y0, y1), (x0, x1), _ = tile
        weight = _blend_weight(vae, tile)
        assert weight.max() <= 1 and weight.min() > 0
        total[y0 * 8 : y1 * 8, x0 * 8 : x1 * 8] += weight
    assert total.min() > 0.9 and total.max() <= 1.0 + 1e-6, "the ramps of neighbours add up to ~1"


def test_tile_spans_cover_with_overlap():
    from swifti2v.models.vae import tile_spans

    assert tile_spans(10, 16, 4) == [(0, 10)]
    spans = tile_spans(88, 24, 4)
    assert spans[0][0] == 0 and spans[-1][1] == 88
    assert all(b - a == 24 for a, b in spans)
    assert all(spans[i][1] - spans[i + 1][0] >= 4 for i in range(len(spans) - 1))


def test_tile_major_decode_equals_tiled_streaming(vae):
    """Deferred decode (one tile through every block, one cache alive) == tiles block by block."""
    from swifti2v.models.vae import decode_tile_major

    z = torch.randn(1, vae.z_dim, 4, 8, 12)
    assert torch.equal(decode_tile_major(vae, z, tile=6, overlap=2), vae.decoder(tile=6, overlap=2)(z))
