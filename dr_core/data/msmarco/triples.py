"""The seed's negatives file from the training triples, byte for byte:
awk -v RS='\r\n' '$1==last {printf ",%s",$3; next} NR>1 {print "";} {last=$1; printf "%s\t%s",$1,$3;} END{print "";}'

Matches Debian's default awk (mawk 1.3.4) and gawk 5; see `negatives_from_triples` for the inputs refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dr_core.atomic import atomic_path
from dr_core.errors import DataError
from dr_core.textio import open_binary

_AWK_NUMBER = re.compile(rb"[ \t]*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[ \t]*")
_AWK_FS = re.compile(rb"[ \t]+")


def _awk_number(field: bytes) -> float | None:
    """The value of a field that looks like a decimal number to awk (a 'strnum'), else None."""
    return float(field) if _AWK_NUMBER.fullmatch(field) else None


def _awk_equal(field: bytes, last: bytes | None) -> bool:
    """awk's `$1==last`: numeric when both look numeric (an unset `last` is 0 and ""), else as strings."""
    number = _awk_number(field)
    if last is None:
        return number == 0.0 if number is not None else field == b""
    last_number = _awk_number(last)
    if number is not None and last_number is not None:
        return number == last_number
    return field == last


@dataclass
class _AwkState:
    """What the awk program carries from one record to the next."""

    last: bytes | None = None
    records: int = 0  # NR after the last record read


def _lf_error(path: Path, lineno: int) -> DataError:
    return DataError(
        path,
        lineno,
        "line ends with LF, not CRLF: the seed's awk (RS='\\r\\n') would read the rest of the file as one "
        "record and write a single line; convert the file to CRLF line ends first",
    )


def _triples_general(records: bytes, state: _AwkState, path: Path) -> bytes:
    """Run the awk program on CRLF-terminated records, one record at a time."""
    pieces = []
    for record in records.split(b"\r\n")[:-1]:
        if b"\n" in record:
            raise _lf_error(path, state.records + 1)
        stripped = record.strip(b" \t")
        fields = _AWK_FS.split(stripped) if stripped else []
        first = fields[0] if fields else b""
        third = fields[2] if len(fields) > 2 else b""
        if _awk_equal(first, state.last):
            pieces += [b",", third]
        else:
            if state.records:
                pieces.append(b"\n")
            state.last = first
            pieces += [first, b"\t", third]
        state.records += 1
    return b"".join(pieces)


_TRIPLE_SEPARATORS = np.array([9, 9, 13, 10], np.uint8)  # TAB, TAB, CR, LF: the only bytes below 14 in a row


def _triples_vectorised(records: bytes, state: _AwkState) -> bytes | None:
    """The same on records that are all `qid<TAB>pos<TAB>neg` with non-empty fields free of blanks and control
    bytes, and canonical qids of up to 15 digits (where awk's numeric `==` is plain equality); None otherwise."""
    a = np.frombuffer(records, np.uint8)
    seps = np.flatnonzero(a < 14)
    if len(seps) % 4 or (a == 32).any():
        return None
    seps = seps.reshape(-1, 4)
    tab1, tab2, cr, lf = seps.T
    starts = np.concatenate(([0], lf[:-1] + 1))
    if not (
        (a[seps] == _TRIPLE_SEPARATORS).all()
        and (lf == cr + 1).all()
        and (tab1 > starts).all()
        and (tab2 > tab1 + 1).all()
        and (cr > tab2 + 1).all()
    ):
        return None
    lengths = tab1 - starts
    if lengths.max() > 15 or ((a[starts] == 48) & (lengths > 1)).any():
        return None
    qids = np.zeros(len(starts), np.int64)
    for col in range(int(lengths.max())):
        inside = col < lengths
        digit = a[np.where(inside, starts + col, 0)].astype(np.int64) - 48
        if ((digit < 0) | (digit > 9))[inside].any():
            return None
        qids = np.where(inside, qids * 10 + digit, qids)
    group_start = np.empty(len(starts), bool)
    group_start[0] = not _awk_equal(records[: lengths[0]], state.last)
    group_start[1:] = qids[1:] != qids[:-1]
    # Per record keep 'qid<TAB>' (group starts only), drop 'pos<TAB>', keep 'neg' and the CR, which becomes
    # the separator before the next record ('\n' before a group start, ',' otherwise), drop the LF.
    runs = np.stack([tab1 + 1 - starts, tab2 - tab1, cr + 1 - (tab2 + 1), np.ones_like(cr)], axis=1)
    kept = np.zeros_like(runs, bool)
    kept[:, 0], kept[:, 2] = group_start, True
    out = a.copy()
    out[cr[:-1]] = np.where(group_start[1:], ord("\n"), ord(","))
    body = out[np.repeat(kept.ravel(), runs.ravel())].tobytes()[:-1]  # without the last record's CR
    if group_start[0]:
        prefix = b"\n" if state.records else b""
    else:
        prefix = b","
    if group_start.any():
        last_start = int(np.flatnonzero(group_start)[-1])
        state.last = records[starts[last_start] : tab1[last_start]]
    state.records += len(starts)
    return prefix + body


def negatives_from_triples(triples_tsv: str | Path, out_tsv: str | Path, *, chunk_bytes: int = 16 << 20) -> None:
    """Write `qid<TAB>pid,pid,...` (each run of consecutive rows with one qid, their 3rd fields) equal byte for
    byte to the seed's awk with RS='\\r\\n'; plain or .gz input, streamed in chunks.

    Reproduced: records end at CRLF; fields split on runs of blanks; a qid that repeats after another qid
    starts a new line; qids compare as numbers when both look numeric ('07' equals '7') and an unset `last`
    equals '0' and '' (so a file starting with qid 0 starts with ','); missing fields are empty.
    Refused with `DataError`: LF line ends, where the awk reads the rest of the file as one record.
    Tested against mawk 1.3.4 (Debian's default awk) and gawk 5.2. The two disagree with each other only on
    hex-looking qids (mawk reads '0x10' as 16) and on a qid ending in a lone CR (gawk reads '8\\r' as 8); this
    function follows POSIX decimal numbers there, so it matches gawk on the first and mawk on the second.
    """
    path = Path(triples_tsv)
    state = _AwkState()
    with open_binary(path) as src, atomic_path(out_tsv) as tmp, open(tmp, "wb") as out:
        carry = b""
        while block := src.read(chunk_bytes):
            buf = carry + block
            cut = buf.rfind(b"\r\n") + 2
            if cut == 1:
                if b"\n" in buf:
                    raise _lf_error(path, state.records + 1)
                carry = buf
                continue
            records, carry = buf[:cut], buf[cut:]
            converted = _triples_vectorised(records, state)
            out.write(converted if converted is not None else _triples_general(records, state, path))
        if carry:
            out.write(_triples_general(carry + b"\r\n", state, path))
        out.write(b"\n")
