"""Column roles, the pre-pass and the encoding of raw columns: fills, indicators, categorical slots, hashing."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streambp
import streambp.features as features
from conftest import checksums, streambp_cli
from streambp.errors import StreambpError
from streambp.features import DEFAULT_BUCKETS, MISSING, OTHER, Choices, FeatureSpec, scan
from streambp.kernels.rows import split_mask
from streambp.registry import open_source
from streambp.features import file_key
from streambp.stream import LabelEncoder, chunks


def write(tmp_path, table, name="t.parquet", **kw):
    path = tmp_path / name
    pq.write_table(table, path, **kw)
    return open_source(path)


def raw_table(n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, n)
    x[[3, 7]] = np.nan  # NaN counts as missing
    mask = np.zeros(n, bool)
    mask[5] = True  # and so does a null
    color = np.array(["red", "green", "blue"])[rng.integers(0, 3, n)].astype(object)
    color[[2, 9]] = None
    return pa.table({
        "row_id": pa.array(np.arange(n) + 1000),
        "x": pa.array(x, mask=mask),
        "count": pa.array(rng.integers(0, 5, n)),
        "color": pa.array(color, type=pa.string()),
        "flag": pa.array(rng.integers(0, 2, n).astype(bool)),
        "when": pa.array(np.arange(n).astype("datetime64[D]")),
        "blob": pa.array([b"x"] * n),
        "label": pa.array(rng.integers(0, 2, n)),
    })


def test_roles_fill_indicator_vocabulary_and_ignored_columns_with_reasons(tmp_path):
    source = write(tmp_path, raw_table())
    labels, spec = scan(source, "label", Choices())
    roles = {name: role for name, role, _ in spec.summary()}
    assert roles == {"x": "numeric", "count": "numeric", "when": "numeric", "color": "categorical",
                     "flag": "categorical", "row_id": "ignored", "blob": "ignored"}
    reasons = {c.name: c.reason for c in spec.ignored}
    assert "every value is different" in reasons["row_id"] and "binary" in reasons["blob"]
    x = next(c for c in spec.numeric if c.name == "x")
    values = raw_table()["x"].to_numpy(zero_copy_only=False)
    finite = values[np.isfinite(values)]
    assert x.nulls == 3 and x.indicator and x.fill == pytest.approx(finite.mean(), rel=1e-12)
    assert [c.indicator for c in spec.numeric if c.name != "x"] == [False, False]
    assert spec.features == ["x", "count", "when", "x missing"]
    color = next(c for c in spec.categorical if c.name == "color")
    assert color.values == ["blue", "green", "red"] and color.nulls == 2 and color.slots == 5
    flag = next(c for c in spec.categorical if c.name == "flag")
    assert flag.values == [False, True]
    assert flag.offset == color.offset + color.slots or color.offset == flag.offset + flag.slots
    assert spec.slots == 5 + 4
    # the scaler: columns to mean 0 / variance 1, the indicator left as 0/1
    assert spec.mean[-1] == 0 and spec.inv_std[-1] == 1
    assert spec.inv_std[0] == pytest.approx(1 / finite.std(), rel=1e-9)


def test_chunks_fill_missing_values_set_indicators_and_standardise(tmp_path):
    table = raw_table()
    source = write(tmp_path, table)
    labels, spec = scan(source, "label", Choices())
    (X, idx, y), = list(chunks(source, spec, LabelEncoder("label", labels.classes, labels.label_type), 64,
                               np.float64))
    x = table["x"].to_numpy(zero_copy_only=False)
    missing = ~np.isfinite(x)
    col = spec.features.index("x")
    ind = spec.features.index("x missing")
    assert np.array_equal(X[:, ind], missing.astype(float))
    assert np.allclose(X[missing, col], 0.0)  # the mean, standardised
    assert np.allclose(X[~missing, col], (x[~missing] - spec.mean[col]) * spec.inv_std[col])
    when = table["when"].cast(pa.int32()).to_numpy()
    j = spec.features.index("when")
    assert np.allclose(X[:, j], (when - spec.mean[j]) * spec.inv_std[j])


def test_categorical_slots_missing_other_and_unseen_values(tmp_path):
    train = pa.table({"c": pa.array(["a", "b", "a", None, "c", "a", "b", "b"] * 5),
                      "label": pa.array([0, 1] * 20)})
    source = write(tmp_path, train)
    _, spec = scan(source, "label", Choices(min_frequency=6))  # "c" is seen 5 times: rare
    c, = spec.categorical
    assert c.values == ["a", "b"] and c.distinct == 3
    test = pa.table({"c": pa.array(["b", "zzz", None, "a", "c"]), "label": pa.array([0, 1, 0, 1, 0])})
    (X, idx, y), = list(chunks(write(tmp_path, test, "u.parquet"), spec, None, 8, np.float32))
    assert X.shape == (5, 0)
    assert idx[:, 0].tolist() == [c.offset + 3, c.offset + OTHER, c.offset + MISSING, c.offset + 2,
                                  c.offset + OTHER]


def test_dictionary_columns_are_categorical_like_their_strings(tmp_path):
    strings = pa.array(["x", "y", None, "x", "z"] * 6)
    plain = write(tmp_path, pa.table({"c": strings, "label": pa.array([0, 1, 1] * 10)}), "p.parquet")
    coded = write(tmp_path, pa.table({"c": strings.dictionary_encode(), "label": pa.array([0, 1, 1] * 10)}),
                  "d.parquet")
    _, spec = scan(plain, "label", Choices())
    a = list(chunks(plain, spec, None, 64, np.float32))[0][1].copy()
    b = list(chunks(coded, spec, None, 64, np.float32))[0][1].copy()
    assert np.array_equal(a, b)


def test_hashed_columns_are_stable_bounded_and_spread(tmp_path):
    n = 4000
    keys = pa.array([f"user-{i % 1500}" for i in range(n)])
    source = write(tmp_path, pa.table({"k": keys, "label": pa.array(np.arange(n) % 2)}))
    _, spec = scan(source, "label", Choices(hash_buckets=64))
    c, = spec.categorical
    assert c.values is None and c.slots == 65
    (_, idx, _), = list(chunks(source, spec, None, n, np.float32))
    slots = idx[:, 0]
    assert slots.min() >= 1 and slots.max() <= 64
    assert len(np.unique(slots)) == 64  # 1500 keys fill every bucket
    # the same value always lands in the same bucket, also as large_string and in another order
    big = write(tmp_path, pa.table({"k": keys.cast(pa.large_string())[::-1], "label": pa.array(np.arange(n) % 2)}),
                "big.parquet")
    (_, idx2, _), = list(chunks(big, spec, None, n, np.float32))
    assert np.array_equal(idx2[::-1, 0], slots)
    # and in every process and version: the documented hash (64-bit FNV-1a of the UTF-8 bytes, then
    # splitmix64's finaliser), written here in plain Python, gives the same buckets
    assert [1 + fnv1a_mixed(f"user-{i}".encode()) % 64 for i in range(20)] == slots[:20].tolist()


def fnv1a_mixed(data):
    mask = (1 << 64) - 1
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & mask
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
    return h ^ (h >> 31)


def test_a_column_with_more_values_than_tracked_is_hashed(tmp_path, monkeypatch):
    import streambp.features as features

    monkeypatch.setattr(features, "TRACK_LIMIT", 50)
    source = write(tmp_path, pa.table({"k": pa.array([f"v{i % 80}" for i in range(400)]),
                                       "label": pa.array(np.arange(400) % 2)}))
    _, spec = scan(source, "label", Choices())
    c, = spec.categorical
    assert c.values is None and c.buckets == DEFAULT_BUCKETS


def test_user_choices_override_the_guess(tmp_path):
    source = write(tmp_path, raw_table())
    _, spec = scan(source, "label", Choices(ignore=["x", "when"], categorical=["count"], numeric=["row_id"]))
    assert [c.name for c in spec.numeric] == ["row_id"]
    assert sorted(c.name for c in spec.categorical) == ["color", "count", "flag"]
    assert {c.name: c.reason for c in spec.ignored}["x"] == "--ignore"
    with pytest.raises(StreambpError, match="--numeric column 'color' has type string"):
        scan(source, "label", Choices(numeric=["color"]))
    with pytest.raises(StreambpError, match="no feature column 'nope'"):
        scan(source, "label", Choices(categorical=["nope"]))
    with pytest.raises(StreambpError, match="is the label"):
        scan(source, "label", Choices(ignore=["label"]))


def test_spec_round_trips_through_metadata_and_rejects_tampering(tmp_path):
    _, spec = scan(write(tmp_path, raw_table()), "label", Choices())
    back = FeatureSpec.from_metadata(spec.to_metadata(), spec.mean, spec.inv_std)
    assert back.features == spec.features and back.slots == spec.slots and back.to_metadata() == spec.to_metadata()
    meta = spec.to_metadata()
    meta["categorical"][1]["offset"] += 1
    with pytest.raises(StreambpError, match="malformed"):
        FeatureSpec.from_metadata(meta)
    meta = spec.to_metadata()
    meta["numeric"][0]["fill"] = float("nan")
    with pytest.raises(StreambpError, match="malformed"):
        FeatureSpec.from_metadata(meta)


def test_all_string_table_has_features(tmp_path):
    source = write(tmp_path, pa.table({"a": pa.array(["p", "q"] * 20), "b": pa.array(["u", "v", "w", "u"] * 10),
                                       "label": pa.array(["yes", "no"] * 20)}))
    labels, spec = scan(source, "label", Choices())
    assert spec.width == 0 and [c.name for c in spec.categorical] == ["a", "b"] and spec.slots == 4 + 5


def test_unknown_training_label_is_an_error_naming_file_and_row(tmp_path):
    source = write(tmp_path, pa.table({"x": pa.array(np.arange(10.0)), "label": pa.array([0, 1] * 4 + [7, 0])}))
    _, spec = scan(source, "label", Choices())
    with pytest.raises(StreambpError, match=r"t.parquet: label column 'label' is 7, which is not a class of the "
                                            r"model in row 8"):
        list(chunks(source, spec, LabelEncoder("label", [0, 1], "int64", strict=True), 4, np.float32))


def test_an_empty_csv_field_is_a_missing_category_not_a_value(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("color,label\nred,0\n,1\nblue,0\nred,1\n")
    _, spec = scan(open_source(path), "label", Choices())
    c, = spec.categorical
    assert c.values == ["blue", "red"] and c.nulls == 1


def test_a_label_that_is_also_a_feature_of_the_model_is_read_once(tmp_path):
    # `evaluate MODEL DATA --label COL` where COL is one of the model's inputs: one column, read once
    source = write(tmp_path, pa.table({"c": pa.array(["a", "b", "a", "b"] * 5), "label": pa.array([0, 1] * 10)}))
    _, spec = scan(source, "label", Choices())
    (X, idx, y), = list(chunks(source, spec, LabelEncoder("c", ["a", "b"], "string"), 64, np.float32))
    assert y.tolist() == [0, 1] * 10 and (idx[:, 0] - spec.categorical[0].offset).tolist() == [2, 3] * 10


def test_integers_past_2_53_and_nanosecond_timestamps_with_nulls_are_numbers(tmp_path):
    # numbers() cast with Arrow's safe cast, which refuses an integer that float64 cannot hold exactly: any
    # nanosecond timestamp of this century, or an int64/uint64 past 2**53, crashed the pre-pass once the
    # column had a null.
    big = [2**53 + 1, None, 2**60, 3]
    when = pa.array([1_600_000_000_000_000_001, None, 1_700_000_000_000_000_000, 5], type=pa.timestamp("ns"))
    source = write(tmp_path, pa.table({"big": pa.array(big, type=pa.int64()), "when": when,
                                       "u": pa.array([2**64 - 1, None, 2**63, 1], type=pa.uint64()),
                                       "label": pa.array([0, 1, 0, 1])}))
    spec = scan(source, "label", Choices(standardize=False))[1]
    fills = {c.name: c.fill for c in spec.numeric}
    assert fills["big"] == pytest.approx((2**53 + 1 + 2**60 + 3) / 3, rel=1e-15)
    assert fills["when"] == pytest.approx((1_600_000_000_000_000_001 + 1_700_000_000_000_000_000 + 5) / 3, rel=1e-15)
    assert fills["u"] == pytest.approx((2**64 - 1 + 2**63 + 1) / 3, rel=1e-15)
    (X, _, _), = list(chunks(source, spec, None, 8, np.float64))
    assert X[1, :3].tolist() == [fills["big"], fills["when"], fills["u"]]  # row 1: every value filled
    assert X[0, 0] == float(2**53 + 1) and X[3, 2] == 1.0


def test_uint64_codes_past_2_63_are_ids_or_categories(tmp_path):
    # _Distinct and the integer hash cast uint64 to int64 with a safe cast, which refuses values past 2**63.
    n = 24
    codes = pa.array([2**63 + i for i in range(n)], type=pa.uint64())
    source = write(tmp_path, pa.table({"id": codes, "code": pa.array([2**64 - 1 - i % 3 for i in range(n)],
                                                                     type=pa.uint64()),
                                       "label": pa.array([i % 2 for i in range(n)])}))
    spec = scan(source, "label", Choices(categorical=["code"]))[1]
    assert [c.name for c in spec.ignored] == ["id"] and "every value is different" in spec.ignored[0].reason
    assert spec.categorical[0].values == [2**64 - 3, 2**64 - 2, 2**64 - 1]
    hashed = scan(source, "label", Choices(categorical=["code"], hash_buckets=8))[1]
    (_, idx, _), = list(chunks(source, hashed, None, n, np.float32))
    assert ((idx >= 1) & (idx <= 8)).all()
    assert len({tuple(np.flatnonzero(idx[:, 0] == s)) for s in np.unique(idx)}) == len(np.unique(idx))
    assert all(idx[i, 0] == idx[i % 3, 0] for i in range(n))  # equal codes, equal buckets


def test_values_past_the_models_dtype_stay_out_of_the_fill_and_the_scaler(tmp_path):
    # 1e300 is finite in float64 but inf in the float32 the network reads (a bad row). It entered the mean,
    # so the fill of a null was 3e299 -> inf in float32, and every null at predict time was "infinite".
    source = write(tmp_path, pa.table({"x": pa.array([1e300, 1.0, None, 3.0]), "label": pa.array([0, 1, 0, 1])}))
    x = scan(source, "label", Choices(standardize=False))[1].numeric[0]
    assert x.fill == 2.0 and x.nulls == 1
    spec = scan(source, "label", Choices())[1]
    assert spec.mean.tolist() == [2.0, 0.0] and spec.inv_std.tolist() == [1.0, 1.0]  # x, "x missing"
    wide = scan(source, "label", Choices(standardize=False, dtype="float64"))[1].numeric[0]
    assert wide.fill == pytest.approx((1e300 + 4.0) / 3)
    vec = write(tmp_path, pa.table({"v": pa.array([[1e300, 1.0], [3.0, 1.0], [5.0, 1.0]]),
                                    "label": pa.array([0, 1, 0])}), "v.parquet")
    assert scan(vec, "label", Choices(), skip_bad=True)[1].mean.tolist() == [4.0, 1.0]


def test_text_where_the_categories_are_booleans_or_integers_is_unseen_not_a_crash(tmp_path):
    # A boolean column, and integer codes read with --categorical, then text in that column at predict time
    # (another file, a CSV read anew): the cast of the text to bool/int64 raised ArrowInvalid (a traceback).
    train = pa.table({"f": pa.array([True, False] * 4), "c": pa.array([1, 2, 3, 1] * 2),
                      "label": pa.array([0, 1] * 4)})
    spec = scan(write(tmp_path, train), "label", Choices(categorical=["c"]))[1]
    f, c = spec.categorical
    assert f.values == [False, True] and c.values == [1, 2, 3]
    test = pa.table({"f": pa.array(["true", "maybe", None, "false"]), "c": pa.array(["2", "x", "1", None]),
                     "label": pa.array([0, 1, 0, 1])})
    (_, idx, _), = list(chunks(write(tmp_path, test, "u.parquet"), spec, None, 8, np.float32))
    assert idx[:, 0].tolist() == [f.offset + 3, f.offset + OTHER, f.offset + MISSING, f.offset + 2]
    assert idx[:, 1].tolist() == [c.offset + 3, c.offset + OTHER, c.offset + 2, c.offset + MISSING]


def test_a_list_column_of_empty_lists_is_an_error_naming_it(tmp_path):
    # Its width was taken as 0, and reshaping the values to (-1, 0) raised ValueError (a traceback).
    source = write(tmp_path, pa.table({"v": pa.array([[], []], type=pa.list_(pa.float32())), "label": [0, 1]}))
    with pytest.raises(StreambpError, match=r"t.parquet: list column 'v' holds no values \(an empty list in row 0\)"):
        scan(source, "label", Choices())


def test_a_spread_too_wide_for_float64_scales_by_one_not_zero(tmp_path):
    # (x - mean)**2 overflows float64 for values near 1e200: an infinite M2 once gave inv_std 0, a model the
    # validator refuses to load
    source = write(tmp_path, pa.table({"x": pa.array([1e200, -1e200, 3.0, 5.0]), "label": pa.array([0, 1, 0, 1])}))
    spec = scan(source, "label", Choices(dtype="float64"))[1]
    assert np.isfinite(spec.mean).all() and spec.inv_std.tolist() == [1.0]


def validation_rows(path, n, fraction):
    """Which rows of the file at path training holds out with --val-fraction fraction (stream.chunks' split)."""
    val = np.empty(n, dtype=np.bool_)
    split_mask(val, file_key(str(path)), 0, fraction, True)
    return val


def test_fit_learns_vocabularies_fills_scaling_and_class_counts_from_the_training_side_only(tmp_path):
    # The pre-pass read every row: a category seen only in the held-out rows got a slot (a random embedding
    # row that never trains), and their values entered the fill, the scaling and the class counts.
    n = 600
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "t.parquet"
    val = validation_rows(path, n, 0.3)
    rng = np.random.default_rng(0)
    x = np.where(val, 1e6, rng.normal(10, 2, n))
    nulls = ~val & (rng.random(n) < 0.1)
    color = np.where(val, "held-out", rng.choice(["red", "blue"], n)).astype(object)
    label = np.where(val, 2, rng.integers(0, 2, n))
    pq.write_table(pa.table({"x": pa.array(x, mask=nulls), "color": pa.array(color),
                             "label": pa.array(label)}), path, row_group_size=100)
    before = checksums(tmp_path / "data")
    out = tmp_path / "m.npz"
    proc = streambp_cli("fit", path, "--label", "label", "--val-fraction", 0.3, "--epochs", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    model = streambp.load(out)
    color_spec, = model.spec.categorical
    assert color_spec.values == ["blue", "red"] and color_spec.distinct == 2
    trained = x[~val & ~nulls]
    x_spec, = model.spec.numeric
    assert x_spec.fill == pytest.approx(trained.mean(), rel=1e-12) and x_spec.nulls == nulls.sum()
    assert model.mean[0] == pytest.approx(trained.mean(), rel=1e-6)
    assert model.inv_std[0] == pytest.approx(1 / trained.std(), rel=1e-5)
    # class 2 is only in the held-out rows: a class of the model, never counted as a training row
    assert model.classes == [0, 1, 2]
    assert model.training["class_counts"] == [int((label[~val] == k).sum()) for k in (0, 1, 2)]
    assert model.training["rows"] == int((~val).sum())
    assert checksums(tmp_path / "data") == before


def test_the_pre_pass_reads_exactly_the_rows_training_reads(tmp_path, monkeypatch):
    # over several files and record batches: the same (file, row) hash on both sides
    monkeypatch.setattr(features, "READ_ROWS", 23)
    rng = np.random.default_rng(1)
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        n = 150 + 20 * i
        pq.write_table(pa.table({"x": rng.normal(size=n), "c": pa.array([f"v{j}" for j in rng.integers(0, 200, n)]),
                                 "label": rng.integers(0, 3, n)}), d / f"p{i}.parquet", row_group_size=40)
    source = open_source(d)
    labels, spec = scan(source, "label", Choices(standardize=False, max_categories=1000), split=(0.4, False))
    (X, idx, y), = list(chunks(source, spec, LabelEncoder("label", labels.classes, labels.label_type), 10_000,
                               np.float64, split=(0.4, False)))
    assert 100 < len(y) < 400
    assert labels.rows == len(y) and labels.counts == np.bincount(y, minlength=3).tolist()
    assert spec.numeric[0].fill == pytest.approx(X[:, 0].mean(), rel=1e-12)
    c, = spec.categorical
    assert (idx[:, 0] - c.offset >= 2).all()  # every value training reads has its slot
    assert len(np.unique(idx[:, 0])) == len(c.values)  # and every slot is read in training


def test_a_split_that_leaves_no_training_rows_says_so(tmp_path):
    source = write(tmp_path, pa.table({"x": [1.0, 2.0], "label": [0, 1]}))
    fraction = float(np.nextafter(1.0, 0.0))  # a hash above 1 - 2**-53 of the range stays in training
    assert validation_rows(source.files[0], 2, fraction).all()
    with pytest.raises(StreambpError, match=r"No training rows are left in .*t.parquet after the validation "
                                            r"split; give more rows or a smaller --val-fraction"):
        scan(source, "label", Choices(), split=(fraction, False))


def test_only_integer_columns_that_look_like_a_row_index_are_ignored_and_always_null_columns_are(tmp_path):
    # Every all-distinct integer column was taken for an id: unix timestamps, prices in cents were dropped.
    # An all-null string or boolean column became a categorical column with no values.
    n = 60
    rng = np.random.default_rng(1)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "t.parquet"
    stamps = rng.choice(np.arange(1_600_000_000, 1_700_000_000, 7), n, replace=False)
    pq.write_table(pa.table({
        "index0": rng.permutation(n), "index1": rng.permutation(n) + 1,
        "stamp": stamps, "cents": rng.choice(100_000, n, replace=False),
        "rising": np.cumsum(rng.integers(1, 1000, n)), "falling": -np.cumsum(rng.integers(1, 1000, n)),
        "uuid": [f"{i:08x}-{rng.integers(1 << 30):08x}" for i in range(n)],
        "text": pa.array([None] * n, pa.string()), "flag": pa.array([None] * n, pa.bool_()),
        "number": pa.array([None] * n, pa.float64()), "nan": np.full(n, np.nan), "inf": np.full(n, np.inf),
        "label": rng.integers(0, 2, n)}), path)
    before = checksums(tmp_path / "data")
    proc = streambp_cli("fit", path, "--epochs", 1, "--out", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: line.split(None, 2)[1:] for line in proc.stdout.splitlines()[1:13]}
    assert table["index0"] == ["ignored", "every value is different, the numbers 0..59 in some order (a row "
                                          "index?); use it with --numeric or --categorical if you mean it"]
    assert table["index1"][1].startswith("every value is different, the numbers 1..60 in some order")
    assert table["rising"][1].startswith("every value is different, rising in file order (a row index?)")
    assert table["falling"][1].startswith("every value is different, falling in file order (a row index?)")
    assert table["uuid"][1].startswith("every value is different (an id?)")
    assert {name: table[name] for name in ("text", "flag", "number", "nan")} == \
        dict.fromkeys(("text", "flag", "number", "nan"), ["ignored", "always null"])
    assert table["inf"] == ["ignored", "no finite values"]
    model = streambp.load(tmp_path / "m.npz")
    assert [c.name for c in model.spec.numeric] == ["stamp", "cents"] and not model.spec.categorical
    assert model.spec.numeric[0].fill == pytest.approx(stamps.mean(), rel=1e-12)
    assert checksums(tmp_path / "data") == before


def test_an_id_rising_across_files_and_batches_is_one_but_each_file_rising_anew_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "READ_ROWS", 7)
    rng = np.random.default_rng(2)
    steps = np.cumsum(rng.integers(2, 50, 60))
    for name, parts in (("across", [steps[:30], steps[30:]]), ("anew", [steps[:30], steps[:30] + 1])):
        d = tmp_path / name
        d.mkdir()
        for i, part in enumerate(parts):
            pq.write_table(pa.table({"k": part, "x": rng.normal(size=30), "label": np.arange(30) % 2}),
                           d / f"p{i}.parquet")
        spec = scan(open_source(d), "label", Choices())[1]
        if name == "across":
            assert [c.name for c in spec.ignored] == ["k"] and "rising in file order" in spec.ignored[0].reason
        else:  # all different (odd vs even offsets do not collide: steps are >= 2 apart) yet not one order
            assert len(np.unique(np.concatenate(parts))) == 60
            assert [c.name for c in spec.numeric] == ["k", "x"] and not spec.ignored


@pytest.mark.parametrize("list_type", [pa.list_(pa.int64()), pa.list_(pa.int32(), 3), pa.large_list(pa.uint8())])
def test_skipping_bad_rows_of_an_integer_list_feature_with_nulls(tmp_path, list_type):
    # A null list of integers was coalesced with a list of NaN of the same integer type: ArrowInvalid, a
    # traceback, for the pre-pass's scaler and for training alike.
    rng = np.random.default_rng(3)
    n = 50
    rows = rng.integers(0, 100, (n, 3)).tolist()
    bad = {4: None, 11: [1, None, 3], 30: None}  # a null list and a null element
    for i, v in bad.items():
        rows[i] = v
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "v.parquet"
    pq.write_table(pa.table({"v": pa.array(rows, list_type), "label": np.arange(n) % 2}), path)
    before = checksums(tmp_path / "data")
    proc = streambp_cli("fit", path, "--features", "v", "--on-bad-rows", "skip", "--bad-rows-out",
                        tmp_path / "bad.parquet", "--epochs", 1, "--out", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    assert f"Skipped {len(bad)} bad rows" in proc.stdout
    assert sorted(pq.read_table(tmp_path / "bad.parquet")["_row"].to_pylist()) == sorted(bad)
    good = np.array([r for i, r in enumerate(rows) if i not in bad], dtype=np.float64)  # what training reads
    np.testing.assert_allclose(streambp.load(tmp_path / "m.npz").mean, good.mean(axis=0).astype(np.float32))
    assert checksums(tmp_path / "data") == before


def hashed_slots(tmp_path, spec, arr, name):
    (_, idx, _), = list(chunks(write(tmp_path, pa.table({"k": arr}), name), spec, None, 1000, np.float32))
    return idx[:, 0].tolist()


def test_a_hashed_column_read_as_another_type_hashes_each_value_to_its_trained_bucket(tmp_path):
    # Codes trained as int64 and read as text (a CSV read anew, a string column) were hashed as text: every
    # value in another bucket than the one it trained, with no error.
    codes = [7, 123456789, -3, None, 0, 2**40]
    trained = write(tmp_path, pa.table({"k": pa.array(codes * 5), "label": pa.array(np.arange(30) % 2)}))
    spec = scan(trained, "label", Choices(categorical=["k"], hash_buckets=64))[1]
    want = hashed_slots(tmp_path, spec, pa.array(codes), "a.parquet")
    assert len(set(want)) == 6 and want[3] == spec.categorical[0].offset + MISSING
    texts = [None if v is None else str(v) for v in codes]
    for i, arr in enumerate([pa.array(texts), pa.array(texts, pa.large_string()), pa.array(texts).dictionary_encode(),
                             pa.array([None if v is None else float(v) for v in codes])]):
        assert hashed_slots(tmp_path, spec, arr, f"t{i}.parquet") == want, arr.type
    small = [7, -3, None, 0]
    assert hashed_slots(tmp_path, spec, pa.array(small, pa.int8()), "s.parquet") == [want[0], want[2], want[3], want[4]]
    with pytest.raises(StreambpError, match=r"Categorical column 'k' holds 'seven', which does not read as int64, "
                                            r"the type of the values its hash buckets were trained on; give the "
                                            r"column as int64 values"):
        hashed_slots(tmp_path, spec, pa.array(["7", "seven"]), "bad.parquet")
    # and the other way: text trained, numbers read where it held their text
    words = write(tmp_path, pa.table({"k": pa.array(["7", "x", "-3"] * 4), "label": pa.array(np.arange(12) % 2)}),
                  "w.parquet")
    spec = scan(words, "label", Choices(hash_buckets=64))[1]
    assert hashed_slots(tmp_path, spec, pa.array([7, -3], pa.int16()), "n.parquet") == \
        hashed_slots(tmp_path, spec, pa.array(["7", "-3"]), "m.parquet")


def test_predict_reads_hashed_codes_given_as_text_like_the_trained_integers(tmp_path):
    rng = np.random.default_rng(4)
    n = 200
    codes = rng.integers(0, 40, n)
    (tmp_path / "data").mkdir()
    data = tmp_path / "data"
    pq.write_table(pa.table({"k": codes, "label": codes % 3}), data / "train.parquet")
    pq.write_table(pa.table({"k": codes.astype(np.int32)}), data / "int32.parquet")
    pq.write_table(pa.table({"k": pa.array([str(v) for v in codes])}), data / "text.parquet")
    pq.write_table(pa.table({"k": pa.array(["1", "one"])}), data / "words.parquet")
    proc = streambp_cli("fit", data / "train.parquet", "--categorical", "k", "--hash-buckets", 32, "--epochs", 3,
                        "--out", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    before = checksums(data)
    predictions = {}
    for name in ("train", "int32", "text"):
        proc = streambp_cli("predict", tmp_path / "m.npz", data / f"{name}.parquet", "--out", tmp_path / f"{name}.out")
        assert proc.returncode == 0, proc.stderr
        predictions[name] = pq.read_table(tmp_path / f"{name}.out")
    assert predictions["int32"].equals(predictions["train"]) and predictions["text"].equals(predictions["train"])
    proc = streambp_cli("predict", tmp_path / "m.npz", data / "words.parquet", "--out", tmp_path / "words.out")
    assert proc.returncode == 2 and "Categorical column 'k' holds 'one', which does not read as int64" in proc.stderr
    assert not (tmp_path / "words.out").exists() and checksums(data) == before
