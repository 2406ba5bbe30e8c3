"""Labels stored with the codes, and multi-label evaluation (NDCG@k, ACG@k, wmAP)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.evaluation import metrics as metrics_module
from hashkit.hashing.evaluation.metrics import evaluate, graded_scores
from hashkit.hashing.files.labels import label_matrix, load_labels, vocabulary
from hashkit.hashing.storage.store import read_store

from .helpers import assert_one_line_error, codes_from_bits, run_cli, trained_model


def test_graded_scores_by_hand():
    shared = np.array([2, 0, 1, 0, 1])
    ndcg, acg, wap = graded_scores(shared, k=3)
    dcg = (2**2 - 1) / math.log2(2) + 0 + (2**1 - 1) / math.log2(4)
    ideal = (2**2 - 1) / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # r sorted: 2, 1, 1, 0, 0
    assert ndcg == pytest.approx(dcg / ideal)
    assert acg == pytest.approx((2 + 0 + 1) / 3)
    assert wap == pytest.approx((2 / 1 + 3 / 3 + 4 / 5) / 3)  # ACG@1, ACG@3, ACG@5 at the relevant ranks


def test_evaluate_multi_label_small_case_with_ties_and_self():
    database = codes_from_bits([
        [0, 0, 0, 0, 0, 0, 0, 0],  # row 0: {a, b}, query 0 itself
        [1, 0, 0, 0, 0, 0, 0, 0],  # row 1: {c}, distance 1 from query 0
        [0, 1, 0, 0, 0, 0, 0, 0],  # row 2: {a, b}, distance 1 (tie with row 1: row 1 ranks first)
        [1, 1, 1, 1, 0, 0, 0, 0],  # row 3: {a}, distance 4
    ])
    classes = ["a", "b", "c"]
    db_labels = label_matrix([("a", "b"), ("c",), ("a", "b"), ("a",)], classes)
    queries = codes_from_bits([[0] * 8, [1] * 8])
    query_labels = label_matrix([("a", "b"), ("b", "c")], classes)
    result = evaluate(database, db_labels, queries, query_labels, k=2, self_rows=np.array([0, -1]))
    # query 0, self removed: rows 1, 2, 3 -> r = 0, 2, 1; ideal order 2, 1, 0
    ndcg0 = (3 / math.log2(3)) / (3 / 1 + 1 / math.log2(3))
    acg0, wap0 = (0 + 2) / 2, (2 / 2 + 3 / 3) / 2
    # query 1: distances 8, 7, 7, 4 -> rows 3, 1, 2, 0 -> r = 0, 1, 1, 1
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    acg1, wap1 = (0 + 1) / 2, (1 / 2 + 2 / 3 + 3 / 4) / 3
    assert result.multi_label and result.evaluated == 2
    assert result.ndcg_at_k == pytest.approx((ndcg0 + ndcg1) / 2, abs=1e-6)
    assert result.acg_at_k == pytest.approx((acg0 + acg1) / 2, abs=1e-6)
    assert result.weighted_map == pytest.approx((wap0 + wap1) / 2, abs=1e-6)
    assert result.precision_at_k == pytest.approx((1 / 2 + 1 / 2) / 2)  # relevant = shares a label
    values = result.as_dict()
    assert {"NDCG@2", "ACG@2", "wmAP"} <= values.keys() and "wmap" in values["conventions"]


def reference(db_codes, db_sets, query_codes, query_sets, self_rows, k, bits=8):
    """Every metric, the slow and obvious way: Python ints and sets. Returns the number of evaluated
    queries, the means of [AP, AP@k, P@k, R@k, NDCG@k, ACG@k, wAP], and a dict of the others."""
    def distance(a, b):
        return bin(int.from_bytes(bytes(a), "big") ^ int.from_bytes(bytes(b), "big")).count("1")

    per_query, within_2, deephash, curves = [], [], [], []
    pr = [([], []) for _ in range(bits + 1)]  # per radius: precisions of queries retrieving something, recalls
    for q, code in enumerate(query_codes):
        rows = sorted((row for row in range(len(db_codes)) if row != self_rows[q]),
                      key=lambda row: (distance(code, db_codes[row]), row))
        r = [len(set(query_sets[q] or ()) & set(db_sets[row] or ())) for row in rows]
        relevant_ranks = [n for n in range(1, len(r) + 1) if r[n - 1] > 0]
        if not relevant_ranks:
            continue
        top_hits = [n for n in relevant_ranks if n <= k]
        ap = sum(len([m for m in relevant_ranks if m <= n]) / n for n in relevant_ranks) / len(relevant_ranks)
        ap_k = sum(len([m for m in top_hits if m <= n]) / n for n in top_hits) / len(top_hits) if top_hits else 0
        dcg = sum((2 ** r[i] - 1) / math.log2(i + 2) for i in range(min(k, len(r))))
        ideal = sorted(r, reverse=True)
        idcg = sum((2 ** ideal[i] - 1) / math.log2(i + 2) for i in range(min(k, len(r))))
        wap = sum(sum(r[:n]) / n for n in relevant_ranks) / len(relevant_ranks)
        per_query.append([ap, ap_k, len(top_hits) / k, len(top_hits) / len(relevant_ranks),
                          dcg / idcg, sum(r[:k]) / k, wap])
        if top_hits:
            deephash.append(ap_k)
        for radius in range(bits + 1):
            near = [i for i, row in enumerate(rows) if distance(code, db_codes[row]) <= radius]
            hits = len([i for i in near if r[i] > 0])
            if near:
                pr[radius][0].append(hits / len(near))
            pr[radius][1].append(hits / len(relevant_ranks))
            if radius == 2:
                within_2.append(hits / len(near) if near else 0.0)
        curves.append([len([n for n in relevant_ranks if n <= c]) / c for c in (1, 5, 10, 20, 50)])
    others = {"precision@radius2": sum(within_2) / len(within_2),
              "deephash_mAP": sum(deephash) / len(deephash) if deephash else None,
              "pr_precision": [sum(p) / len(p) if p else None for p, _ in pr],
              "pr_recall": [sum(c) / len(c) for _, c in pr],
              "precision_curve": [sum(column) / len(curves) for column in zip(*curves)]}
    return len(per_query), [sum(column) / len(per_query) for column in zip(*per_query)], others


def random_case(seed: int, max_labels: int):
    """Codes with many Hamming ties, label sets of 0 (unknown) to ``max_labels`` labels; half the
    queries are database images."""
    rng = np.random.default_rng(seed)
    db_codes = rng.integers(0, 256, (60, 1), dtype=np.uint8) & 0b10110110
    names = ["a", "b", "c", "d", "e"]
    db_sets = [tuple(sorted(map(str, rng.choice(names, rng.integers(0, max_labels + 1), replace=False)))) or None
               for _ in range(60)]
    own = rng.choice(60, 8, replace=False)
    query_codes = np.concatenate([db_codes[own], rng.integers(0, 256, (8, 1), dtype=np.uint8)])
    query_sets = [db_sets[row] for row in own] + [(str(rng.choice(names)),) for _ in range(8)]
    self_rows = np.concatenate([own, np.full(8, -1)])
    return db_codes, db_sets, query_codes, query_sets, self_rows


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_labels", [1, 3])
def test_evaluate_matches_the_slow_reference(seed, max_labels, monkeypatch):
    if seed % 2:  # several tasks of queries
        monkeypatch.setattr(metrics_module, "QUERIES_PER_TASK", 3)
    db_codes, db_sets, query_codes, query_sets, self_rows = random_case(seed, max_labels)
    classes = vocabulary(s for s in db_sets + query_sets if s)
    k = 7
    result = evaluate(db_codes, label_matrix(db_sets, classes), query_codes, label_matrix(query_sets, classes),
                      k, self_rows)
    evaluated, means, others = reference(db_codes, db_sets, query_codes, query_sets, self_rows, k)
    assert result.evaluated == evaluated and result.queries == 16
    multi_label = max_labels > 1
    assert result.multi_label == multi_label
    ours = [result.mean_ap, result.mean_ap_at_k, result.precision_at_k, result.recall_at_k]
    if multi_label:
        ours += [result.ndcg_at_k, result.acg_at_k, result.weighted_map]
    else:
        assert result.ndcg_at_k is None and "wmAP" not in result.as_dict()
    assert ours == pytest.approx(means[:len(ours)], abs=1e-6)
    assert result.precision_at_radius_2 == pytest.approx(others["precision@radius2"], abs=1e-6)
    assert result.deephash_map_at_k == pytest.approx(others["deephash_mAP"], abs=1e-6)
    assert result.pr_curve["precision"] == pytest.approx(others["pr_precision"], abs=1e-6)
    assert result.pr_curve["recall"] == pytest.approx(others["pr_recall"], abs=1e-6)
    assert result.precision_curve == {"k": [1, 5, 10, 20, 50],
                                      "precision": pytest.approx(others["precision_curve"], abs=1e-6)}


# --- through the CLI, with real HDF5 stores -------------------------------------------------------

@pytest.fixture(scope="module")
def lsh_model(scene_set, tmp_path_factory) -> Path:
    return trained_model(scene_set / "photos", tmp_path_factory.mktemp("lsh") / "lsh.pt", "lsh", 64, "--seed", "0")


@pytest.fixture(scope="module")
def photos(scene_set) -> list[str]:
    return sorted(str(p.resolve()) for p in (scene_set / "photos").glob("*.jpg"))


def write_csv(path: Path, labels: dict[str, str]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("path", "labels"), *labels.items()])
    return path


@pytest.fixture(scope="module")
def multi_labels(truth, photos) -> dict[str, str]:
    """The true scene plus a second label by photo parity; the last two photos unlabelled."""
    return {p: f"{truth[p]};{'even' if i % 2 == 0 else 'odd'}" for i, p in enumerate(photos[:-2])}


def encode(model, inputs, store, *extra):
    result = run_cli("encode", model, *inputs, "-o", store, "--workers", "0", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_query_evaluates_from_stored_labels_as_from_the_csv(lsh_model, scene_set, multi_labels, photos, tmp_path):
    labels_csv = write_csv(tmp_path / "labels.csv", multi_labels)
    store = tmp_path / "codes.h5"
    encode(lsh_model, [scene_set / "photos"], store, "--labels", labels_csv)
    contents = read_store(store)
    assert contents.labels == [tuple(sorted(multi_labels[p].split(";"))) if p in multi_labels else None
                               for p in contents.paths]

    runs = {}
    for name, extra in (("implicit", []), ("stored", ["--ground-truth", "stored"]),
                        ("csv", ["--ground-truth", labels_csv])):
        metrics = tmp_path / f"{name}.json"
        result = run_cli("query", "--db", store, "--queries", store, "-k", "5", "-o", tmp_path / f"{name}.h5",
                         "--metrics", metrics, *extra)
        assert result.exit_code == 0, result.output
        assert "NDCG@5" in result.stdout and "wmAP" in result.stdout
        runs[name] = json.loads(metrics.read_text())
    assert runs["implicit"]["ground_truth"] == runs["stored"]["ground_truth"] == "stored"
    assert runs["csv"]["ground_truth"] == str(labels_csv)
    assert runs["implicit"]["evaluated_queries"] == 22, "the two unlabelled photos are not evaluated"
    for values in runs.values():
        assert 0 <= values["NDCG@5"] <= 1 and 0 <= values["mAP"] <= 1
        assert 0 <= values["ACG@5"] <= 2 and 0 <= values["wmAP"] <= 2, "at most 2 labels shared"
    numbers = [{key: value for key, value in values.items() if key != "ground_truth"} for values in runs.values()]
    assert numbers[0] == numbers[1] == numbers[2]


def test_appending_keeps_labels_aligned_with_paths(lsh_model, truth, photos, tmp_path):
    first = tmp_path / "first.txt"
    first.write_text("\n".join(photos[:10]))
    labels_csv = write_csv(tmp_path / "scenes.csv", {p: truth[p] for p in photos[:5] + photos[12:]})
    store = tmp_path / "codes.h5"
    encode(lsh_model, [first], store, "--labels", labels_csv)
    everything = tmp_path / "all.txt"
    everything.write_text("\n".join(photos[::-1]))  # another order; photos[:10] are already stored
    encode(lsh_model, [everything], store, "--labels", labels_csv)
    encode(lsh_model, [everything], store)  # nothing new: labels untouched
    contents = read_store(store)
    assert len(contents.paths) == 24 and contents.paths[:10] == photos[:10]
    expected = {p: (truth[p],) if p in photos[:5] + photos[12:] else None for p in photos}
    assert dict(zip(contents.paths, contents.labels)) == expected


def test_labels_that_name_no_encoded_image_are_refused_before_writing(lsh_model, photos, tmp_path):
    store = tmp_path / "codes.h5"
    elsewhere = write_csv(tmp_path / "elsewhere.csv", {"not/an/encoded/photo.jpg": "x"})
    for extra in ([], ["--overwrite"]):  # a new store is not created
        result = run_cli("encode", lsh_model, *photos, "-o", store, "--labels", elsewhere, *extra)
        assert_one_line_error(result, "labels none of the 24 images")
        assert not store.exists()
    encode(lsh_model, photos[:3], store)
    before = store.read_bytes()
    for extra in ([], ["--overwrite"]):  # an existing one is left as it was
        result = run_cli("encode", lsh_model, *photos, "-o", store, "--labels", elsewhere, *extra)
        assert_one_line_error(result, "labels none of the")
        assert store.read_bytes() == before


def test_stored_ground_truth_needs_labels_in_both_stores(lsh_model, scene_set, photos, tmp_path):
    store = tmp_path / "codes.h5"
    encode(lsh_model, [scene_set / "photos"], store)
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5", "--ground-truth", "stored")
    assert_one_line_error(result, "holds no labels")
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "metrics.json").exists()
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "metrics.json").exists(), "no labels, no --ground-truth: no evaluation"


def test_query_with_landmark_ground_truth(lsh_model, photos, scene_set, tmp_path):
    """query,image,kind CSV: relevant = same scene, the first other view of it junk; queries: 3."""
    store = tmp_path / "codes.h5"
    assert run_cli("encode", lsh_model, scene_set / "photos", "-o", store, "--workers", "0").exit_code == 0
    truth = dict(csv.reader((scene_set / "truth.csv").read_text().splitlines()[1:]))
    scene_of = {str((scene_set / p).resolve()): label for p, label in truth.items()}
    rows = ["query,image,kind"]
    for query in photos[:3]:
        same = [p for p in photos if scene_of[p] == scene_of[query] and p != query]
        rows += [f"{query},{same[0]},junk"] + [f"{query},{p},relevant" for p in same[1:]]
    landmarks = tmp_path / "landmarks.csv"
    landmarks.write_text("\n".join(rows) + "\n")
    result = run_cli("query", "--db", store, "--queries", store, "-k", "5", "-o", tmp_path / "r.h5",
                     "--ground-truth", landmarks, "--metrics", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["evaluated_queries"] == 3 and metrics["queries"] == len(photos)
    assert 0 < metrics["mAP"] <= 1 and "junk" in metrics["conventions"]
    landmarks.write_text("query,image,kind\n" + f"{photos[0]},{photos[1]},maybe\n")
    assert_one_line_error(run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r2.h5",
                                  "--ground-truth", landmarks), "landmarks.csv:2: expected")


def test_csv_labels_reach_photos_given_through_symbolic_links(tmp_path, lsh_model, scene_set, truth, photos):
    """A store keeps a link's own path; the CSV may name either the link or its target."""
    links = tmp_path / "links"
    links.mkdir()
    for i, photo in enumerate(photos):
        (links / f"link_{i:02d}.jpg").symlink_to(photo)
    by_target = write_csv(tmp_path / "targets.csv", {p: truth[p] for p in photos})
    by_link = write_csv(links / "links.csv", {f"link_{i:02d}.jpg": truth[p] for i, p in enumerate(photos)})
    for source in (by_target, by_link):
        store = tmp_path / f"{source.stem}.h5"
        encode(lsh_model, [links], store, "--labels", source)
        contents = read_store(store)
        assert all(path.startswith(str(links)) for path in contents.paths)
        assert [labels[0] for labels in contents.labels] == [truth[os.path.realpath(p)] for p in contents.paths]
        result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5", "--overwrite",
                         "--ground-truth", source, "--metrics", tmp_path / f"{source.stem}.json")
        assert result.exit_code == 0, result.output


def test_a_csv_with_a_byte_order_mark_and_no_header_keeps_its_first_row(tmp_path):
    photos = [str(tmp_path / name) for name in ("a.jpg", "b.jpg")]
    labels = tmp_path / "labels.csv"
    labels.write_bytes("\ufeffa.jpg,cat\nb.jpg,dog\n".encode())  # as spreadsheet programs save "CSV UTF-8"
    assert load_labels(str(labels), photos) == {photos[0]: ("cat",), photos[1]: ("dog",)}


def test_a_csv_path_with_a_nul_byte_is_refused_in_one_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na\0.jpg,cat\n")
    with pytest.raises(UserError, match="contains a NUL byte"):
        load_labels(str(labels), [str(tmp_path / "a.jpg")])
