"""Reading (and, on request, fetching) IDX files: the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian int32 per dimension, then the values in row-major order
(LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/). Files may be gzipped; both are read.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from distillab.core.keys import file_digest

log = logging.getLogger(__name__)

# Type codes of the IDX format -> big-endian numpy dtypes.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """A file that is missing, truncated or not IDX; the message names the file and the fix."""


def find_idx(folder: Path, stem: str) -> Path | None:
    """``<stem>.gz`` or ``<stem>`` in ``folder`` (the gzipped original first), or None."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _raw_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as err:  # a cut-off download ends mid-stream
        raise IDXError(f"{path} is a damaged or truncated gzip file ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), with its stored shape and dtype."""
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IDXError(f"{path} is not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path} is truncated: its header needs {header} bytes, the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IDXError(
            f"{path} is truncated or padded: shape {shape} needs {expected} bytes of values, "
            f"the file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fetch(name: str, folder: Path, mirrors: list[str], checksum: str | None) -> Path:
    """Download ``name`` into ``folder`` from the first mirror that serves it, checking it
    against the published ``checksum`` (``"<algorithm>:<hex>"``, e.g. ``"md5:..."``).

    Written to a temporary name and renamed, so an interrupted download never leaves a
    half file under the real name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target, errors = folder / name, []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        tmp = target.with_name(target.name + ".part")
        try:
            log.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            errors.append(f"{url}: {err}")
            tmp.unlink(missing_ok=True)
            continue
        if checksum:
            algorithm, expected = checksum.split(":")
            if (got := file_digest(tmp, algorithm)) != expected:
                errors.append(f"{url}: {algorithm} {got} is not the published {expected}")
                tmp.unlink()
                continue
        tmp.replace(target)
        return target
    raise IDXError(f"could not download {name}: " + "; ".join(errors))
