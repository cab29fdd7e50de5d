"""wb.data.corruptions: CIFAR-10-C corruptions as batched tensor ops, and the shifted datasets.

The references (per image, numpy) are of two kinds: the ``imagecorruptions`` package at its own
(ImageNet) constants, run against our ops at the same constants, and our re-implementation below of
the formulas of make_cifar_c.py (hendrycks/robustness) with scipy / OpenCV / scikit-image / PIL at
the CIFAR constants, fed the same random draws as our ops. ``REFERENCE`` maps each corruption to its
numpy version; benchmarks/bench_corruptions.py times them.
"""
from __future__ import annotations

import importlib
import io
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.data import corruptions as C
from tests.conftest import requires_cifar, requires_fashion

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
          "fog", "elastic_transform"}


def make_images(n: int = 6, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields with a sharp rectangle and fine noise, plus black, white and grey patches."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, c, 5, 5, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    x[:, :, size // 4:size // 2 + 4, size // 3:size // 3 + 12] = torch.rand(n, c, 1, 1, generator=g)
    x = x + 0.04 * torch.randn(n, c, size, size, generator=g)
    u = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    u[0, :, :4, :4], u[0, :, -4:, -4:], u[1 % n, :, :6, :6] = 0, 255, 128
    return u


def hwc(u: torch.Tensor) -> np.ndarray:
    return u.permute(1, 2, 0).numpy()


def close_u8(ours: torch.Tensor, ref: np.ndarray, delta: float = 1e-3, max_share: float = 0.1) -> None:
    """Ours (uint8 [C, H, W]) against a reference's floats (HWC, 0..255) that ``np.uint8`` truncates: every
    value must equal the truncation of the reference moved by at most ``delta`` levels (float error of
    either side at an integer boundary: the reference's float64 often lands a hair below a level the
    formula hits exactly, e.g. brightness + 0.2 = + 51 levels), and at most ``max_share`` of the values
    may differ from the plain truncation at all."""
    r = torch.from_numpy(np.clip(np.asarray(ref, dtype=np.float64), 0, 255).reshape(ours.shape[1], ours.shape[2], -1))
    r = r.permute(2, 0, 1)
    o = ours.double()
    bad = (o < (r - delta).clamp(0, 255).floor()) | (o > (r + delta).clamp(0, 255).floor())
    assert not bool(bad.any()), (f"{int(bad.sum())} values further than {delta} level from the reference, "
                                 f"largest difference {float((o - r).abs()[bad].max()):.3f}")
    share = float((o != r.floor()).double().mean())
    assert share <= max_share, f"{share:.4f} of the values differ from the reference's truncation"


# ------------------------------------------------------------------ numpy references of make_cifar_c.py's formulas
# (images HWC uint8 in, floats in 0..255 out; random draws passed in)
def _sk_gaussian(a, sigma, **kw):
    from skimage.filters import gaussian
    return gaussian(a, sigma=sigma, channel_axis=-1 if a.ndim == 3 else None, **kw)


def _centre_zoom(a: np.ndarray, z: float) -> np.ndarray:
    from scipy.ndimage import zoom
    n = a.shape[0]
    ch = int(np.ceil(n / z))
    top = (n - ch) // 2
    out = zoom(a[top:top + ch, top:top + ch], (z, z, 1), order=1)
    t = (out.shape[0] - n) // 2
    return out[t:t + n, t:t + n]


def _magick_motion(a: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    from imagecorruptions.corruptions import _motion_blur  # the package's numpy port of ImageMagick's
    return np.round(np.clip(_motion_blur(a, radius, sigma, angle), 0, 255))


def ref_gaussian_noise(img, c, z):
    return np.clip(img / 255. + c * z, 0, 1) * 255


def ref_speckle_noise(img, c, z):
    x = img / 255.
    return np.clip(x + x * c * z, 0, 1) * 255


def ref_gaussian_blur(img, sigma):
    return np.clip(_sk_gaussian(img / 255., sigma), 0, 1) * 255


def ref_glass_blur(img, p, off):
    sigma, d, passes = p
    x = np.uint8(_sk_gaussian(img / 255., sigma) * 255)
    H, W = x.shape[:2]
    for k in range(passes):
        for a, h in enumerate(range(H - d, d, -1)):
            for b, w in enumerate(range(W - d, d, -1)):
                dx, dy = off[k, a, b]
                x[h, w] = x[h + dy, w + dx]  # the reference's tuple "swap" of views copies (test below)
    return np.clip(_sk_gaussian(x / 255., sigma), 0, 1) * 255


def ref_defocus_blur(img, p):
    import cv2
    r, alias = p
    grid = np.arange(-8, 9) if r <= 8 else np.arange(-r, r + 1)
    X, Y = np.meshgrid(grid, grid)
    k = (X ** 2 + Y ** 2 <= r ** 2).astype(np.float32)
    k = cv2.GaussianBlur(k / k.sum(), (3, 3) if r <= 8 else (5, 5), alias)
    x = img / 255.
    return np.clip(np.stack([cv2.filter2D(x[..., ch], -1, k) for ch in range(x.shape[2])], -1), 0, 1) * 255


def ref_motion_blur(img, p, angle):
    return _magick_motion(img, p[0], p[1], angle)


def ref_zoom_blur(img, zs):
    x = (img / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for z in zs:
        out += _centre_zoom(x, z)
    return np.clip((x + out) / (len(zs) + 1), 0, 1) * 255


def ref_snow(img, p, z, angle):
    import cv2
    loc, scale, zf, thr, radius, sigma, keep = p
    x = img.astype(np.float32) / 255.
    layer = _centre_zoom((loc + scale * z)[..., None], zf)
    layer[layer < thr] = 0
    layer = (np.clip(layer[..., 0], 0, 1) * 255).astype(np.uint8)
    layer = _magick_motion(layer, radius, sigma, angle)[..., None] / 255.
    x = keep * x + (1 - keep) * np.maximum(x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def ref_plasma(size, decay, draws):
    """Diamond-square as make_cifar_c's plasma_fractal, the uniforms taken from ``draws`` in order."""
    m, step, w = np.zeros((size, size)), size, 100.

    def wibbled(a):
        return a / 4 + w * (-w + 2 * w * next(draws))

    while step >= 2:
        h = step // 2
        corner = m[0::step, 0::step]
        sq = corner + np.roll(corner, -1, 0)
        m[h::step, h::step] = wibbled(sq + np.roll(sq, -1, 1))
        dr, ul = m[h::step, h::step], m[0::step, 0::step]
        m[0::step, h::step] = wibbled((dr + np.roll(dr, 1, 0)) + (ul + np.roll(ul, -1, 1)))
        m[h::step, 0::step] = wibbled((dr + np.roll(dr, 1, 1)) + (ul + np.roll(ul, -1, 0)))
        step //= 2
        w /= decay
    m -= m.min()
    return m / m.max()


def ref_fog(img, p, draws):
    plasma = ref_plasma(1 << (max(img.shape[:2]) - 1).bit_length(), p[1], iter(draws))
    x = img / 255.
    top = x.max()
    x = x + p[0] * plasma[:x.shape[0], :x.shape[1]][..., None]
    return np.clip(x * top / (top + p[0]), 0, 1) * 255


def ref_brightness(img, c):
    from skimage.color import hsv2rgb, rgb2hsv
    hsv = rgb2hsv(img / 255.)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def ref_saturate(img, p):
    from skimage.color import hsv2rgb, rgb2hsv
    hsv = rgb2hsv(img / 255.)
    hsv[..., 1] = np.clip(hsv[..., 1] * p[0] + p[1], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def ref_contrast(img, c):
    x = img / 255.
    m = x.mean((0, 1), keepdims=True)
    return np.clip((x - m) * c + m, 0, 1) * 255


def _pil(img):
    from PIL import Image
    return Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)


def ref_pixelate(img, c):
    from PIL import Image
    H, W = img.shape[:2]
    out = _pil(img).resize((int(W * c), int(H * c)), Image.BOX).resize((W, H), Image.BOX)
    return np.asarray(out, dtype=np.float64).reshape(img.shape)


def ref_jpeg_compression(img, q):
    from PIL import Image
    buf = io.BytesIO()
    _pil(img).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf), dtype=np.float64).reshape(img.shape)


def ref_elastic_transform(img, p, aff, field):
    import cv2
    from scipy.ndimage import map_coordinates
    H, W, ch = img.shape
    alpha, sigma, spread = (f * H for f in p)
    x = img.astype(np.float32) / 255.
    centre, s = np.float32([H, W]) // 2, min(H, W) // 3
    src = np.float32([centre + s, [centre[0] + s, centre[1] - s], centre - s])
    dst = src + (-spread + 2 * spread * aff).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(src, dst), (W, H), borderMode=cv2.BORDER_REFLECT_101)
    x = x.reshape(H, W, ch)
    dx, dy = ((_sk_gaussian(-1 + 2 * f, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32) for f in field)
    gy, gx, gz = np.meshgrid(np.arange(H), np.arange(W), np.arange(ch), indexing="ij")
    coords = [(gy + dy[..., None]).ravel(), (gx + dx[..., None]).ravel(), gz.ravel()]
    return np.clip(map_coordinates(x, coords, order=1, mode="reflect").reshape(H, W, ch), 0, 1) * 255


def draws(name: str, p, n: int, c: int, h: int, w: int, seed: int = 0) -> list[tuple]:
    """The random draws our op makes for each image, in the reference's form (extra arguments)."""
    rng = C._Rng(seed, torch.arange(n), name)
    if name in ("gaussian_noise", "speckle_noise"):
        z = rng.normal(0, c, h, w).double()
        return [(z[i].permute(1, 2, 0).numpy(),) for i in range(n)]
    if name == "glass_blur":
        off = ((rng.uniform(0, p[2], h - 2, w - 2, 2) * 2).floor().long() - 1).numpy()
        return [(off[i],) for i in range(n)]
    if name == "motion_blur":
        return [(float(a),) for a in rng.uniform(0).double() * 90 - 45]
    if name == "snow":
        z = rng.normal(0, 1, h, w).double()[:, 0].numpy()
        return [(z[i], float(rng.uniform(1).double()[i] * 90 - 135)) for i in range(n)]
    if name == "fog":
        size, out, s, k = 1 << (max(h, w) - 1).bit_length(), [[] for _ in range(n)], 0, 1
        while k <= size // 2:
            for _ in range(3):
                u = rng.uniform(s, k, k).double().numpy()
                s += 1
                for i in range(n):
                    out[i].append(u[i])
            k *= 2
        return [(o,) for o in out]
    if name == "elastic_transform":
        aff, field = rng.uniform(0, 3, 2).double().numpy(), rng.uniform(1, 2, h, w).double().numpy()
        return [(aff[i], field[i]) for i in range(n)]
    return [() for _ in range(n)]


REFERENCE = {
    "gaussian_noise": ref_gaussian_noise, "speckle_noise": ref_speckle_noise, "gaussian_blur": ref_gaussian_blur,
    "glass_blur": ref_glass_blur, "defocus_blur": ref_defocus_blur, "motion_blur": ref_motion_blur,
    "zoom_blur": ref_zoom_blur, "snow": ref_snow, "fog": ref_fog, "brightness": ref_brightness,
    "contrast": ref_contrast, "saturate": ref_saturate, "pixelate": ref_pixelate,
    "jpeg_compression": ref_jpeg_compression, "elastic_transform": ref_elastic_transform,
}
# the distance in levels from the reference's float that a value may take (see close_u8), and the
# share of values that may differ from its truncation at all; glass blur truncates to uint8 between
# its two blurs, so a flip there moves the result by up to a level
TOLERANCE = {name: (1e-3, 0.1) for name in REFERENCE}
TOLERANCE.update({name: (0, 0) for name in ("pixelate", "jpeg_compression", "motion_blur")})  # bit-exact
TOLERANCE["glass_blur"] = (1.0, 0.03)


# ------------------------------------------------------------------ API, identity, determinism
def test_list_and_families():
    names = C.list_corruptions()
    assert len(names) == len(set(names)) == 17 and set(names) == set(C.SEVERITIES)
    assert C.list_corruptions("noise") == ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]
    assert C.list_corruptions(channels=1) == [n for n in names if n != "saturate"]
    assert all(len(v) == 5 for v in C.SEVERITIES.values())
    assert [len(z) for z in C.SEVERITIES["zoom_blur"]] == [7, 12, 16, 21, 26]  # np.arange's float end points
    assert wb.data.list_corruptions is C.list_corruptions


@pytest.mark.parametrize("channels", [3, 1])
def test_severity_zero_is_identity(channels):
    x = make_images(3, channels, 28 if channels == 1 else 32)
    for name in C.list_corruptions(channels=channels):
        assert torch.equal(C.corrupt(x, name, 0, seed=5), x)


def test_deterministic_and_subset_consistent(monkeypatch):
    x = make_images(7)
    idx = torch.tensor([5, 0, 3])
    for name in C.list_corruptions():
        y = C.corrupt(x, name, 3, seed=1)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        assert torch.equal(y, C.corrupt(x, name, 3, seed=1)), name
        assert torch.equal(y[idx], C.corrupt(x[idx], name, 3, seed=1, index=idx)), name
        assert not torch.equal(y, x), name
        other = C.corrupt(x, name, 3, seed=2)
        assert torch.equal(other, y) == (name not in RANDOM), name
    for name in ("shot_noise", "fog", "elastic_transform", "glass_blur"):
        whole = C.corrupt(x, name, 4, seed=1)
        monkeypatch.setattr(C, "_CHUNK", 3)  # chunk boundaries change nothing
        assert torch.equal(C.corrupt(x, name, 4, seed=1), whole), name
        monkeypatch.setattr(C, "_CHUNK", 512)


def test_severity_orders_the_damage():
    x = make_images(6)
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
                 "zoom_blur", "fog", "brightness", "contrast", "pixelate", "jpeg_compression"):
        err = [float((C.corrupt(x, name, s).float() - x.float()).abs().mean()) for s in range(6)]
        assert err[0] == 0 and all(a < b for a, b in zip(err, err[1:])), (name, err)


def test_grey_images_take_every_corruption_but_saturate():
    x = make_images(3, 1, 28)
    for name in C.list_corruptions(channels=1):
        y = C.corrupt(x, name, 5)
        assert y.shape == x.shape and not torch.equal(y, x), name
    with pytest.raises(ValueError, match="saturate needs 3-channel images.*gaussian_noise"):
        C.corrupt(x, "saturate", 1)


def test_bad_input():
    x = make_images(2)
    with pytest.raises(ValueError, match="unknown corruption 'rain'.*gaussian_noise, shot_noise"):
        C.corrupt(x, "rain", 1)
    for bad in (6, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="severity must be an integer 0..5"):
            C.corrupt(x, "fog", bad)
    with pytest.raises(TypeError, match="must be uint8"):
        C.corrupt(x.float() / 255, "fog", 1)
    with pytest.raises(ValueError, match="one integer per image"):
        C.corrupt(x, "fog", 1, index=[0, 1, 2])
    with pytest.raises(ValueError, match="valid families: noise, blur, weather, digital"):
        C.list_corruptions("rain")


# ------------------------------------------------------------------ the random numbers
def test_uniforms_and_normals_are_sound():
    rng = C._Rng(3, torch.arange(400), "test")
    u = rng.uniform(0, 1000)
    assert abs(float(u.mean()) - 0.5) < 0.002 and abs(float(u.var()) - 1 / 12) < 0.001
    assert 0 < float(u.min()) and float(u.max()) < 1
    a = u - 0.5
    assert abs(float((a[:, 1:] * a[:, :-1]).mean()) * 12) < 0.01  # neighbouring elements
    assert abs(float((a[1:] * a[:-1]).mean()) * 12) < 0.01        # neighbouring images
    assert abs(float(((rng.uniform(1, 1000) - 0.5) * a).mean()) * 12) < 0.01  # two streams
    assert torch.equal(C._Rng(3, torch.tensor([7, 2]), "test").uniform(0, 1000), u[[7, 2]])
    z = rng.normal(0, 1001)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    k = ((z - z.mean()) ** 4).mean() / z.var() ** 2
    assert abs(float(k) - 3) < 0.05  # Gaussian kurtosis


@pytest.mark.parametrize("lam", [0.3, 3.0, 9.5, 10.5, 40.0, 400.0])
def test_poisson_sampler_matches_the_pmf(lam):
    from scipy.stats import poisson
    n = 200_000
    k = C._poisson(torch.full((4, n // 4), lam), C._Rng(0, torch.arange(4), "p"), 0).flatten().long()
    assert float((k.float() - k.float().round()).abs().max()) == 0 and int(k.min()) >= 0
    hist = torch.bincount(k).double() / n
    pmf = torch.from_numpy(poisson.pmf(np.arange(len(hist)), lam))
    tv = 0.5 * float((hist - pmf).abs().sum() + (1 - pmf.sum()))
    assert tv < 0.01, tv
    assert abs(float(k.double().mean()) - lam) < 4 * (lam / n) ** 0.5
    assert abs(float(k.double().var()) / lam - 1) < 0.02


# ------------------------------------------------------------------ against the numpy references (CIFAR constants)
def need(*modules: str):
    """Import the reference packages (the last one is returned) or skip the test: absent, or installed but
    not loading (OpenCV without libGL raises ImportError). ``pip install imagecorruptions`` brings them."""
    out = None
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # imagecorruptions imports pkg_resources
                out = importlib.import_module(name)
        except ImportError as e:
            why = f"{name} does not import ({e}): pip install imagecorruptions"
            if os.environ.get("CI"):  # CI installs the dev extra: a reference that is missing there is a defect
                pytest.fail(why)
            pytest.skip(why)
    return out


def _numpy_refs():
    need("scipy", "skimage", "cv2", "imagecorruptions")


def test_reference_glass_swap_copies():
    """make_cifar_c's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an RGB array assigns views: the
    second assignment reads the already overwritten pixel, so the 'swap' is a copy of (h', w')."""
    a = np.arange(12).reshape(2, 2, 3)
    a[0, 0], a[1, 1] = a[1, 1], a[0, 0]
    assert (a[0, 0] == [9, 10, 11]).all() and (a[1, 1] == [9, 10, 11]).all()


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_matches_numpy_reference(name):
    _numpy_refs()
    x = make_images(4)
    delta, max_share = TOLERANCE[name]
    for s in range(1, 6):
        p = C.SEVERITIES[name][s - 1]
        ours = C.corrupt(x, name, s, seed=0)
        extra = draws(name, p, *x.shape)
        for i in range(len(x)):
            close_u8(ours[i], REFERENCE[name](hwc(x[i]), p, *extra[i]), delta, max_share)


def test_jpeg_matches_pil_bit_for_bit_in_grey_and_at_any_quality():
    _numpy_refs()
    x = make_images(3, 1, 28)  # 28 pixels: the coder pads to whole blocks
    for s in range(1, 6):
        p = C.SEVERITIES["pixelate"][s - 1]
        ours = C.corrupt(x, "pixelate", s)
        for i in range(3):
            close_u8(ours[i], ref_pixelate(hwc(x[i]), p), 0, 0)
    for q in (*C.SEVERITIES["jpeg_compression"], 95, 100):
        for images in (x, make_images(3, 3, 24, seed=4)):
            ours = C._quantize(C._jpeg_compression(images.float() / 255, q, None))
            for i in range(3):
                close_u8(ours[i], ref_jpeg_compression(hwc(images[i]), q), 0, 0)


# ------------------------------------------------------------------ against imagecorruptions (its ImageNet constants)
IC = {"gaussian_noise": (.08, .12, 0.18, 0.26, 0.38), "shot_noise": (60, 25, 12, 5, 3),
      "impulse_noise": (.03, .06, .09, 0.17, 0.27), "speckle_noise": (.15, .2, 0.35, 0.45, 0.6),
      "contrast": (0.4, .3, .2, .1, .05), "brightness": (.1, .2, .3, .4, .5),
      "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
      "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
      "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), "jpeg_compression": (25, 18, 15, 10, 7)}


def _ours_at(name: str, p, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return C._quantize(C._OPS[name](x.float() / 255, p, C._Rng(seed, torch.arange(len(x)), name)))


@pytest.mark.parametrize("name", ["contrast", "brightness", "saturate", "defocus_blur"])
def test_matches_imagecorruptions(name):
    ic = need("cv2", "skimage", "imagecorruptions")
    from PIL import Image
    x = make_images(4)
    for s in range(1, 6):
        ours = _ours_at(name, IC[name][s - 1], x)
        for i in range(len(x)):  # the package's float result, before its np.uint8; saturating by up to 20x
            close_u8(ours[i], getattr(ic.corruptions, name)(Image.fromarray(hwc(x[i])), s), 1e-3, 0.15)


def test_motion_blur_matches_imagecorruptions_port_at_its_constants():
    need("cv2", "skimage", "imagecorruptions")
    x = make_images(4)
    for s in range(1, 6):  # radius up to 20: offsets leave the 32-pixel image and are dropped
        p = IC["motion_blur"][s - 1]
        ours = _ours_at("motion_blur", p, x)
        for i, (angle,) in enumerate(draws("motion_blur", p, *x.shape)):
            close_u8(ours[i], ref_motion_blur(hwc(x[i]), p, angle))


def test_noise_statistics_match_imagecorruptions():
    ic = need("cv2", "skimage", "imagecorruptions")
    np.random.seed(0)
    x = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    for s in range(1, 6):
        for name in ("gaussian_noise", "speckle_noise", "shot_noise", "impulse_noise"):
            ours = _ours_at(name, IC[name][s - 1], x).double().flatten()
            ref = torch.from_numpy(np.stack([ic.corrupt(hwc(x[i]), s, name) for i in range(16)])).double().flatten()
            if name == "impulse_noise":  # shares of pepper and salt; the rest untouched
                for v in (0, 255):
                    assert abs(float((ours == v).double().mean() - (ref == v).double().mean())) < 0.006, (s, v)
                assert bool(((ours == 0) | (ours == 255) | (ours == 128)).all())
            elif name == "shot_noise":  # the whole distribution of the few output levels
                h1, h2 = (torch.bincount(t.long(), minlength=256) / len(t) for t in (ours, ref))
                assert 0.5 * float((h1 - h2).abs().sum()) < 0.03, s
            else:
                assert abs(float(ours.mean() - ref.mean())) < 0.5, (name, s)
                assert abs(float(ours.std() / ref.std()) - 1) < 0.03, (name, s)


def test_jpeg_matches_imagecorruptions_at_its_qualities():
    ic = need("cv2", "skimage", "imagecorruptions")
    x = make_images(4)
    for s in range(1, 6):
        ours = _ours_at("jpeg_compression", IC["jpeg_compression"][s - 1], x)
        for i in range(4):
            close_u8(ours[i], ic.corrupt(hwc(x[i]), s, "jpeg_compression").astype(np.float64), 0, 0)


# ------------------------------------------------------------------ load with a corruption
def test_load_corrupted_generated_data():
    clean = wb.load("shapes", "test", subset=12, seed=3)
    ds = wb.load("shapes", "test", subset=12, seed=3, corruption="contrast", severity=2)
    assert ds.name == "shapes/contrast-2" and "contrast at severity 2" in ds.source
    assert torch.equal(ds.labels, clean.labels) and ds.mean == clean.mean
    assert torch.equal(ds.images, C.corrupt(clean.images, "contrast", 2))
    assert wb.load("shapes", "test", subset=12, seed=3, corruption="contrast", severity=0).name == "shapes"


def test_load_bad_corruption_arguments():
    with pytest.raises(ValueError, match="needs a severity"):
        wb.load("shapes", "test", corruption="fog")
    with pytest.raises(ValueError, match="needs a corruption"):
        wb.load("shapes", "test", severity=2)
    with pytest.raises(ValueError, match="unknown corruption 'rain'; valid names: gaussian_noise"):
        wb.load("shapes", "test", corruption="rain", severity=2)
    with pytest.raises(ValueError, match="severity must be an integer 0..5"):
        wb.load("shapes", "test", corruption="fog", severity=6)


@requires_cifar
def test_load_cifar10_corrupted_subset_matches_the_whole_split():
    full = wb.load("cifar10", "test")
    sub = wb.load("cifar10", "test", subset=20, seed=1)
    w = torch.rand(3 * 32 * 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    key = full.images.view(len(full), -1).double() @ w  # a fingerprint per image, to find the subset's places
    pos = torch.tensor([int((key - k).abs().argmin()) for k in sub.images.view(20, -1).double() @ w])
    assert torch.equal(full.images[pos], sub.images)
    ds = wb.load("cifar10", "test", corruption="fog", severity=3, subset=20, seed=1)
    assert ds.name == "cifar10/fog-3" and "fog at severity 3" in ds.source and torch.equal(ds.labels, sub.labels)
    assert torch.equal(ds.images, C.corrupt(full.images[pos], "fog", 3, index=pos))
    again = wb.load("cifar10", "test", corruption="fog", severity=3, subset=20, seed=1, corruption_seed=1)
    assert not torch.equal(again.images, ds.images)


@requires_fashion
def test_load_fashion_mnist_corrupted(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "/nonexistent")
    ds = wb.load("fashion_mnist", "test", corruption="gaussian_noise", severity=2, subset=10)
    assert ds.images.shape == (10, 1, 28, 28) and ds.name == "fashion_mnist/gaussian_noise-2"
    with pytest.raises(ValueError, match="saturate needs 3-channel"):
        wb.load("fashion_mnist", "test", corruption="saturate", severity=2, subset=10)


# ------------------------------------------------------------------ appearance shifts
def edge_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, the correlation of the gradient magnitudes of the grey images."""
    def edges(u):
        v = u.float().mean(1)
        e = ((v[:, 1:, :-1] - v[:, :-1, :-1]) ** 2 + (v[:, :-1, 1:] - v[:, :-1, :-1]) ** 2).sqrt().flatten(1)
        return e - e.mean(1, keepdim=True)
    ea, eb = edges(a), edges(b)
    return (ea * eb).sum(1) / (ea.norm(dim=1) * eb.norm(dim=1))


def test_shifted_datasets_are_registered():
    assert {"cifar10_shifted", "fashion_mnist_inverted", "fashion_mnist_textured"} <= set(wb.data.list_datasets())


def test_style_shift_changes_colour_keeps_grey_and_edges():
    x = make_images(6)
    y = C.style_shift(x, seed=1)
    assert torch.equal(y, C.style_shift(x, seed=1)) and not torch.equal(y, C.style_shift(x, seed=2))
    assert torch.equal(y[[4, 1]], C.style_shift(x[[4, 1]], seed=1, index=[4, 1]))
    assert float((y.float() - x.float()).abs().mean()) > 20
    grey = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    g = C.style_shift(grey, seed=1).int()
    assert int((g.amax(1) - g.amin(1)).max()) <= 1  # the hue rotation leaves grey grey
    red = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 200
    assert bool((C.style_shift(red).float().mean((2, 3)).argmax(1) != 0).all())  # red is red no more

    sharp = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    sharp[:, :, 8:24, 10:20] = torch.tensor([20, 60, 120], dtype=torch.uint8).view(1, 3, 1, 1)
    corr = edge_correlation(sharp, C.style_shift(sharp, seed=1))
    assert float(corr.min()) > 0.5, corr  # the rectangle's edges are still where they were
    with pytest.raises(ValueError, match="3-channel"):
        C.style_shift(x[:, :1])


def test_invert_and_texture_overlay():
    x = make_images(4, 1, 28)
    assert torch.equal(C.invert(x), 255 - x)
    t = C.texture_overlay(x, seed=1)
    assert torch.equal(t, torch.maximum(t, x)) and torch.equal(t[x >= 153], x[x >= 153])
    assert torch.equal(t, C.texture_overlay(x, seed=1)) and torch.equal(t[[2]], C.texture_overlay(x[[2]], 1, [2]))
    black = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    tb = C.texture_overlay(black).float()
    assert float(tb.std()) > 20 and float(tb.max()) <= 153
    with pytest.raises(ValueError, match="strength"):
        C.texture_overlay(x, strength=0)


@requires_cifar
def test_cifar10_shifted_dataset():
    clean = wb.load("cifar10", "test", subset=50, seed=2)
    ds = wb.load("cifar10_shifted", "test", subset=50, seed=2)
    assert ds.name == "cifar10_shifted" and "style shift" in ds.source and torch.equal(ds.labels, clean.labels)
    assert float((ds.images.float() - clean.images.float()).abs().mean()) > 20
    assert float(edge_correlation(clean.images, ds.images).mean()) > 0.6  # objects and layout kept
    assert torch.equal(ds.images, wb.load("cifar10_shifted", "test", subset=50, seed=2).images)


@requires_fashion
def test_fashion_mnist_shifted_datasets(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "/nonexistent")
    clean = wb.load("fashion_mnist", "test", subset=30)
    inv = wb.load("fashion_mnist_inverted", "test", subset=30)
    tex = wb.load("fashion_mnist_textured", "test", subset=30)
    assert torch.equal(inv.images, 255 - clean.images) and torch.equal(inv.labels, clean.labels)
    assert torch.equal(tex.images, torch.maximum(tex.images, clean.images))
    assert float((tex.images.float() - clean.images.float()).abs().mean()) > 10
    assert inv.name == "fashion_mnist_inverted" and tex.name == "fashion_mnist_textured"
