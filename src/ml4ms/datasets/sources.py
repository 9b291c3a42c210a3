"""Data read chunk by chunk: structure files, globs of files and ASE databases, never whole.

A data argument becomes one or more *parts*. A part is anything with a
``label`` (the file or dataset named in messages and in a ``data`` column),
a length and ``read(start, stop)``, which returns the records
``start:stop`` as a list:

* :class:`XYZPart`: an (extended) XYZ file, gzipped too. One pass over its
  lines (no parsing) finds where each frame starts; a chunk is then read from
  its offset and only its frames are parsed;
* :class:`DatabasePart`: an ASE database (``.db``), read ``limit`` rows at a
  time in the order of their ids, each row's key-value pairs in ``atoms.info``
  and its id as ``info["id"]``;
* :class:`FramesPart`: any other ASE-readable file, streamed with
  :func:`ase.io.iread` (counted by one pass of it first);
* :class:`MemoryPart`: a bundled ``NAME:SPLIT`` or a CSV table, which are
  small and read whole.

A file part also has ``piece(start, stop)``: a small picklable description
of those records (:class:`XYZPiece`: the file, the byte range and the frame
count; :class:`DatabasePiece`: the file and the range of row ids) that
whichever process runs a chunk reads itself, so that a cluster's workers, and
not the process that sends them the chunks, open the files and parse the
structures. The workers must then see the files at the same paths (a shared
filesystem); one that cannot open a file stops the job with one line naming
it. A gzipped XYZ file cannot be entered in the middle, so its piece carries
the chunk's text, decompressed here (the workers still parse it); the other
parts give the records themselves.

:func:`open_parts` turns data arguments into parts; a pattern such as
``'data/*.xyz'`` (quoted, so that the shell does not expand it) gives one part
per file, in sorted order, as if the files were given one by one.
:func:`plan_chunks` cuts the parts into chunks of at most ``size`` records
(a chunk may span files, so a folder of one-structure files still makes big
chunks); :func:`chunk_pieces` gives each chunk's pieces, one chunk at a time,
and :func:`read_pieces`, the one place where a piece becomes records, reads
them wherever the chunk runs (:func:`read_chunks` does both here).

Examples
--------
>>> import os, tempfile
>>> from ase.build import bulk
>>> from ase.io import write
>>> path = os.path.join(tempfile.mkdtemp(), "cells.extxyz")
>>> write(path, [bulk("Cu", a=3.6 + 0.01 * k) for k in range(5)], format="extxyz")
>>> [part] = open_parts([path])
>>> len(part), [float(a.cell[0, 1]) for a in part.read(2, 4)]
(5, [1.81, 1.815])
>>> plan_chunks([part], 2)
[[(0, 0, 2)], [(0, 2, 4)], [(0, 4, 5)]]
>>> [(label, start, piece)] = next(chunk_pieces([part], [[(0, 2, 4)]]))
>>> piece                                                             # doctest: +ELLIPSIS
XYZPiece('.../cells.extxyz', 2, 4, bytes ... to ...)
>>> [(_, _, records)] = read_pieces([(label, start, piece)])
>>> [float(a.cell[0, 1]) for a in records]
[1.81, 1.815]
"""

import glob
import io
import itertools
import os

import numpy as np

from ..errors import InputError

#: characters that make a data argument a pattern of files
PATTERN_CHARS = "*?["
_XYZ_SUFFIXES = (".xyz", ".extxyz")


class MemoryPart:
    """The records of a :class:`~ml4ms.datasets.Dataset` (bundled data, a table), already in memory."""

    def __init__(self, data):
        self.data = data
        self.label = data.source

    def __len__(self):
        return len(self.data.records)

    def read(self, start, stop):
        return self.data.records[start:stop]

    def identity(self):
        return [self.label, len(self)]


def _read_error(path, reason):
    """The one-line error of a file whose structures cannot be read."""
    reason = " ".join(str(reason).split())[:160]
    return InputError(f"cannot read structures ({reason})", source=path,
                      hint="give an ASE-readable file such as extxyz or an ASE database, or NAME:SPLIT for a "
                           "bundled dataset")


#: what to do when a chunk's process does not see the file the job planned
_SHARED = "the workers read the files themselves: put them on a filesystem every worker sees, or drop --scheduler"


def _not_there(path, why):
    """The one-line error of a chunk whose process cannot open ``path`` (or finds another file there)."""
    return InputError(f"cannot read the file where the chunk runs ({why})", source=path, hint=_SHARED)


class _FilePart:
    """What every file part shares: its path, its label and what makes it the same file."""

    def __init__(self, path):
        self.path = self.label = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError("file not found", source=self.path, hint="check the path")

    def identity(self):
        stat = os.stat(self.path)
        return [os.path.realpath(self.path), stat.st_size, stat.st_mtime_ns, len(self)]

    def _error(self, reason):
        return _read_error(self.path, reason)

    def read(self, start, stop):
        """The records ``start:stop``: those of :meth:`piece`, read here."""
        return self.piece(start, stop).read()


class XYZPiece:
    """Frames ``start:stop`` of an XYZ file, described by their bytes; :meth:`read` parses them where it runs.

    ``label`` is the file as the user named it (in messages about its
    content); ``path``, the same made absolute, is what a worker in another
    folder opens. ``text`` is the frames' text (a gzipped file, which cannot
    be entered in the middle); without it :meth:`read` opens ``path`` and
    reads the bytes ``begin:end``, after checking that the file still has the
    ``size`` bytes it was planned with.
    """

    def __init__(self, label, start, stop, begin, end, size=None, text=None):
        self.label, self.path, self.start, self.stop = label, os.path.abspath(label), start, stop
        self.begin, self.end, self.size, self.text = begin, end, size, text

    def __repr__(self):
        return f"XYZPiece({self.label!r}, {self.start}, {self.stop}, bytes {self.begin} to {self.end})"

    def _bytes(self):
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size != self.size:
                    raise _not_there(self.path, f"{size} bytes, not the {self.size} of the file the job planned")
                handle.seek(self.begin)
                return handle.read(self.end - self.begin)
        except OSError as exc:
            raise _not_there(self.path, type(exc).__name__) from None

    def read(self):
        """The frames, as a list of ``ase.Atoms`` (a one-line error naming the file and the frames if they are bad)."""
        import ase.io

        text = self.text if self.text is not None else self._bytes()
        try:
            records = ase.io.read(io.StringIO(text.decode("utf-8")), index=":", format="extxyz")
        except Exception as exc:  # ASE raises many types for garbage input
            raise _read_error(self.label, f"structures {self.start}-{self.stop - 1}: "
                                          f"{exc or type(exc).__name__}") from None
        if len(records) != self.stop - self.start:
            raise _read_error(self.label, f"structures {self.start}-{self.stop - 1}: {len(records)} frames where "
                                          f"{self.stop - self.start} were counted; was the file changed?")
        return records


class XYZPart(_FilePart):
    """An (extended) XYZ file (``.xyz``, ``.extxyz``, gzipped too), read by frame offsets.

    The first use scans the lines once (the atom count of each frame, then
    that many lines) and keeps one byte offset per frame: 8 bytes a structure.
    """

    def __init__(self, path):
        super().__init__(path)
        self._offsets = self._size = None
        self._handle = None
        self._gzipped = self.path.endswith(".gz")

    def _open(self):
        if self._gzipped:
            import gzip

            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def offsets(self):
        """Byte offsets of every frame, and the end of the last one (in the decompressed text)."""
        if self._offsets is None:
            offsets, position, line_number = [], 0, 0
            with self._open() as handle:
                self._size = os.fstat(handle.fileno()).st_size  # of the file on disk: pieces check it
                lines = iter(handle)
                for line in lines:
                    line_number += 1
                    if not line.strip():
                        position += len(line)
                        continue
                    try:
                        count = int(line)
                    except ValueError:
                        raise self._error(f"line {line_number}: expected the number of atoms of a frame, got "
                                          f"{line[:40].decode(errors='replace').strip()!r}") from None
                    offsets.append(position)
                    position += len(line)
                    body = list(itertools.islice(lines, count + 1))
                    if len(body) < count + 1:
                        raise self._error(f"the frame at line {line_number} ends early")
                    position += sum(len(b) for b in body)
                    line_number += count + 1
            if not offsets:
                raise InputError("the file holds no structure", source=self.path, hint="check the file")
            self._offsets = np.asarray(offsets + [position], dtype=np.int64)
        return self._offsets

    def __len__(self):
        return len(self.offsets()) - 1

    def piece(self, start, stop):
        """The :class:`XYZPiece` of frames ``start:stop``: their byte range (a gzipped file: their text)."""
        offsets = self.offsets()
        begin, end = int(offsets[start]), int(offsets[stop])
        if not self._gzipped:
            return XYZPiece(self.path, start, stop, begin, end, size=self._size)
        if self._handle is None or self._handle.tell() > begin:  # gzip seeks forward cheaply only
            self.close()
            self._handle = self._open()
        self._handle.seek(begin)
        return XYZPiece(self.path, start, stop, begin, end, text=self._handle.read(end - begin))

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self):  # an open handle does not travel
        return {**self.__dict__, "_handle": None}


class FramesPart(_FilePart):
    """Any other ASE-readable file, streamed with :func:`ase.io.iread`; counting it reads it once.

    Its chunks are read in this process (a stream cannot be entered in the middle).
    """

    def __init__(self, path):
        super().__init__(path)
        self._length = None
        self._frames, self._position = None, 0

    def _iread(self):
        import ase.io

        try:
            yield from ase.io.iread(self.path, index=":")
        except Exception as exc:  # ASE raises many types for garbage input
            raise self._error(exc or type(exc).__name__) from None

    def __len__(self):
        if self._length is None:
            self._length = sum(1 for _ in self._iread())
            if not self._length:
                raise InputError("the file holds no structure", source=self.path, hint="check the file")
        return self._length

    def read(self, start, stop):
        if self._frames is None or self._position > start:
            self._frames, self._position = self._iread(), 0
        records = list(itertools.islice(self._frames, start - self._position, stop - self._position))
        self._position = stop
        return records

    def __getstate__(self):
        return {**self.__dict__, "_frames": None, "_position": 0}


def _connect(path):
    """A connection to the ASE database ``path`` (a one-line error if it is not one)."""
    import ase.db

    try:
        return ase.db.connect(path, type="db", create_indices=False, use_lock_file=False)
    except Exception as exc:
        raise _read_error(path, exc or type(exc).__name__) from None


class DatabasePiece:
    """Rows ``start:stop`` of an ASE database: those with ``after < id <= through``; :meth:`read` reads them."""

    def __init__(self, label, start, stop, after, through):
        self.label, self.path, self.start, self.stop = label, os.path.abspath(label), start, stop
        self.after, self.through = after, through

    def __repr__(self):
        return f"DatabasePiece({self.label!r}, {self.start}, {self.stop}, ids {self.after + 1} to {self.through})"

    def read(self):
        """The rows as ``ase.Atoms`` (key-value pairs in ``info``, ``info["id"]`` the row's id)."""
        if not os.path.isfile(self.path):  # connecting would create an empty database
            raise _not_there(self.path, "no such file")
        database = _connect(self.path)
        try:
            rows = list(database.select(f"id>{self.after},id<={self.through}", sort="id"))
        except Exception as exc:
            raise _read_error(self.label, exc or type(exc).__name__) from None
        if len(rows) != self.stop - self.start:
            raise _read_error(self.label, f"rows {self.start}-{self.stop - 1}: {len(rows)} rows where "
                                          f"{self.stop - self.start} were counted; was the database changed?")
        return [_row_atoms(row) for row in rows]


class DatabasePart(_FilePart):
    """An ASE database file (``.db``), read in the order of its row ids, ``stop - start`` rows at a time.

    A chunk's :class:`DatabasePiece` names its rows by their ids; consecutive
    chunks continue from the last id of the one before (one short query on
    the ids each), so that planning the whole database costs one pass over
    its ids, not one per chunk.
    """

    def __init__(self, path):
        super().__init__(path)
        self._length = None
        self._next = (0, 0)  # (position, the id of the row before it)

    def __len__(self):
        if self._length is None:
            database = _connect(self.path)
            try:
                self._length = database.count()
            except Exception as exc:  # not a database, or not ASE's
                raise self._error(exc or type(exc).__name__) from None
            if not self._length:
                raise InputError("the database holds no structure", source=self.path, hint="check the file")
        return self._length

    def _id(self, after, skip):
        """The id of the row ``skip`` rows past the first with an id above ``after``."""
        database = _connect(self.path)
        try:
            rows = list(database.select(f"id>{after}", sort="id", offset=skip, limit=1, columns=["id"],
                                        include_data=False))
        except Exception as exc:
            raise self._error(exc or type(exc).__name__) from None
        if not rows:
            raise self._error("fewer rows than were counted; was the database changed?")
        return rows[0].id

    def piece(self, start, stop):
        """The :class:`DatabasePiece` of rows ``start:stop`` (in the order of their ids)."""
        position, after = self._next
        if position != start:
            after = self._id(0, start - 1) if start else 0
        through = self._id(after, stop - start - 1)
        self._next = (stop, through)
        return DatabasePiece(self.path, start, stop, after, through)


def _row_atoms(row):
    """The ``ase.Atoms`` of a database row, with its key-value pairs in ``info`` and ``info["id"]`` its id."""
    atoms = row.toatoms()
    atoms.info.update(row.key_value_pairs)
    atoms.info["id"] = row.id
    return atoms


def part_of(path):
    """The part that reads one file: by its suffix (``.db``; ``.xyz``/``.extxyz``, gzipped too; else ASE's)."""
    name = os.fspath(path).lower()
    name = name[:-3] if name.endswith(".gz") else name
    if name.endswith(".db"):
        return DatabasePart(path)
    if name.endswith(_XYZ_SUFFIXES):
        return XYZPart(path)
    return FramesPart(path)


def open_parts(specs):
    """The parts of data arguments: bundled ``NAME:SPLIT`` and CSV tables in memory, files read in chunks.

    A pattern (``*``, ``?`` or ``[`` in an argument that is not a file) gives
    one part per matching file, sorted; one that matches nothing is a one-line
    error.

    Examples
    --------
    >>> [p.label for p in open_parts(["nomad2018:test"])]
    ['nomad2018:test']
    >>> open_parts(["/nowhere/*.xyz"])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: /nowhere/*.xyz: no file matches the pattern; check it (quote it, so that ml4ms and not the shell expands it)
    """
    from . import load_data

    parts = []
    for spec in [specs] if isinstance(specs, (str, os.PathLike)) else specs:
        spec = os.fspath(spec)
        if not os.path.exists(spec) and any(c in spec for c in PATTERN_CHARS):
            files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
            if not files:
                raise InputError("no file matches the pattern", source=spec,
                                 hint="check it (quote it, so that ml4ms and not the shell expands it)")
            parts += [part_of(f) for f in files]
        elif os.path.isfile(spec) and not spec.lower().endswith(".csv"):
            parts.append(part_of(spec))
        else:
            parts.append(MemoryPart(load_data(spec)))
    for part in parts:
        len(part)  # counts (and checks) every part before any work
    return parts


def as_part(data):
    """A part: ``data`` itself when it reads chunks, else a :class:`MemoryPart` of a ``Dataset``."""
    return data if hasattr(data, "read") else MemoryPart(data)


def plan_chunks(parts, size):
    """Chunks of at most ``size`` records over the parts in order: each a list of pieces ``(part, start, stop)``.

    Examples
    --------
    >>> plan_chunks([range(5), range(2)], 3)
    [[(0, 0, 3)], [(0, 3, 5), (1, 0, 1)], [(1, 1, 2)]]
    """
    size = max(1, int(size))
    plan, current, room = [], [], size
    for k, part in enumerate(parts):
        n, a = len(part), 0
        while a < n:
            b = min(n, a + room)
            current.append((k, a, b))
            room -= b - a
            a = b
            if room == 0:
                plan.append(current)
                current, room = [], size
    if current:
        plan.append(current)
    return plan


def chunk_pieces(parts, chunks):
    """For each chunk (a list of ``(part, start, stop)``), its pieces ``[(label, start, piece)]``, one at a time.

    A piece is what a chunk's process needs to read its records: a part's
    ``piece(start, stop)`` when it has one (a description that process reads
    itself, :func:`read_pieces`), else the records, read here.
    """
    for pieces in chunks:
        yield [(parts[k].label, a, getattr(parts[k], "piece", parts[k].read)(a, b)) for k, a, b in pieces]


def read_pieces(pieces):
    """The pieces of a chunk with their records: ``[(label, start, records)]``, read in this process.

    The one place where a piece becomes records, wherever the chunk runs:
    a piece that describes records is read, records stay as they are.

    Examples
    --------
    >>> read_pieces([("in memory", 3, ["a", "b"])])
    [('in memory', 3, ['a', 'b'])]
    """
    return [(label, start, piece.read() if hasattr(piece, "read") else piece) for label, start, piece in pieces]


def read_chunks(parts, chunks):
    """For each chunk (a list of ``(part, start, stop)``), the list ``[(label, start, records)]``, one at a time."""
    for pieces in chunk_pieces(parts, chunks):
        yield read_pieces(pieces)


def records_of(pieces):
    """The records of a chunk's pieces, in order."""
    return [r for _, _, records in pieces for r in records]


def locate(pieces, i):
    """``(label, index in its part)`` of the record ``i`` of a chunk's pieces."""
    for label, start, records in pieces:
        if i < len(records):
            return label, start + i
        i -= len(records)
    raise IndexError(i)


def check_pieces(pieces):
    """Check every structure of a chunk (:func:`ml4ms.structures.check_structures`) before its work.

    An error names the file (or dataset) and the structure's index in it.
    """
    from ..structures import check_structures

    for label, start, records in pieces:
        try:
            check_structures(records, source=label)
        except InputError as exc:
            raise exc.shifted(start) from None


def in_pieces(pieces, exc):
    """``exc`` (an :class:`InputError` naming a record of the chunk) renamed to its part and index there."""
    if exc.index is None or exc.index >= sum(len(r) for _, _, r in pieces):
        return exc
    label, index = locate(pieces, exc.index)
    return InputError(exc.message, label, index, exc.hint, exc.item)
