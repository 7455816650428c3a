"""The dataset checksum of CHECKPOINT_FORMAT.md ("Integrity"), for tools that edit or check
ksa.c checkpoints with h5py and numpy:

    sum over i of mix64((i << 32) + bits(x_i))  (mod 2^64)

x_i the i-th float32 element in row-major order, bits(x) its IEEE-754 bit pattern, mix64 the
SplitMix64 finaliser. A uint8 dataset (/tokenizer/tokenizer.json) is summed the same way
with bits(x) the byte's value.

    import h5py, ckpt_checksum
    with h5py.File("step_00000010.h5", "a") as f:
        f["params/model.norm.weight"][0] = 1.0
        ckpt_checksum.update(f["params/model.norm.weight"])
"""
import numpy as np

_U = np.uint64


def checksum(values):
    """The checksum of an array's values as float32, or of its bytes for a uint8 array (an
    int in [0, 2^64))."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        x = values.reshape(-1).astype(_U)
    else:
        x = np.ascontiguousarray(values, dtype="<f4").reshape(-1).view(np.uint32).astype(_U)
    z = (np.arange(x.size, dtype=_U) << _U(32)) + x
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return int((z ^ (z >> _U(31))).sum(dtype=_U))


def update(dataset):
    """Rewrites an h5py dataset's `checksum` attribute from its current values."""
    dataset.attrs.create("checksum", checksum(dataset[()]), dtype="<u8")


def verify(f):
    """Names of the datasets of an open h5py file whose checksum is missing or wrong."""
    bad = []

    def visit(name, obj):
        if hasattr(obj, "dtype") and ("checksum" not in obj.attrs or
                                      int(obj.attrs["checksum"]) != checksum(obj[()])):
            bad.append(name)
    f.visititems(visit)
    return bad


if __name__ == "__main__":
    import sys
    import h5py
    status = 0
    for path in sys.argv[1:]:
        with h5py.File(path, "r") as f:
            for name in verify(f):
                print("%s: /%s: checksum missing or wrong" % (path, name))
                status = 1
    sys.exit(status)
