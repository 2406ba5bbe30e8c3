import re

import h5py
import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.files import text_column
from hashkit.hashing.storage import store as store_module
from hashkit.hashing.storage.store import (
    CodeStoreWriter,
    StoreMeta,
    StoreReader,
    label_cell,
    pack_codes,
    read_store,
    unpack_codes,
)

META = StoreMeta(bits=16, method="bcdh", model_digest="a" * 64, backbone="mobilenet_v2", hashkit_version="0")


def test_pack_unpack_round_trip():
    outputs = np.array([[0.5, -1.0, 2.0, -0.1] * 4, [-3.0, 0.0, 1e-6, 7.0] * 4])
    codes = pack_codes(outputs)
    assert codes.dtype == np.uint8 and codes.shape == (2, 2)
    assert codes[0, 0] == 0b10101010  # first output -> most significant bit; 0 counts as -1
    assert np.array_equal(unpack_codes(codes, 16), (outputs > 0).astype(np.uint8))


def test_append_and_read(tmp_path):
    path = tmp_path / "codes.h5"
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (5, 2), dtype=np.uint8)
    with CodeStoreWriter(path, META) as store:
        store.append(rows[:3], ["a", "b", "c"])
    assert read_store(path).paths == ["a", "b", "c"]
    with CodeStoreWriter(path, META) as store:
        store.append(rows[3:], ["d", "e"], [label_cell(("x",)), label_cell(None)])
    contents = read_store(path)
    assert contents.paths == ["a", "b", "c", "d", "e"]
    assert np.array_equal(contents.codes, rows)
    assert contents.meta == META
    assert contents.labels == [None, None, None, ("x",), None], "rows appended without labels are unknown"


@pytest.mark.parametrize("run_gap", [0, 100])  # paths read row by row, or in one stretch per READ_ROWS rows
def test_reader_streams_codes_and_reads_only_the_paths_asked_for(tmp_path, monkeypatch, run_gap):
    for module in (store_module, text_column):
        monkeypatch.setattr(module, "READ_ROWS", 4)  # several stretches of paths in a small store
    monkeypatch.setattr(text_column, "RUN_GAP", run_gap)
    path = tmp_path / "codes.h5"
    codes = np.random.default_rng(1).integers(0, 256, (11, 2), dtype=np.uint8)
    names = [f"img{i}.png" for i in range(11)]
    with CodeStoreWriter(path, META) as writer:
        writer.append(codes, names, [label_cell(None)] * 10 + [label_cell(("x",))])
    with StoreReader(path) as reader:
        chunks = list(reader.code_chunks(3))
        assert [len(c) for c in chunks] == [3, 3, 3, 2] and np.array_equal(np.concatenate(chunks), codes)
        assert reader.paths_at(np.array([[10, -1], [0, 10], [5, 4]])) == ["img10.png", "", "img0.png", "img10.png",
                                                                          "img5.png", "img4.png"]
        assert reader.rows_of(["img9.png", "nope", "img3.png"]).tolist() == [9, -1, 3]
        assert reader.has_labels(), "the one label is in the last stretch"
        assert reader.labels() == [None] * 10 + [("x",)]


def test_label_sets_round_trip_and_a_separator_inside_a_label_is_refused(tmp_path):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.zeros((3, 2), np.uint8), ["a", "b", "c"],
                     [label_cell(("cat", "dog")), label_cell(("dog",)), label_cell(None)])
    assert read_store(path).labels == [("cat", "dog"), ("dog",), None]
    assert label_cell(("cat", "dog")) == "cat;dog"
    with pytest.raises(UserError, match="separates labels"):
        label_cell(("a;b",))


def version_1_store(path, paths, labels=None):
    """A store as hashkit wrote it before version 2: paths and labels as variable-length strings."""
    text = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs.update(schema="hashkit.codes", schema_version=1, count=len(paths), bits=16, method=META.method,
                       model_digest=META.model_digest, backbone=META.backbone, hashkit_version="0.1")
        f.create_dataset("codes", data=np.arange(2 * len(paths), dtype=np.uint8).reshape(-1, 2), maxshape=(None, 2))
        f.create_dataset("paths", data=paths, dtype=text, maxshape=(None,))
        if labels is not None:
            f.create_dataset("labels", data=labels, dtype=text, maxshape=(None,))
    return path


@pytest.mark.parametrize("labels", [None, ["x;y", "", "z"]])
def test_version_1_store_is_read_and_rewritten_as_version_2_by_the_first_append(tmp_path, labels):
    old = version_1_store(tmp_path / "old.h5", ["a", "b", "c"], labels)
    contents = read_store(old)
    assert contents.paths == ["a", "b", "c"] and contents.codes.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert contents.labels == (None if labels is None else [("x", "y"), None, ("z",)])
    with StoreReader(old) as reader:
        assert reader.paths_at(np.array([2, 0])) == ["c", "a"] and reader.has_labels() == (labels is not None)
    (tmp_path / "old.h5.tmp").write_bytes(b"a killed upgrade's leftover")
    with CodeStoreWriter(old, META) as store:
        store.append(np.zeros((1, 2), np.uint8), ["d"], [label_cell(("w",))])
    with h5py.File(old, "r") as f:
        assert f.attrs["schema_version"] == 2 and "paths" not in f
    upgraded = read_store(old)
    assert upgraded.paths == ["a", "b", "c", "d"] and upgraded.codes[:3].tolist() == contents.codes.tolist()
    assert upgraded.labels == (contents.labels or [None] * 3) + [("w",)]
    assert not (tmp_path / "old.h5.tmp").exists()


def test_rows_beyond_the_committed_count_are_ignored_then_overwritten(tmp_path):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.ones((2, 2), np.uint8), ["a", "b"])
    with CodeStoreWriter(path, META) as store:  # a crash after writing a row, before raising the count
        store.append(np.full((1, 2), 9, np.uint8), ["half-written"], ["half;written"])
    with h5py.File(path, "r+") as f:
        f.attrs["count"] = 2
    assert read_store(path).paths == ["a", "b"] and read_store(path).labels == [None, None]
    with CodeStoreWriter(path, META) as store:
        store.append(np.zeros((1, 2), np.uint8), ["c"])
    contents = read_store(path)
    assert contents.paths == ["a", "b", "c"] and contents.codes[2].tolist() == [0, 0]
    assert contents.labels == [None, None, None], "the half-written label is overwritten too"


@pytest.mark.parametrize("change", [{"bits": 32}, {"model_digest": "b" * 64}])
def test_store_of_another_model_is_refused(tmp_path, change):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.ones((1, 2), np.uint8), ["a"])
    other = StoreMeta(**{**META.__dict__, **change})
    with pytest.raises(UserError, match="another model"):
        CodeStoreWriter(path, other)
    assert read_store(path).paths == ["a"], "the refused store is left intact"


def test_wrong_files_are_refused(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(UserError, match="cannot open"):
        read_store(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(UserError, match="not a hashkit code store"):
        read_store(other)


@pytest.mark.parametrize("edit, fragment", [
    (lambda f: f.attrs.__setitem__("count", 99), "99 committed rows, but 3 codes"),
    (lambda f: f.attrs.__setitem__("count", -1), "-1 committed rows"),
    (lambda f: f.attrs.__setitem__("bits", 24), "for 24-bit codes"),
    (lambda f: f.attrs.__delitem__("model_digest"), "not a complete hashkit code store"),
    (lambda f: f.__delitem__("paths_ends"), "not a complete hashkit code store"),
    (lambda f: f.__delitem__("paths_bytes"), "not a complete hashkit code store"),
    (lambda f: f.attrs.__setitem__("schema_version", 99), "newer hashkit"),
])
def test_inconsistent_stores_are_refused_on_open(tmp_path, edit, fragment):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.zeros((3, 2), np.uint8), ["a", "b", "c"])
    with h5py.File(path, "r+") as f:
        edit(f)
    for open_store in (read_store, lambda p: CodeStoreWriter(p, META)):
        with pytest.raises(UserError, match=re.escape(fragment)):
            open_store(path)
