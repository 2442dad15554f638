"""What a stored teacher's key says about its data: the rows read, not where they were read from.

A teacher store key hashes the data config (``run/teachers.py``). For data read from files,
that config names paths and parsers (``data_dir``, ``train_file``, ``format``, ``sources``),
so the same SST-2 rows given as TSV, ``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder would
train the same teacher four times. A data module that is :class:`KeyedByRows` hashes the rows
it read instead (texts, label ids and names, split by split) and lists the config keys that
hash stands for; :func:`data_identity` gives the store key both: the keys to leave out and one
fingerprint of tokenizer and rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from distillab.core.keys import content_key
from distillab.data.tensor_datamodule import TensorDataModule

ROWS_FORMAT = "rows-v1"  # what rows_fingerprint covers; a change of it gives new keys


class KeyedByRows(ABC):
    """Data whose teacher store key hashes the rows read rather than the files named: the same
    rows from any file format, folder or path give one key."""

    # Config keys that say only where the rows are and how to parse them.
    location_keys: ClassVar[tuple[str, ...]]

    @abstractmethod
    def rows_fingerprint(self) -> str:
        """A content hash of every row a teacher trains or is tested on, split by split."""


@dataclass(frozen=True)
class DataIdentity:
    """What the store key takes from a data module: a fingerprint of what the config does not
    say, and the config keys that fingerprint stands for (left out of the key)."""

    fingerprint: str | None = None
    location_keys: tuple[str, ...] = ()


NO_IDENTITY = DataIdentity()  # data that says nothing beyond its config (store_key's default)


def data_identity(datamodule: TensorDataModule) -> DataIdentity:
    """``datamodule.fingerprint()`` as it is, or for :class:`KeyedByRows` data, that and the rows'
    fingerprint in one hash, with the location keys to leave out."""
    fingerprint = datamodule.fingerprint()
    if not isinstance(datamodule, KeyedByRows):
        return DataIdentity(fingerprint)
    rows = {"format": ROWS_FORMAT, "fingerprint": fingerprint, "rows": datamodule.rows_fingerprint()}
    return DataIdentity(content_key(rows), datamodule.location_keys)
