"""Reads the records of an offline W&B run file (``run-<id>.wandb``) without uploading it.

The file is a 7-byte header (``:W&B``, magic, version) followed by a LevelDB-style log: 32 KiB
blocks of chunks, each with a 7-byte header (crc32c, little-endian length, type FULL=1 /
FIRST=2 / MIDDLE=3 / LAST=4); the reassembled payloads are ``wandb_internal_pb2.Record``s.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    records, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:  # block trailer padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:
            pos += room
            continue
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_keys(path: Path) -> set[str]:
    """Every metric key logged to the run's history or summary."""
    keys: set[str] = set()
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
        elif kind == "summary":
            keys.update(item.key or "/".join(item.nested_key) for item in record.summary.update)
    return keys


def config_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    for record in read_records(path):
        if record.WhichOneof("record_type") == "config":
            keys.update(item.key or "/".join(item.nested_key) for item in record.config.update)
    return keys


def run_info(path: Path) -> dict[str, str]:
    """The run's display name, group and job type, as the file records them."""
    for record in read_records(path):
        if record.WhichOneof("record_type") == "run":
            return {"name": record.run.display_name, "group": record.run.run_group, "job_type": record.run.job_type}
    raise ValueError(f"{path} has no run record")
