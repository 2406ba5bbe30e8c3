import re

import h5py
import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.storage import store as store_module
from hashkit.hashing.storage.store import (CodeStoreWriter, StoreMeta, StoreReader, label_cell, pack_codes,
                                          read_store, unpack_codes)

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


@pytest.mark.parametrize("sparse_share", [0.0, 1.0])  # paths read as whole stretches, or row by row
def test_reader_streams_codes_and_reads_only_the_paths_asked_for(tmp_path, monkeypatch, sparse_share):
    monkeypatch.setattr(store_module, "READ_ROWS", 4)  # several stretches of paths in a small store
    monkeypatch.setattr(store_module, "SPARSE_SHARE", sparse_share)
    monkeypatch.setattr(store_module, "SELECTED_ROWS", 1)
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


def test_store_without_labels_reads_as_unlabelled_and_gets_labels_when_appended_to(tmp_path):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.ones((2, 2), np.uint8), ["a", "b"])
    with h5py.File(path, "r+") as f:  # as written before labels were stored
        del f["labels"]
    assert read_store(path).labels is None
    with CodeStoreWriter(path, META) as store:
        store.append(np.zeros((1, 2), np.uint8), ["c"], [label_cell(("x",))])
    contents = read_store(path)
    assert contents.paths == ["a", "b", "c"] and contents.labels == [None, None, ("x",)]


def test_rows_beyond_the_committed_count_are_ignored_then_overwritten(tmp_path):
    path = tmp_path / "codes.h5"
    with CodeStoreWriter(path, META) as store:
        store.append(np.ones((2, 2), np.uint8), ["a", "b"])
    with h5py.File(path, "r+") as f:  # a crash after writing rows, before raising the count
        f["codes"].resize(3, axis=0)
        f["codes"][2] = [9, 9]
        f["paths"].resize(3, axis=0)
        f["paths"][2] = "half-written"
        f["labels"].resize(3, axis=0)
        f["labels"][2] = "half;written"
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
    (lambda f: f.__delitem__("paths"), "not a complete hashkit code store"),
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
