"""Getting a dump and its envelopes into memory for a report, damaged or not.

A report is most needed when a dump is in a bad way, so reading is lenient where
``edgegov lineage decode`` may refuse: a file cut short of a whole sector (a pull that
stopped half-way) is read as if the missing bytes were still erased, and an envelope
record that does not load becomes a finding instead of an error. Only a file that cannot be
a ring at all (no sector header, unreadable) is refused, with ``ReportError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config.compile import envelope_from_file
from ..config.problems import EnvelopeConfigError
from ..core.envelope import Envelope, EnvelopeError
from ..core.ring import HEADER_SIZE, LineageError, detect_block_size
from ..host.lineage_store import Dump, read_image

MIN_BLOCKS = 2  # a ring has at least two sectors


class ReportError(Exception):
    """The input cannot be reported on at all (unreadable, not a lineage, bad envelope)."""


@dataclass
class Loaded:
    """A dump, the envelopes that place its records, and what went wrong getting them."""

    dump: Dump
    file_size: int
    envelopes: dict  # digest -> Envelope
    what_if: Envelope | None = None
    what_if_source: str = ""
    image: bytes = b""  # the dump's bytes as read
    what_if_blob: bytes = b""  # the what-if envelope, compiled
    envelope_blob: bytes = b""  # the envelope given for a dump that lost its own
    findings: list[str] = field(default_factory=list)


def load(dump_path, envelope_path=None, block_size: int | None = None) -> Loaded:
    """Read ``dump_path`` (and ``envelope_path``: the recorded envelope when the dump lost
    its own, another one for a what-if)."""
    findings: list[str] = []
    dump, size, image = _read(Path(dump_path), block_size, findings)
    try:
        envelopes = dump.envelopes()
    except LineageError as err:
        envelopes = {}
        findings.append(f"the dump's envelope record does not load: {err}")
    loaded = Loaded(dump, size, envelopes, image=image, findings=findings)
    if envelope_path is not None:
        _add_envelope(loaded, str(envelope_path))
    if not loaded.envelopes:
        findings.append("no envelope record survives in the dump: records cannot be placed "
                        "(pass the device's envelope with --envelope FILE)")
    return loaded


def _read(path: Path, block_size: int | None, findings: list[str]) -> tuple[Dump, int, bytes]:
    try:
        image = path.read_bytes()
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror}") from None
    try:
        bs = block_size or detect_block_size(image)
    except LineageError as err:
        raise ReportError(f"{path}: not a lineage dump: {err.msg}") from None
    whole = max(MIN_BLOCKS * bs, -(-len(image) // bs) * bs)
    try:
        if whole == len(image):
            return dump_of(image, bs, str(path)), len(image), image
        findings.append(_truncated(len(image), bs, whole))
        return _read_padded(path, image, bs, whole), len(image), image
    except LineageError as err:
        raise ReportError(f"{path}: not a readable lineage: {err.msg}") from None


def dump_of(image: bytes, block_size: int, path: str) -> Dump:
    """``read_dump(path, block_size)`` of the file's bytes already read: the same ``Dump``."""
    return read_image(image, block_size, path)


def _truncated(size: int, block_size: int, whole: int) -> str:
    if size % block_size:
        what = f"not a whole number of {block_size}-byte sectors"
    else:
        what = f"{size // block_size} sector(s) of {block_size} bytes, where a ring has two or more"
    return (f"the file is {size} bytes, {what}: truncated (a pull cut short?); the missing "
            f"{whole - size} bytes were read as erased")


def _read_padded(path: Path, image: bytes, block_size: int, whole: int) -> Dump:
    """``read_dump`` of the image completed with erased bytes (0xFF, as flash reads)."""
    if len(image) < HEADER_SIZE:
        raise LineageError("shorter than a sector header")
    return read_image(image + b"\xff" * (whole - len(image)), block_size, str(path))


def load_envelope_file(path: str) -> tuple[Envelope, bytes, bytes]:
    """An envelope TOML (compiled here) or compiled blob → (Envelope, digest, blob)."""
    try:
        env, blob, digest = envelope_from_file(path)
    except EnvelopeConfigError as err:
        lines = "; ".join(str(p) for p in err.problems)
        raise ReportError(f"{path}: envelope refused: {lines}") from None
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror}") from None
    except EnvelopeError as err:
        raise ReportError(f"{path}: {err}") from None
    return env, digest, blob


def _add_envelope(loaded: Loaded, path: str) -> None:
    env, digest, blob = load_envelope_file(path)
    if digest in loaded.envelopes:
        loaded.findings.append(f"--envelope {path} is the recorded envelope: no what-if")
    elif loaded.envelopes:
        loaded.what_if, loaded.what_if_source, loaded.what_if_blob = env, path, blob
    else:
        loaded.envelopes[digest] = env
        loaded.envelope_blob = blob
        loaded.findings.append(f"the dump carries no envelope record: records whose envelope "
                               f"hash matches --envelope {path} are placed with it")


__all__ = ["load", "load_envelope_file", "Loaded", "ReportError"]
