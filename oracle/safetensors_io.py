"""safetensors_io — the safetensors format, written from its specification (no PyPI here).

Layout (the same one oracle/golden.h documents for the C reader):

    bytes 0..8      N, the header length, unsigned 64-bit little-endian
    bytes 8..8+N    JSON: {"name": {"dtype", "shape", "data_offsets": [b, e]}, ...,
                           "__metadata__": {"key": "string", ...}}
    bytes 8+N..     data; a tensor is data[b:e], row-major, little-endian

Goldens are committed, so the writer aims at byte-identical output for identical tensors:
sorted keys, compact JSON, tensors laid out in sorted-name order, and a gzip header with no
timestamp and no file name. A path ending in ".gz" is written compressed; `load` takes either.
"""

import gzip
import io
import json
import os
import struct
import tempfile

import numpy as np
import torch

# Only what tfm's C side reads (tensor.h). Explicit '<' so a big-endian host still writes the
# little-endian bytes the format requires.
_TORCH_TO_ST = {
    torch.float32: ("F32", np.dtype("<f4")),
    torch.float64: ("F64", np.dtype("<f8")),
    torch.int64: ("I64", np.dtype("<i8")),
    torch.bool: ("BOOL", np.dtype("u1")),  # one byte per element, 0 or 1
    torch.uint8: ("U8", np.dtype("u1")),   # bytes: the UTF-8 text of the tokenizer goldens
}
_ST_TO_NP = {name: (tdt, ndt) for tdt, (name, ndt) in _TORCH_TO_ST.items()}

GZIP_MAGIC = b"\x1f\x8b"


class FormatError(ValueError):
    pass


def _tensor_bytes(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: not a torch.Tensor ({type(t).__name__})")
    if t.dtype not in _TORCH_TO_ST:
        raise TypeError(f"{name}: dtype {t.dtype} is not one of F32, F64, I64, BOOL")
    st, ndt = _TORCH_TO_ST[t.dtype]
    a = t.detach().cpu().contiguous().numpy()
    if t.dtype == torch.bool:
        a = a.view(np.uint8)
    return st, list(t.shape), np.ascontiguousarray(a, dtype=ndt).tobytes()


def serialize(tensors, metadata=None):
    """The uncompressed file as bytes."""
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"__metadata__ must map str to str; got {k!r}: {v!r}")
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        st, shape, data = _tensor_bytes(name, tensors[name])
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    hjson = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    # Trailing spaces are allowed by the spec; padding to 8 keeps the data section aligned
    # for readers that map the file and cast in place.
    hjson += b" " * (-len(hjson) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def save(path, tensors, metadata=None):
    """Writes tensors (dict name -> torch.Tensor) and metadata (dict str -> str) to path,
    gzip-compressed if path ends in ".gz". Atomic: a temp file beside it, then os.replace."""
    raw = serialize(tensors, metadata)
    if str(path).endswith(".gz"):
        buf = io.BytesIO()
        # mtime=0 and filename='' keep the gzip header free of anything but the content.
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(raw)
        raw = buf.getvalue()
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; a golden file should get the usual umask-derived mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def deserialize(raw, label="<bytes>"):
    """Parses an uncompressed file; returns (dict name -> torch.Tensor, metadata dict)."""
    def bad(msg):
        raise FormatError(f"{label}: {msg}")

    if len(raw) < 8:
        bad("shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        bad(f"header length {n} runs past the end of the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        bad(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        bad("header is not a JSON object")
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        bad("__metadata__ must map strings to strings")
    tensors = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            bad(f"tensor '{name}': entry is not an object")
        st, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if st not in _ST_TO_NP:
            bad(f"tensor '{name}': unknown dtype {st!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            bad(f"tensor '{name}': bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs)):
            bad(f"tensor '{name}': bad data_offsets {offs!r}")
        b, e = offs
        tdt, ndt = _ST_TO_NP[st]
        numel = 1
        for s in shape:
            numel *= s
        if not 0 <= b <= e <= len(data):
            bad(f"tensor '{name}': data_offsets [{b}, {e}] outside the data section "
                f"({len(data)} bytes)")
        if e - b != numel * ndt.itemsize:
            bad(f"tensor '{name}': {e - b} bytes for shape {shape} of {st}")
        spans.append((b, e, name))
        a = np.frombuffer(data, dtype=ndt, count=numel, offset=b).reshape(shape)
        if st == "BOOL":
            if a.size and a.max() > 1:
                bad(f"tensor '{name}': BOOL byte other than 0 or 1")
            a = a.astype(np.bool_)
        # astype(native) copies, so the tensor owns writable memory, not a view of `raw`.
        tensors[name] = torch.from_numpy(a.astype(a.dtype.newbyteorder("="), copy=True))
        assert tensors[name].dtype == tdt
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            bad(f"tensors '{n0}' and '{n1}' overlap")
    return tensors, metadata


def load(path):
    """Reads a safetensors file, plain or gzip; returns (dict name -> torch.Tensor, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return deserialize(raw, label=str(path))
