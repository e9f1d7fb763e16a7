"""The fast path (ONNX Runtime) against its fallback (PyTorch) on real photos, and an export cache
that is never trusted when it is corrupt, stale or from another version."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recommender.errors import BadOption
from recommender.images import load_image
from recommender.runtime import AGREEMENT, INT8_FLOAT_CONVS, Checked, accelerate, resolve_precision

from helpers import PYTHON, ROOT, backbone, demo_photos

PHOTOS = [load_image(p)[0] for p in demo_photos()[::10]]  # 12 real photos, one of each kind and more


@pytest.mark.parametrize(
    "name", ["tiny", *(pytest.param(n, marks=pytest.mark.slow) for n in ("efficientnet-lite0", "efficientnet-lite2"))]
)
def test_the_fast_path_gives_the_fallbacks_vectors_on_real_photos(name: str, tmp_path: Path) -> None:
    slow = backbone(name)
    fast = accelerate(slow, tmp_path, threads=1)
    assert isinstance(fast.net, Checked) and fast.net is not slow.net
    a, b = slow.embed(PHOTOS), fast.embed(PHOTOS)
    assert a.shape == b.shape == (len(PHOTOS), slow.dim)
    assert np.abs(a - b).max() < 1e-4
    assert fast.net.verified and not fast.net.failed
    if slow.trunk is not None:  # the activation maps the garment crop looks at come from the fast path too
        assert np.allclose(slow.feature_maps(PHOTOS[:3]), fast.feature_maps(PHOTOS[:3]), atol=1e-3)


def exports(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.onnx"))


def test_a_corrupt_stale_or_foreign_export_is_rebuilt_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recommender.runtime")
    tiny = backbone("tiny")
    accelerate(tiny, tmp_path, threads=1)
    net = next(p for p in exports(tmp_path) if "-net-" in p.name)
    good = net.read_bytes()

    def exported() -> int:
        n = sum("exported" in r.getMessage() and "-net-" in r.getMessage() for r in caplog.records)
        caplog.clear()
        return n

    assert exported() == 1
    accelerate(tiny, tmp_path, threads=1)
    assert exported() == 0  # a sound cache is used as it is

    net.write_bytes(good[: len(good) // 2])  # cut short (a crash while copying, a full disk)
    fast = accelerate(tiny, tmp_path, threads=1)
    assert exported() == 1 and net.read_bytes() == good
    assert np.abs(fast.embed(PHOTOS[:4]) - tiny.embed(PHOTOS[:4])).max() < 1e-4

    net.write_bytes(good.replace(b"images", b"imagez"))  # same size, other content: the hash says so
    accelerate(tiny, tmp_path, threads=1)
    assert exported() == 1 and net.read_bytes() == good

    meta = net.with_suffix(".json")
    meta.write_text(json.dumps({"key": "written-by-another-version", "sha256": json.loads(meta.read_text())["sha256"]}))
    accelerate(tiny, tmp_path, threads=1)
    assert exported() == 1

    meta.write_text("{not json")
    accelerate(tiny, tmp_path, threads=1)
    assert exported() == 1


def test_other_weights_are_another_export(tmp_path: Path) -> None:
    import torch

    from recommender.backbones import load_backbone

    a = load_backbone("tiny")
    b = load_backbone("tiny")
    with torch.no_grad():
        next(b.net.parameters()).add_(1.0)  # fine-tuned, or another release of the weights
    accelerate(a, tmp_path, threads=1)
    accelerate(b, tmp_path, threads=1)
    assert len([p for p in exports(tmp_path) if "-net-" in p.name]) == 2


def test_a_runtime_that_disagrees_with_pytorch_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from recommender.backbones import load_backbone

    honest = load_backbone("tiny")
    other = load_backbone("tiny")
    with torch.no_grad():
        for p in other.net.parameters():
            p.mul_(-1.0)
    wrong = accelerate(other, tmp_path, threads=1).net  # a session that computes something else
    assert isinstance(wrong, Checked)
    liar = Checked(wrong.session, honest.net, "tiny net")
    batch = honest._batch(PHOTOS[:2])
    with caplog.at_level(logging.WARNING, logger="recommender.runtime"):
        out = liar(batch)
    assert liar.failed and "disagrees" in caplog.text
    with torch.inference_mode():
        assert torch.allclose(out, honest.net(batch))  # PyTorch answered, and answers from now on


def test_without_onnxruntime_pytorch_serves_and_importing_loads_nothing_heavy() -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import recommender.runtime as r, recommender.quantize\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n"
        "from recommender.backbones import load_backbone\n"
        "b = load_backbone('tiny'); assert r.accelerate(b) is b\n"
        "print('ok')\n"
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", ["tiny", pytest.param("efficientnet-lite0", marks=pytest.mark.slow)])
def test_int8_vectors_stay_close_to_the_fallbacks_on_real_photos(name: str, tmp_path: Path) -> None:
    slow = backbone(name)
    fast = accelerate(slow, tmp_path, threads=1, precision="int8")
    assert isinstance(fast.net, Checked) and fast.net.min_cosine == AGREEMENT["int8"]
    assert any("-int8-" in p.name for p in exports(tmp_path))
    got, want = fast.embed(PHOTOS), slow.embed(PHOTOS)
    assert fast.net.verified and not fast.net.failed  # ONNX Runtime int8 served, PyTorch did not
    assert 0 < np.abs(got - want).max()  # it is another computation...
    assert cosines(got, want).mean() > 0.97 and cosines(got, want).min() > 0.9  # ... with the same answers
    if name == "efficientnet-lite0":  # its first three convolutions kept in float32 (one only: 0.974-0.987)
        # 0.993 held on November's CPUs; 0.990 on an AVX2-only AMD EPYC without VNNI (2026-12-07), whose int8 kernels
        # round differently (reduce_range, for U8S8 saturation, changed nothing there: 0.9904)
        assert cosines(got, want).mean() > 0.988


def test_int8_keeps_the_first_convolutions_in_float32(tmp_path: Path) -> None:
    import onnx

    accelerate(backbone("tiny"), tmp_path, threads=1, precision="int8")
    int8 = next(p for p in exports(tmp_path) if "-net-" in p.name and "-int8-" in p.name)
    graph = onnx.load(str(int8)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    float_convs = INT8_FLOAT_CONVS.get("tiny", 1)
    assert len(convs) > float_convs
    for i, conv in enumerate(convs):  # a quantized convolution reads its weights through DequantizeLinear
        assert (conv.input[1] in dequantized) == (i >= float_convs), conv.name


def test_auto_precision_is_int8_only_where_its_quality_was_measured(tmp_path: Path) -> None:
    assert resolve_precision("efficientnet-lite0", "auto") == resolve_precision("efficientnet-lite2", "auto") == "int8"
    assert resolve_precision("vgg16", "auto") == resolve_precision("tiny", "auto") == "fp32"
    assert resolve_precision("efficientnet-lite0", "fp32") == "fp32"  # an explicit choice wins
    fast = accelerate(backbone("tiny"), tmp_path, threads=1, precision="auto")
    assert isinstance(fast.net, Checked) and fast.net.min_cosine is None  # float32: checked elementwise
    assert not any("-int8-" in p.name for p in exports(tmp_path))


def test_a_corrupt_int8_export_is_rebuilt_and_a_bad_precision_is_refused(tmp_path: Path) -> None:
    tiny = backbone("tiny")
    first = accelerate(tiny, tmp_path, threads=1, precision="int8").embed(PHOTOS[:4])
    int8 = next(p for p in exports(tmp_path) if "-net-" in p.name and "-int8-" in p.name)
    good = int8.read_bytes()
    int8.write_bytes(good[: len(good) // 3])
    again = accelerate(tiny, tmp_path, threads=1, precision="int8")
    assert int8.read_bytes() == good  # quantized again, to the same file: the calibration photos are fixed
    assert np.array_equal(again.embed(PHOTOS[:4]), first) and not again.net.failed
    with pytest.raises(BadOption, match="precision"):
        accelerate(tiny, tmp_path, precision="fp16")


def test_an_int8_export_the_runtime_cannot_load_is_quantized_once_not_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A freshly quantized file that ONNX Runtime refused (an optimizer bug, no memory) counted as a cached one:
    deleted, quantized again, refused again, ... until a RecursionError, hours later. Now float32 serves."""
    import onnxruntime

    from recommender import quantize

    real, quantized = onnxruntime.InferenceSession, []
    real_quantize = quantize.quantize

    def refuse_int8(path: str, *args, **kw):  # type: ignore[no-untyped-def]
        if "-int8-" in path:
            raise RuntimeError("this graph cannot be loaded")
        return real(path, *args, **kw)

    def counting(*args, **kw):  # type: ignore[no-untyped-def]
        quantized.append(1)
        return real_quantize(*args, **kw)

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse_int8)
    monkeypatch.setattr(quantize, "quantize", counting)
    caplog.set_level(logging.WARNING, logger="recommender.runtime")
    fast = accelerate(backbone("tiny"), tmp_path, threads=1, precision="int8")
    assert len(quantized) == 1 and "int8 export of tiny-net cannot be loaded" in caplog.text and "float32 serves" in caplog.text
    again = accelerate(backbone("tiny"), tmp_path, threads=1, precision="int8")  # the next start: no second try
    assert len(quantized) == 1 and isinstance(again.net, Checked) and "could not load it before" in caplog.text
    assert isinstance(fast.net, Checked) and np.allclose(fast.embed(PHOTOS[:2]), backbone("tiny").embed(PHOTOS[:2]), atol=1e-4)


def test_when_only_the_trunk_exports_the_embedding_runs_one_pass_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data-parallel models run one pass per core, each on one thread. When the embedding itself stayed on PyTorch
    (its export failed), two such passes ran at once with every core's threads each: four threads on two cores."""
    from recommender import runtime

    real = runtime._session

    def no_net(module, name, *args, **kw):  # type: ignore[no-untyped-def]
        if name.endswith("-net"):
            raise RuntimeError("this graph does not export")
        return real(module, name, *args, **kw)

    monkeypatch.setattr(runtime, "_session", no_net)
    monkeypatch.setattr(runtime, "cores", lambda: 2)
    import dataclasses

    tiny = dataclasses.replace(backbone("tiny"), trunk=backbone("tiny").net.conv)  # its maps: a trunk to export
    fast = accelerate(tiny, tmp_path, threads=0)
    assert fast.net is tiny.net and isinstance(fast.trunk, Checked) and fast.lanes == 1
    monkeypatch.setattr(runtime, "_session", real)
    assert accelerate(tiny, tmp_path, threads=0).lanes == 2  # both on ONNX Runtime: one pass per core


def test_reduced_precision_that_disagrees_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    honest = backbone("tiny")
    checked = Checked(lambda batch: -honest.net(batch), honest.net, "tiny net", AGREEMENT["int8"])
    batch = honest._batch(PHOTOS[:2])
    with caplog.at_level(logging.WARNING, logger="recommender.runtime"):
        out = checked(batch)
    assert checked.failed and "disagrees" in caplog.text
    with torch.inference_mode():
        assert torch.allclose(out, honest.net(batch))


def test_bfloat16_where_the_cpu_has_it(tmp_path: Path) -> None:
    import torch

    from recommender.backbones import load_backbone

    slow = load_backbone("tiny")  # its own copy: bf16 turns the modules channels-last
    want = slow.embed(PHOTOS)
    fast = accelerate(slow, tmp_path, precision="bf16")
    if not torch.cpu._is_avx512_bf16_supported():
        assert fast is slow  # float32 serves, with a warning
        return
    assert isinstance(fast.net, Checked)
    got = fast.embed(PHOTOS)
    assert fast.net.verified and not fast.net.failed
    assert cosines(got, want).min() > AGREEMENT["bf16"]
    assert not list(tmp_path.iterdir())  # PyTorch itself: no export


FREED_MATRICES = """
import sys
import numpy as np
from recommender import runtime
if sys.argv[1] == "tuned":
    assert runtime.tune_allocator()
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
big = np.ones(16 << 20, np.uint8)
del big  # a big array freed: glibc then keeps arrays up to its size in its heap
base = rss_mb()
kept = [np.ones(8 << 20, np.uint8) for _ in range(20)]  # 160 MB of 8 MB matrices, as a fit makes them
last = kept.pop()  # the newest stays: the heap cannot shrink past it
del kept
print(rss_mb() - base)
"""


def test_tune_allocator_gives_freed_matrices_back_to_the_system() -> None:
    """The entry point's allocator settings: freed mid-sized matrices leave the process (a head fit freed
    and kept hundreds of MB under glibc's defaults)."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the settings are glibc's")
    held = {
        mode: int(
            subprocess.run([PYTHON, "-c", FREED_MATRICES, mode], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        )  # fmt: skip
        for mode in ("default", "tuned")
    }
    assert held["default"] >= 100, held  # glibc's own behaviour, which the setting is there to change
    assert held["tuned"] <= 20, held
