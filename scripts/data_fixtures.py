"""Fixtures of CIFAR-10's three sources for crates/ba-data/tests/{sources,hub}.rs.

Takes the first 12 training and 8 test records of data/cifar-10-sample and writes them, with
Python's own pickle and numpy, as:
  fixtures/cifar-10-batches-py/{data_batch_1,test_batch}   as Python 2's cPickle wrote the
      official files (protocol 2, byte strings as `str`, numpy.core.multiarray._reconstruct)
  fixtures/cifar-10-python.tar.gz                          the same folder as a tar.gz
  fixtures/pickle-protocols/test_batch.p{2,4,5}            Python 3 pickles of the test batch
  fixtures/cifar-10-batches-bin/{data_batch_1,test_batch}.bin  the same records, binary version
  fixtures/bad/*                                           broken batches, one problem each
  fixtures/hub/plain_text/{train,test}-00000-of-00001.parquet  the Hub layout of uoft-cs/cifar10
      (img = {bytes: PNG, path}, label), PNGs by Pillow, parquet by pyarrow
  fixtures/hub-bad/*.parquet                               a label 11, a corrupt PNG
CI does not run this; rerun it with a Python 3 that has numpy, pillow and pyarrow:
    python3 scripts/data_fixtures.py
"""
import gzip
import io
import os
import pathlib
import pickle
import struct
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data/cifar-10-sample"
OUT = ROOT / "crates/ba-data/tests/fixtures"


class Python2Pickler(pickle._Pickler):
    """Writes bytes and (ASCII) text as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as
    cPickle did for the official files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("ascii") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def python2_dumps(obj):
    buf = io.BytesIO()
    Python2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 names its core module numpy._core; the official files say numpy.core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def records(name, n):
    raw = gzip.decompress((SAMPLE / f"{name}.bin.gz").read_bytes())
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)[:n].copy()


def batch(recs, label):
    return {
        b"batch_label": label.encode(),
        b"labels": [int(x) for x in recs[:, 0]],
        b"data": recs[:, 1:].copy(),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(recs))],
    }


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def png(record):
    buf = io.BytesIO()
    Image.fromarray(record[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(buf, format="PNG")
    return buf.getvalue()


def hub_parquet(path, recs, pngs=None):
    pngs = pngs or [png(r) for r in recs]
    img = pa.array([{"bytes": b, "path": None} for b in pngs], type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"img": img, "label": pa.array([int(r[0]) for r in recs], type=pa.int64())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)  # pyarrow's default codec, snappy, as the Hub's files


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    train, test = records("data_batch_1", 12), records("test_batch", 8)
    batches = {"data_batch_1": batch(train, "training batch 1 of 5"), "test_batch": batch(test, "testing batch 1 of 1")}
    py_dir = OUT / "cifar-10-batches-py"
    for name, b in batches.items():
        write(py_dir / name, python2_dumps(b))
    write(OUT / "cifar-10-batches-bin/data_batch_1.bin", train.tobytes())
    write(OUT / "cifar-10-batches-bin/test_batch.bin", test.tobytes())

    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:  # fixed metadata: reruns give the same bytes
        for name in batches:
            data = (py_dir / name).read_bytes()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    write(OUT / "cifar-10-python.tar.gz", gzip.compress(tar_buf.getvalue(), mtime=0))

    for protocol in (2, 4, 5):
        write(OUT / f"pickle-protocols/test_batch.p{protocol}", pickle.dumps(batches["test_batch"], protocol=protocol))

    bad = OUT / "bad"
    label11 = batch(test, "bad")
    label11[b"labels"][3] = 11
    write(bad / "label11/test_batch", python2_dumps(label11))
    write(bad / "label11/data_batch_1", python2_dumps(batches["data_batch_1"]))
    cifar100 = batch(test, "cifar-100")
    cifar100[b"fine_labels"] = cifar100.pop(b"labels")
    write(bad / "cifar100.pickle", python2_dumps(cifar100))
    narrow = batch(test, "narrow")
    narrow[b"data"] = narrow[b"data"][:, :3000].copy()
    write(bad / "narrow.pickle", python2_dumps(narrow))
    write(bad / "evil.pickle", pickle.dumps({b"data": Evil()}, protocol=2))
    full = python2_dumps(batches["test_batch"])
    write(bad / "truncated.pickle", full[: len(full) // 2])
    hub_parquet(OUT / "hub/plain_text/train-00000-of-00001.parquet", train)
    hub_parquet(OUT / "hub/plain_text/test-00000-of-00001.parquet", test)
    bad_label = test.copy()
    bad_label[2, 0] = 11
    hub_parquet(OUT / "hub-bad/label11.parquet", bad_label)
    pngs = [png(r) for r in test]
    pngs[5] = pngs[5][:40]
    hub_parquet(OUT / "hub-bad/corrupt-png.parquet", test, pngs)

    print("wrote", sorted(str(p.relative_to(OUT)) for p in OUT.rglob("*") if p.is_file() and "torchvision" not in p.name))


if __name__ == "__main__":
    main()
