"""Feature shards (Parquet) as an exchange format: export/import round trip and validation."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from vitl.cli import main as vitl_main
from vitl.features import FeatureCache, FeatureKey, FeatureSpace

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
from vitl.features import shards  # after the skip: needs pyarrow

SPACE = FeatureSpace("mobilenetv2", "fp", 32, 1, "float32")
DIM = 1280


def filled_cache(folder, n=5, space=SPACE) -> FeatureCache:
    cache = FeatureCache(folder)
    rng = np.random.default_rng(0)
    cache.put_many((FeatureKey(f"{i:064x}", space), rng.standard_normal(DIM)) for i in range(n))
    return cache


def test_export_then_import_round_trip_is_exact_and_reimport_adds_nothing(tmp_path, capsys):
    source = filled_cache(tmp_path / "a", n=7)
    other = FeatureSpace("resnet101v2", "fp2", 224, 1, "bfloat16")
    source.put_many([(FeatureKey("f" * 64, other), np.ones(2048))])
    assert vitl_main(["cache", "export", str(tmp_path / "s"), "--cache", str(tmp_path / "a"),
                      "--rows-per-file", "3"]) == 0
    assert "exported 4 shard files" in capsys.readouterr().out  # 3 + 3 + 1, and 1
    assert vitl_main(["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "b")]) == 0
    assert "8 vectors, 8 new, 0 already cached" in capsys.readouterr().out
    target = FeatureCache(tmp_path / "b")
    keys = [FeatureKey(f"{i:064x}", SPACE) for i in range(7)] + [FeatureKey("f" * 64, other)]
    want, got = source.lookup(keys).found, target.lookup(keys).found
    assert len(got) == 8 and all(np.array_equal(want[k], got[k]) for k in keys)
    assert vitl_main(["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "b")]) == 0
    assert "0 new, 8 already cached" in capsys.readouterr().out


def tamper(path, *, meta=None, table=None):
    """Rewrite a shard with changed metadata fields and/or columns."""
    old = pq.read_table(path)
    data = json.loads(old.schema.metadata[shards.META_KEY])
    data.update(meta or {})
    new = table(old) if table else old
    pq.write_table(new.replace_schema_metadata({shards.META_KEY: json.dumps(data).encode()}),
                   path)


def _float64(table):
    i = table.schema.get_field_index("vector")
    return table.set_column(i, "vector", table["vector"].cast(pa.list_(pa.float64())))


def _nan(table):
    values = np.full((table.num_rows, DIM), np.nan, np.float32)
    column = pa.array(list(values), type=pa.list_(pa.float32()))
    return table.set_column(table.schema.get_field_index("vector"), "vector", column)


@pytest.mark.parametrize("change, message", [
    ({"meta": {"space_id": "0" * 32}}, "space_id"),
    ({"meta": {"space": {**SPACE.__dict__, "fingerprint": "other"}}}, "space_id"),
    ({"meta": {"space": {**SPACE.__dict__, "backbone": "vgg"},
               "space_id": FeatureSpace(**{**SPACE.__dict__, "backbone": "vgg"}).id}},
     "registered backbone"),
    ({"meta": {"format": 99}}, "shard format 1"),
    ({"meta": {"dim": 3}}, "1280 features"),
    ({"table": _float64}, "float32 vectors"),
    ({"table": _nan}, "finite feature values"),
])
def test_import_validates_identity_dimension_and_dtype(change, message, tmp_path, capsys):
    path = shards.write_shard(tmp_path / "s" / "x.parquet", SPACE, DIM, ["a" * 64],
                              np.ones((1, DIM)))
    tamper(path, **change)
    assert vitl_main(["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Fix:" in err, err
    assert "x.parquet" in err
    assert len(FeatureCache(tmp_path / "c")) == 0


def test_wrong_vector_length_and_not_parquet_are_one_line_errors(tmp_path, capsys):
    shards.write_shard(tmp_path / "s" / "x.parquet", SPACE, 4, ["a" * 64], np.ones((1, 4)))
    assert vitl_main(["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]) == 2
    assert "1280 features" in capsys.readouterr().err
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "y.parquet").write_bytes(b"PAR1 nope")
    assert vitl_main(["cache", "import", str(tmp_path / "t"), "--cache", str(tmp_path / "c")]) == 2
    assert "a Parquet file" in capsys.readouterr().err
    assert vitl_main(["cache", "import", str(tmp_path / "empty"), "--cache",
                      str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_error_rows_are_reported_not_imported(tmp_path, capsys):
    shards.write_shard(tmp_path / "s" / "x.parquet", SPACE, DIM, ["a" * 64], np.ones((1, DIM)),
                       errors=[("b" * 64, "/d/bad.jpg", "truncated file")])
    assert vitl_main(["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "error row: /d/bad.jpg: truncated file" in out and "1 new" in out
    assert len(FeatureCache(tmp_path / "c")) == 1


def test_shard_written_atomically_leaves_no_temporary_file(tmp_path):
    shards.write_shard(tmp_path / "x.parquet", SPACE, DIM, ["a" * 64], np.ones((1, DIM)))
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_planted_fifo_shard_is_refused_in_one_line_not_read(tmp_path, capsys):
    shards.write_shard(tmp_path / "s" / "a.parquet", SPACE, DIM, ["a" * 64], np.ones((1, DIM)))
    os.mkfifo(tmp_path / "s" / "b.parquet")  # reading it would wait for a writer forever
    codes = []
    worker = threading.Thread(target=lambda: codes.append(vitl_main(
        ["cache", "import", str(tmp_path / "s"), "--cache", str(tmp_path / "c")])), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # release the reader, then fail
        os.close(os.open(tmp_path / "s" / "b.parquet", os.O_WRONLY | os.O_NONBLOCK))
    assert codes == [2]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "b.parquet" in err and "FIFO" in err, err
    assert len(FeatureCache(tmp_path / "c")) == 0
