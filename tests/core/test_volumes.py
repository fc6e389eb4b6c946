"""Every format opens lazily from small files made here with the formats' own libraries (DM
files, which no Python library writes, are built by hand from the format description)."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes import ImageSource, Spacing, list_datasets, open_image, split_dataset

RNG = np.random.default_rng(0)
VOLUME = (RNG.random((6, 20, 24)) * 60000).astype(np.uint16)


def check(source: ImageSource, expected: np.ndarray, fmt: str):
    assert source.format == fmt
    assert source.shape == expected.shape and source.dtype == expected.dtype and source.ndim == expected.ndim
    np.testing.assert_array_equal(source[...], expected)
    np.testing.assert_array_equal(source[2], expected[2])
    np.testing.assert_array_equal(source[1:5:2, 3:17, -5:], expected[1:5:2, 3:17, -5:])
    np.testing.assert_array_equal(source[-1, 4, :], expected[-1, 4, :])
    np.testing.assert_array_equal(np.asarray(source), expected)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[3], expected[3])
    assert clone.spacing == source.spacing
    clone.close()


# -- TIFF ---------------------------------------------------------------------------------------


def test_tiff_memmapped_and_compressed(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", VOLUME, imagej=True, resolution=(1 / 0.008, 1 / 0.008),
                     metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"})
    source = open_image(tmp_path / "a.tif")
    check(source, VOLUME, "tiff")
    assert isinstance(source._array, np.memmap)
    assert source.unit == "micrometer"
    np.testing.assert_allclose(source.voxel_size, (0.05, 0.008, 0.008))
    tifffile.imwrite(tmp_path / "b.tif", VOLUME, compression="zlib", photometric="minisblack")
    source = open_image(tmp_path / "b.tif")
    check(source, VOLUME, "tiff")
    assert not isinstance(source._array, np.ndarray) and source.chunks[0] == 1
    assert not source.spacing.known
    source.close()


def test_tiff_resolution_tags_in_centimetres(tmp_path):
    tifffile.imwrite(tmp_path / "r.tif", VOLUME[0], resolution=(1e7 / 5.0, 1e7 / 5.0), resolutionunit="CENTIMETER")
    source = open_image(tmp_path / "r.tif")
    assert source.ndim == 2 and source.unit == "micrometer"
    np.testing.assert_allclose(source.voxel_size, (1.0, 0.005, 0.005))
    tifffile.imwrite(tmp_path / "dpi.tif", VOLUME[0], resolution=(72, 72), resolutionunit="INCH")
    assert not open_image(tmp_path / "dpi.tif").spacing.known  # a screen default, not a pixel size


def test_ome_tiff_pyramid_levels(tmp_path):
    with tifffile.TiffWriter(tmp_path / "p.ome.tif") as tif:
        tif.write(VOLUME[0], subifds=1, tile=(16, 16), compression="zlib",
                  metadata={"axes": "YX", "PhysicalSizeX": 4.0, "PhysicalSizeY": 4.0, "PhysicalSizeXUnit": "nm"})
        tif.write(VOLUME[0, ::2, ::2], subfiletype=1, tile=(16, 16), compression="zlib")
    source = open_image(tmp_path / "p.ome.tif")
    assert source.unit == "nanometer" and source.voxel_size[1:] == (4.0, 4.0)
    assert len(source.levels) == 2 and source.levels[1].shape == (10, 12)
    np.testing.assert_array_equal(source.levels[1][...], VOLUME[0, ::2, ::2])
    assert source.levels[1].voxel_size[1:] == (8.0, 8.0)


def test_tiff_folder_is_one_volume(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(VOLUME.shape[0]):  # natural order: slice_2 before slice_10
        tifffile.imwrite(folder / f"slice_{z * 5}.tif", VOLUME[z])
    check(open_image(folder), VOLUME, "tiff-folder")
    tifffile.imwrite(folder / "slice_99.tif", VOLUME[0, :10])
    with pytest.raises(ImageReadError, match="slice_99.tif"):
        open_image(folder)[-1]


def test_png_and_colour_still_work(tmp_path):
    from PIL import Image

    rgb = (RNG.random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    source = open_image(tmp_path / "c.png")
    assert source.format == "png" and source.shape == (16, 16) and source.notes


# -- OME-Zarr and Zarr --------------------------------------------------------------------------


def _ome_zarr(path, zarr_format):
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("s0", data=VOLUME[None], chunks=(1, 2, 8, 8))
    group.create_array("s1", data=VOLUME[None, :, ::2, ::2], chunks=(1, 2, 8, 8))
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    datasets = [
        {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 50, 8, 8]}]},
        {"path": "s1", "coordinateTransformations": [{"type": "scale", "scale": [1, 50, 16, 16]}]},
    ]
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_04_and_05(tmp_path, zarr_format):
    path = tmp_path / "image.ome.zarr"
    _ome_zarr(path, zarr_format)
    source = open_image(path)
    check(source, VOLUME, "ome-zarr")
    assert source.voxel_size == (50.0, 8.0, 8.0) and source.unit == "nanometer"
    assert source.chunks == (2, 8, 8)
    assert [level.shape for level in source.levels] == [(6, 20, 24), (6, 10, 12)]
    assert source.levels[1].voxel_size == (50.0, 16.0, 16.0)
    np.testing.assert_array_equal(source.levels[1][3], VOLUME[3, ::2, ::2])
    level = pickle.loads(pickle.dumps(source.levels[1]))
    assert level.shape == (6, 10, 12)
    assert list_datasets(path)[0].multiscale


def test_plain_zarr_group_needs_a_choice(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", data=VOLUME, chunks=(2, 10, 12))
    group.create_array("mask", data=VOLUME > 30000, chunks=(2, 10, 12))
    with pytest.raises(ImageReadError, match="choose one"):
        open_image(tmp_path / "g.zarr")
    names = {info.name for info in list_datasets(tmp_path / "g.zarr")}
    assert names == {"raw", "mask"}
    check(open_image(f"{tmp_path / 'g.zarr'}:/raw"), VOLUME, "zarr")
    check(open_image(tmp_path / "g.zarr", dataset="raw"), VOLUME, "zarr")
    check(open_image(tmp_path / "g.zarr" / "raw"), VOLUME, "zarr")


# -- N5 -----------------------------------------------------------------------------------------


def write_n5(root: Path, name: str, array: np.ndarray, block, compression="gzip", attrs=None):
    """An N5 dataset written by the specification (x-fastest blocks, big-endian headers)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (root / "attributes.json").write_text(json.dumps({"n5": "4.0.0"}))
    (folder / "attributes.json").write_text(json.dumps({
        "dimensions": list(array.shape[::-1]), "blockSize": list(block[::-1]),
        "dataType": array.dtype.name, "compression": {"type": compression}, **(attrs or {}),
    }))
    grid = [range(-(-n // b)) for n, b in zip(array.shape, block, strict=True)]
    for index in np.ndindex(*[len(g) for g in grid]):
        part = array[tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block, strict=True))]
        if not part.any() and index != (0,) * array.ndim:
            continue  # missing blocks read as zeros
        header = struct.pack(">HH", 0, part.ndim) + struct.pack(f">{part.ndim}I", *part.shape[::-1])
        data = part.astype(part.dtype.newbyteorder(">")).tobytes()
        data = gzip.compress(data) if compression == "gzip" else data
        file = folder.joinpath(*[str(i) for i in reversed(index)])
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(header + data)


@pytest.mark.parametrize("compression", ["raw", "gzip"])
def test_n5(tmp_path, compression):
    volume = VOLUME.copy()
    volume[:, :8, :8] = 0  # one missing block
    write_n5(tmp_path / "c.n5", "raw", volume, (2, 8, 8), compression,
             {"pixelResolution": {"dimensions": [4.0, 4.0, 30.0], "unit": "nm"}})
    source = open_image(tmp_path / "c.n5")  # the only dataset
    check(source, volume, "n5")
    assert source.voxel_size == (30.0, 4.0, 4.0) and source.unit == "nanometer"
    assert source.chunks == (2, 8, 8)
    assert [i.name for i in list_datasets(tmp_path / "c.n5")] == ["raw"]
    check(open_image(f"{tmp_path / 'c.n5'}:/raw"), volume, "n5")


def test_n5_multiscale_group(tmp_path):
    write_n5(tmp_path / "m.n5", "vol/s0", VOLUME, (2, 8, 8), attrs={"resolution": [8, 8, 40], "units": ["nm"] * 3})
    write_n5(tmp_path / "m.n5", "vol/s1", VOLUME[:, ::2, ::2], (2, 8, 8), attrs={"downsamplingFactors": [2, 2, 1]})
    source = open_image(tmp_path / "m.n5", dataset="vol")
    assert [lv.shape for lv in source.levels] == [(6, 20, 24), (6, 10, 12)]
    assert source.levels[1].voxel_size == (40.0, 16.0, 16.0)
    infos = list_datasets(tmp_path / "m.n5")
    assert [(i.name, i.multiscale) for i in infos] == [("vol", True)]


def test_n5_written_by_tensorstore_if_available(tmp_path):
    ts = pytest.importorskip("tensorstore")
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "t.n5" / "d")},
                     "metadata": {"dimensions": [24, 20, 6], "blockSize": [8, 8, 2], "dataType": "uint16",
                                  "compression": {"type": "gzip"}}, "create": True}).result()
    store[...] = VOLUME.transpose(2, 1, 0)
    check(open_image(tmp_path / "t.n5", dataset="d"), VOLUME, "n5")


# -- HDF5 ---------------------------------------------------------------------------------------


def test_hdf5_datasets_and_choice(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("volumes/raw", data=VOLUME, chunks=(1, 10, 12))
        raw.attrs["element_size_um"] = [0.04, 0.005, 0.005]
        f.create_dataset("volumes/labels", data=VOLUME.astype(np.uint32))
    assert {i.name for i in list_datasets(path)} == {"/volumes/raw", "/volumes/labels"}
    with pytest.raises(ImageReadError, match="volumes/raw"):
        open_image(path)
    source = open_image(f"{path}:/volumes/raw")
    check(source, VOLUME, "hdf5")
    assert source.chunks == (1, 10, 12) and source.unit == "micrometer"
    np.testing.assert_allclose(source.voxel_size, (0.04, 0.005, 0.005))
    source.close()
    with pytest.raises(ImageReadError, match="no dataset"):
        open_image(path, dataset="/nope")


# -- MRC ----------------------------------------------------------------------------------------


def test_mrc_memory_mapped_with_voxel_size(tmp_path):
    mrcfile = pytest.importorskip("mrcfile")
    volume = VOLUME.astype(np.int16)
    with mrcfile.new(tmp_path / "t.rec") as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = (12.0, 12.0, 30.0)  # x, y, z in ångström
    source = open_image(tmp_path / "t.rec")
    check(source, volume, "mrc")
    assert isinstance(source._array, np.memmap)
    assert source.voxel_size == (30.0, 12.0, 12.0) and source.unit == "angstrom"
    source.close()


# -- DigitalMicrograph --------------------------------------------------------------------------


class _DMWriter:
    """Writes the tag tree of a DM3/DM4 file (big-endian structure, little-endian values)."""

    TYPES = {np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<u2"): 4, np.dtype("<u4"): 5,
             np.dtype("<f4"): 6, np.dtype("<f8"): 7, np.dtype("u1"): 10}

    def __init__(self, version):
        self.version = version
        self.size = ">Q" if version == 4 else ">I"

    def group(self, entries) -> bytes:
        body = b"\x00\x01" + struct.pack(self.size, len(entries))
        return body + b"".join(self.entry(label, value) for label, value in entries)

    def entry(self, label, value) -> bytes:
        name = label.encode()
        if isinstance(value, list):
            kind, payload = 20, self.group(value)
        else:
            kind, payload = 21, self.data(value)
        head = struct.pack(">BH", kind, len(name)) + name
        if self.version == 4:
            head += struct.pack(">Q", len(payload))
        return head + payload

    def data(self, value) -> bytes:
        if isinstance(value, np.ndarray):
            info = [20, self.TYPES[value.dtype.newbyteorder("<")], value.size]
            raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
        elif isinstance(value, float):
            info, raw = [6], struct.pack("<f", value)
        else:
            info, raw = [5], struct.pack("<I", value)
        return b"%%%%" + struct.pack(self.size, len(info)) + b"".join(struct.pack(self.size, i) for i in info) + raw

    def file(self, array: np.ndarray, scales, unit: str) -> bytes:
        def image(data):
            dims = list(data.shape[::-1])
            units = np.frombuffer(unit.encode("utf-16-le"), "<u2")
            calib = [("", [("Origin", 0.0), ("Scale", float(s)), ("Units", units)]) for s in scales[::-1]]
            return [("ImageData", [
                ("Calibrations", [("Dimension", calib)]),
                ("Data", data.ravel()),
                ("DataType", 10),
                ("Dimensions", [("", int(n)) for n in dims]),
            ])]

        thumb = np.zeros((4, 4), np.uint8)
        root = self.group([("ImageList", [("", image(thumb)), ("", image(array))])])
        size = struct.pack(">Q" if self.version == 4 else ">I", len(root))
        return struct.pack(">i", self.version) + size + struct.pack(">i", 1) + root + b"\x00" * 8


@pytest.mark.parametrize("version", [3, 4])
def test_dm3_dm4(tmp_path, version):
    volume = (RNG.random((4, 70, 64)) * 60000).astype("<u2")  # over 4096 values: memory-mapped
    path = tmp_path / f"s.dm{version}"
    path.write_bytes(_DMWriter(version).file(volume, (10.0, 2.5, 2.5), "nm"))
    source = open_image(path)
    check(source, volume, f"dm{version}")
    assert isinstance(source._array, np.memmap)
    assert source.voxel_size == (10.0, 2.5, 2.5) and source.unit == "nanometer"
    image = (RNG.random((40, 30)) * 255).astype(np.uint8)
    (tmp_path / "i.dm4").write_bytes(_DMWriter(4).file(image, (1.5, 1.5), "µm"))
    small = open_image(tmp_path / "i.dm4")
    assert small.shape == (40, 30) and small.unit == "micrometer"
    np.testing.assert_array_equal(small[...], image)


# -- errors and the spacing override ------------------------------------------------------------


def test_wrong_extension_and_damage_are_explained(tmp_path):
    tifffile.imwrite(tmp_path / "really_tiff.h5", VOLUME[0])
    with pytest.raises(ImageReadError, match=r"contents are TIFF: rename it to really_tiff.tif"):
        open_image(tmp_path / "really_tiff.h5")
    (tmp_path / "junk.mrc").write_bytes(b"\x01" * 100)
    with pytest.raises(ImageReadError, match="junk.mrc"):
        open_image(tmp_path / "junk.mrc")
    (tmp_path / "junk.dm4").write_bytes(b"\x00\x00\x00\x04" + b"\x00" * 30)
    with pytest.raises(ImageReadError, match="junk.dm4"):
        open_image(tmp_path / "junk.dm4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="without TIFF slices"):
        open_image(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="does not exist"):
        open_image(tmp_path / "nope.zarr")


def test_spacing_can_be_corrected(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", VOLUME)
    source = open_image(tmp_path / "a.tif")
    assert not source.spacing.known and source.voxel_size == (1.0, 1.0, 1.0)
    fixed = source.with_spacing((40, 5, 5), "nm")
    assert fixed.voxel_size == (40.0, 5.0, 5.0) and fixed.unit == "nanometer" and fixed.spacing.origin == "user"
    source.spacing = Spacing((30, 4, 4), "nm", known=True, origin="user")
    assert source.voxel_size == (30.0, 4.0, 4.0)
    with pytest.raises(ValueError):
        Spacing((0, 1, 1))


def test_split_dataset_only_after_an_existing_container(tmp_path):
    (tmp_path / "v.h5").write_bytes(b"x")
    assert split_dataset(f"{tmp_path}/v.h5:/a/b") == (tmp_path / "v.h5", "/a/b")
    assert split_dataset(f"{tmp_path}/x.tif") == (tmp_path / "x.tif", None)


def test_to_dask_and_open_volume(tmp_path):
    pytest.importorskip("dask")
    h5py = pytest.importorskip("h5py")
    from empanada_desktop.core.volumes.opening import open_volume

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=VOLUME, chunks=(2, 10, 12))
    source = open_image(tmp_path / "v.h5")
    array = source.to_dask()
    assert array.chunksize == (2, 10, 12)
    np.testing.assert_array_equal(array[1:3].compute(), VOLUME[1:3])
    volume = open_volume(f"{tmp_path / 'v.h5'}:/raw")
    assert volume.shape == VOLUME.shape
    np.testing.assert_array_equal(volume[4], VOLUME[4])
