"""Writing result files atomically: a failed run never leaves a half-written file."""

import contextlib
import csv
import io
import json
import os
import tempfile

import numpy as np


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def user_mode(folder=False):
    """The permissions a new file (or ``folder``) gets under the process umask, as ``open`` would give it.

    Temporary files and folders are created private (0600/0700); what is
    moved into place gets these instead.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """A temporary path beside ``path`` that becomes ``path`` when the block ends without an error.

    The file written there gets the user's normal permissions; on an error it
    is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.txt")
    >>> with atomic_path(p) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(p).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, user_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text(path, text):
    """Write ``text`` (UTF-8) atomically, as :func:`write_bytes`."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Write ``obj`` as indented JSON (numpy values converted).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> write_json(p, {"x": np.float64(1.5)})
    >>> open(p).read()
    '{\\n  "x": 1.5\\n}\\n'
    """
    write_text(path, json.dumps(obj, indent=2, default=_default) + "\n")


def write_npz(path, arrays, compress=True):
    """Write named arrays as an ``.npz`` atomically (:func:`numpy.savez_compressed`; ``compress=False``:
    :func:`numpy.savez`, for float features that zlib barely shrinks and that are written while workers wait).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "f.npz")
    >>> write_npz(p, {"x": np.arange(3)})
    >>> np.load(p)["x"].tolist()
    [0, 1, 2]
    """
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_structures(path, frames):
    """Write a list of ``ase.Atoms`` as extended XYZ (their ``info`` and arrays included), atomically."""
    from ase.io import write

    buf = io.StringIO()
    write(buf, list(frames), format="extxyz")
    write_text(path, buf.getvalue())


class FrameAppender:
    """Append ``ase.Atoms`` to an extended XYZ file as they come, one whole frame per write.

    For outputs that grow during a long run (an MD trajectory): each frame
    is formatted in memory first and written with one unbuffered write, so
    after every frame the file is a valid trajectory of the frames so far, and
    an interrupted or killed run keeps them. The file is created (or emptied)
    at the first frame, so a run that fails before it leaves an existing
    file as it was.

    Examples
    --------
    >>> import tempfile, os
    >>> from ase.build import bulk
    >>> from ase.io import read
    >>> p = os.path.join(tempfile.mkdtemp(), "t.extxyz")
    >>> with FrameAppender(p) as out:
    ...     out.append(bulk("Cu"))
    ...     n_after_one = len(read(p, ":"))
    ...     out.append(bulk("Cu", a=3.7))
    >>> n_after_one, len(read(p, ":")), out.count
    (1, 2, 2)
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.count = 0
        self._fd = None

    def append(self, atoms):
        """Write one frame (its ``info`` and arrays included) at the end of the file."""
        from ase.io import write

        buf = io.StringIO()
        write(buf, atoms, format="extxyz")
        data = memoryview(buf.getvalue().encode("utf-8"))
        if self._fd is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
        while data:
            data = data[os.write(self._fd, data):]
        self.count += 1

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_csv(path, rows):
    """Write a list of dict rows as CSV; the columns are the keys of all rows, in order of appearance."""
    columns = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())
