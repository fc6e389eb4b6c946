"""``empanada-desktop infer`` with the new formats in and OME-Zarr out (block-wise on Dask)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from empanada_desktop.cli import main

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny_model():
    from empanada_desktop.backend.loading import register_native_model

    register_native_model("tiny", encoder="resnet18", seed=1)
    return "tiny"


def _volume(shape=(6, 48, 64)):
    rng = np.random.default_rng(0)
    return (rng.random(shape) * 255).astype(np.uint8)


def test_hdf5_in_ome_zarr_out_blockwise(tmp_path, tiny_model, capsys):
    volume = _volume()
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=volume).attrs["element_size_um"] = [0.03, 0.006, 0.006]
        f.create_dataset("other", data=volume)
    assert main(["infer", f"{tmp_path / 'v.h5'}", "--list-datasets"]) == 0
    assert "/raw" in capsys.readouterr().out
    out = tmp_path / "labels.zarr"
    code = main([
        "infer", "--model", tiny_model, f"{tmp_path / 'v.h5'}:/raw", "-o", str(out), "--device", "cpu",
        "--min-size", "1", "--block-size", "3,32,32", "--halo", "1,8,8", "--workers", "2", "--no-processes",
    ])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "8 blocks" in err and "16/16" in err
    group = zarr.open_group(str(out), mode="r")
    assert group["0"].shape == volume.shape and group["0"].dtype == np.int32
    scale = group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    np.testing.assert_allclose(scale, [0.03, 0.006, 0.006])
    assert group.attrs["multiscales"][0]["axes"][0]["unit"] == "micrometer"


def test_labels_inside_an_ome_zarr_image_and_a_tiff_from_mrc(tmp_path, tiny_model, capsys):
    import mrcfile

    volume = _volume((4, 32, 32))
    image = tmp_path / "cell.zarr"
    group = zarr.open_group(str(image), mode="w", zarr_format=2)
    group.create_array("0", data=volume, chunks=(2, 16, 16))
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space"} for n in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [40.0, 8.0, 8.0]}]}]}]
    out = image / "labels" / "mito"
    code = main(["infer", "--model", tiny_model, str(image), "-o", str(out), "--device", "cpu",
                 "--min-size", "1", "--workers", "1", "--no-processes", "--voxel-size", "40,8,8", "--unit", "nm"])
    assert code == 0, capsys.readouterr().err
    labels = zarr.open_group(str(image / "labels"), mode="r")
    assert labels.attrs["labels"] == ["mito"]
    mito = zarr.open_group(str(out), mode="r")
    assert mito.attrs["image-label"]["source"] == {"image": "../../"}
    assert mito["0"].shape == volume.shape

    with mrcfile.new(tmp_path / "t.mrc") as mrc:
        mrc.set_data(volume.astype(np.int16))
    assert main(["infer", "--model", tiny_model, str(tmp_path / "t.mrc"), "-o", str(tmp_path / "t.tif"),
                 "--device", "cpu", "--min-size", "1"]) == 0
    assert (tmp_path / "t.tif").exists()


def test_blockwise_options_need_zarr_output_and_job_script(tmp_path, tiny_model, capsys):
    volume = _volume()
    import tifffile

    tifffile.imwrite(tmp_path / "v.tif", volume)
    assert main(["infer", "--model", tiny_model, str(tmp_path / "v.tif"), "-o", str(tmp_path / "o.tif"),
                 "--workers", "2"]) == 2
    assert ".zarr" in capsys.readouterr().err
    pytest.importorskip("dask_jobqueue")
    code = main(["infer", "x", "--cluster", "slurm", "--print-job-script", "--cluster-option", "queue=gpu",
                 "--cluster-option", "memory=16GB", "--cluster-option", "cores=4",
                 "--cluster-option", "walltime=02:00:00", "--cluster-option", "job_extra=--gres=gpu:1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "#SBATCH -p gpu" in out and "#SBATCH --gres=gpu:1" in out and "#SBATCH -t 02:00:00" in out
    assert sys.executable in out and out.rstrip().endswith("--nthreads 1")


@pytest.mark.slow
def test_kill_then_rerun_gives_identical_labels(tmp_path, tiny_model):
    """SIGKILL the CLI mid-run; the same command finishes the job with the labels of a clean run."""
    volume = _volume((6, 32, 48))
    zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=volume.shape, chunks=(1, 32, 48),
                    dtype="uint8")[...] = volume
    common = ["--model", tiny_model, "--device", "cpu", "--min-size", "1", "--block-size", "1,32,48",
              "--halo", "1,0,0", "--workers", "1", "--no-processes"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def command(out):
        return [sys.executable, "-m", "empanada_desktop", "infer", str(tmp_path / "v.zarr"), "-o", str(out), *common]

    subprocess.run(command(tmp_path / "clean.zarr"), env=env, check=True, capture_output=True, timeout=300)
    state = tmp_path / "killed.zarr" / "empanada_work" / "blocks"
    process = subprocess.Popen(command(tmp_path / "killed.zarr"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and len(list(state.glob("*.npz"))) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    done = len(list(state.glob("*.npz")))
    assert 0 < done < 6
    result = subprocess.run(command(tmp_path / "killed.zarr"), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    clean = zarr.open_array(str(tmp_path / "clean.zarr" / "0"), mode="r")[...]
    resumed = zarr.open_array(str(tmp_path / "killed.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(resumed, clean)
