"""The benchmark scripts run end to end at a tiny size, so they cannot rot unnoticed."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench"


@functools.cache
def load_script(name: str) -> ModuleType:
    """Import bench/<name>.py as a module; the bench folder is not a package."""
    module_name = f"bench_{name}"
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is built.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# --- bench/gpu.py ----------------------------------------------------------------


def test_gpu_bench_tiny_runs_every_mode(tmp_path: Path) -> None:
    results_path = tmp_path / "gpu.json"
    command = [
        sys.executable,
        str(BENCH / "gpu.py"),
        "--tiny",
        "--images",
        "1",
        # Inductor takes about 30 s per graph on two cores; eager only traces.
        "--compile-backend",
        "eager",
        "--json",
        str(results_path),
    ]
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    results = {row["mode"]: row for row in json.loads(results_path.read_text())}
    assert set(results) == {"plain", "cached", "fbc", "fp8", "fp8-dynamic", "compiled", "regional"}
    for mode in ("plain", "cached", "fbc", "compiled", "regional"):
        assert results[mode]["status"] == "ok", results[mode]
        assert results[mode]["seconds_per_image"] > 0
    for mode in ("fp8", "fp8-dynamic"):
        assert results[mode]["status"].startswith("skipped: options.fp8: needs a CUDA device")
        assert f"{mode:<12} skipped: " in completed.stdout
    assert "reference cache hits 1" in results["cached"]["note"]
    assert "blocks computed in" in results["fbc"]["note"]


def test_gpu_bench_rejects_unknown_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load_script("gpu").parse_args(["--tiny", "--modes", "plain,turbo"])

    assert caught.value.code == 2
    assert "--modes: unknown mode(s) turbo" in capsys.readouterr().err


def test_gpu_bench_flops_of_full_kontext_frame() -> None:
    gpu = load_script("gpu")
    scale = gpu.Scale(gpu.torch.device("cpu"), gpu.torch.bfloat16, 1024, 1024, text_tokens=512)

    image_tokens, text_tokens = gpu.tokens_per_step(
        gpu.FULL_TRANSFORMER, scale, with_reference=True
    )
    per_step = gpu.transformer_flops(gpu.FULL_TRANSFORMER, image_tokens, text_tokens)

    # 4096 frame + 4096 reference tokens, 512 text tokens: 8704 in all.
    assert (image_tokens, text_tokens) == (8192, 512)
    # 57 blocks x (24 d^2 L + 4 L^2 d) with d = 3072, L = 8704, about 165 TFLOP.
    assert 164e12 < per_step < 167e12


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_gpu_bench_peak_table(name: str, peak: float | None) -> None:
    assert load_script("gpu").peak_for_name(name) == peak


# --- bench/throughput.py -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_throughput_bench_small_run(tmp_path: Path) -> None:
    import ray

    throughput = load_script("throughput")
    spec_path = throughput.write_spec(tmp_path, frames=8, size=64, steps=1)
    frames = throughput.frame_inputs(throughput.load_spec(spec_path))

    figures = throughput.measure(tmp_path, spec_path, repeat=1)

    assert len(frames) == 8
    assert figures["frames"] == 8
    assert figures["plain_s"] > 0
    assert figures["backend_s"] > 0
    assert figures["attempts"] == 8
    assert 0 < figures["actor_generate_s"] < figures["run_s"]
    assert figures["ratio_run_plain"] == pytest.approx(figures["plain_s"] / figures["run_s"])
    # The session's Ray was running before, so the bench must leave it running.
    assert ray.is_initialized()
