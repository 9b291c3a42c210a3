"""The store of an active-learning run: one ASE database (``ase.db``) holds every label, failure and round.

A file name ending in ``.db`` is an SQLite file (the default); a
``postgresql://`` URL is passed to :func:`ase.db.connect` as it is, so a team
can share one PostgreSQL database (ASE reaches it through the packages
``ase-db-backends`` and ``psycopg2``; untested here). One loop writes to a
store at a time. Every write is one transaction, made as
soon as there is something to keep: a label the moment its oracle call ends,
so a run killed at any moment loses nothing that was labelled.

Rows (``record`` key):

* ``label``: a labelled structure: its atoms (with the oracle's energy and
  forces as a single-point calculator), ``candidate`` (index in the pool),
  ``label`` (the target's value), ``target``, ``round`` (when it was labelled),
  ``oracle`` (its name; ``data["oracle"]`` the full settings), ``attempt``,
  ``seconds``; its place in the training sets: ``active`` (the round it joined
  the active-learning set), ``random`` (the round it joined the random-sampling
  baseline), ``test`` (held out to measure errors); and, when a strategy chose
  it, ``strategy``, ``score`` (the acquisition score), ``model`` (the id of the
  model that chose it), ``pred`` and ``pred_std`` (that model's prediction).
* ``failure``: one failed oracle call: the atoms, ``candidate``, ``round``,
  ``attempt``, ``reason``, ``seconds``, ``oracle``.
* ``model``: a model a round trained (on-the-fly MD: the committee whose MD
  chose the round's frames, and which the next round continues from):
  ``round``, ``model`` (its id); ``data["files"]`` the files of
  :func:`ml4ms.potentials.save_potential`, checksummed as on disk.
* ``round``: ``round``, ``status`` (``open`` while its labels are computed,
  then ``done``), ``started``/``ended`` (Unix times), ``n_train``, ``n_labels``,
  ``n_failed``, ``model``, ``final``; ``data`` holds the plan (the candidates
  of each set), the scores and predictions of the chosen, and the model's
  test metrics per set.

The training set of a round is a query: ``store.training_set("active", 3)``
selects ``record=label,active<3``. The database's metadata hold the run's
settings (:attr:`LabelStore.settings`), so a rerun can check it continues the
same run.

Examples
--------
>>> import os, tempfile
>>> from ase.build import bulk
>>> store = LabelStore(os.path.join(tempfile.mkdtemp(), "labels.db"))
>>> store.begin({"target": "energy"})
>>> _ = store.add_label(bulk("Cu"), candidate=7, value=-0.5, results={"energy": -0.5}, round=0,
...                     oracle={"calculator": "ase.calculators.emt:EMT"}, sets={"active": 0})
>>> store.training_set("active", 1)
([7], [-0.5])
>>> store.training_set("random", 1)
([], [])
"""

import json
import math
import os
import time

from ..errors import InputError

#: ``kind`` in the metadata of a store written by ml4ms
KIND = "ml4ms-active-learning"
#: the training sets a label can belong to
SETS = ("active", "random")


def is_url(name):
    """True for a database server address (``postgresql://...``), False for a file.

    Examples
    --------
    >>> is_url("postgresql://user@host/labels"), is_url("labels.db")
    (True, False)
    """
    return "://" in str(name)


def _check_sqlite(path):
    """Refuse, without writing to it, a file that is not an ASE SQLite database (or an empty one)."""
    import sqlite3

    if os.path.getsize(path) == 0:
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputError(f"cannot read the database ({exc.strerror})", source=path,
                         hint="check that it is a file you may read") from None
    if head != b"SQLite format 3\x00":
        raise InputError("not an SQLite database", source=path,
                         hint="give the .db file an 'ml4ms active run' wrote, or a new name")
    connection = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"unreadable SQLite database ({exc})", source=path, hint="give another file") from None
    finally:
        connection.close()
    if tables and "systems" not in tables:
        raise InputError("an SQLite database, but not an ASE one", source=path,
                         hint="give the .db file an 'ml4ms active run' wrote, or a new name")


def _plain(value):
    """A key-value pair value as ase.db stores it: Python scalars (numpy ones converted)."""
    return value.item() if hasattr(value, "item") else value


class LabelStore:
    """The labels, failures and rounds of one active-learning run, in an ASE database.

    Parameters
    ----------
    url : str
        A ``.db`` file (SQLite), or a database URL passed to :func:`ase.db.connect`.
    must_exist : bool, default False
        Refuse a file that does not exist (reading commands), instead of creating it when
        something is first written.
    """

    def __init__(self, url, must_exist=False):
        self.url = os.fspath(url)
        if not is_url(self.url):
            if not self.url.lower().endswith(".db"):
                raise InputError("the label database must be a .db file (SQLite) or a postgresql:// URL",
                                 source=self.url, hint="give a name ending in .db")
            if os.path.isdir(self.url):
                raise InputError("is a folder, not a database file", source=self.url, hint="give a .db file name")
            if os.path.exists(self.url):
                _check_sqlite(self.url)
            elif must_exist:
                raise InputError("database not found", source=self.url,
                                 hint="give the .db file that 'ml4ms active run' wrote")
        self._db = None

    @property
    def db(self):
        if self._db is None:
            import ase.db

            # no lock file: ase's lock file outlives a killed process and would block the rerun forever;
            # SQLite locks the file itself, and one loop writes at a time
            self._db = ase.db.connect(self.url, use_lock_file=False)
        return self._db

    # ----------------------------------------------------------------------------------------- the run
    def exists(self):
        """Whether the store holds anything (an SQLite file that does not exist yet holds nothing)."""
        if not is_url(self.url) and not os.path.exists(self.url):
            return False
        try:
            return bool(self.db.metadata) or self.db.count() > 0
        except Exception as exc:  # sqlite3.DatabaseError, a missing driver, a server that refuses ...
            raise InputError(f"cannot read the database ({type(exc).__name__}: {' '.join(str(exc).split())})",
                             source=self.url,
                             hint="check the file or URL (a PostgreSQL URL needs the packages ase-db-backends and "
                                  "psycopg2, and a server that accepts you)") from None

    @property
    def settings(self):
        """The run's settings, as :meth:`begin` wrote them; :class:`InputError` for a store of anything else."""
        meta = self.db.metadata if self.exists() else {}
        if meta.get("kind") != KIND:
            if not meta and not self.exists():
                raise InputError("the database holds no active-learning run yet", source=self.url,
                                 hint="start one with 'ml4ms active run CONFIG --db ...'")
            raise InputError("not a database of an ml4ms active-learning run", source=self.url,
                             hint="give the database that 'ml4ms active run' wrote, or a new name")
        return meta["settings"]

    def begin(self, settings):
        """Start a run: write its ``settings`` (a JSON-able dict) in the metadata."""
        created = self.db.metadata.get("created", time.time())  # read first: ase's setter on a new file loses it
        self.db.metadata = {"kind": KIND, "format": 1, "created": created, "settings": settings}

    # ----------------------------------------------------------------------------------------- labels
    def add_label(self, atoms, candidate, value, results, round, oracle, sets=None, test=False, choice=None,
                  attempt=1, seconds=0.0, target=None):
        """Write one labelled structure; returns its row id.

        ``sets`` maps a training set (:data:`SETS`) to the round the label joins it;
        ``choice`` holds ``strategy``, ``score``, ``model``, ``pred``, ``pred_std``
        of the strategy that chose it (non-finite values are left out).
        """
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, **results) if results else None
        keys = {"record": "label", "candidate": int(candidate), "label": float(value), "round": int(round),
                "oracle": _oracle_name(oracle), "attempt": int(attempt), "seconds": float(seconds)}
        if target:
            keys["target"] = target
        keys.update({name: int(r) for name, r in (sets or {}).items() if r is not None})
        if test:
            keys["test"] = True
        keys.update(_choice_keys(choice))
        return self.db.write(atoms, key_value_pairs=keys, data={"oracle": oracle})

    def join(self, row_id, sets=None, test=False, choice=None):
        """Put an already labelled structure into more sets (no new oracle call)."""
        keys = {name: int(r) for name, r in (sets or {}).items() if r is not None}
        if test:
            keys["test"] = True
        keys.update(_choice_keys(choice))
        if keys:
            self.db.update(row_id, **keys)

    def add_failure(self, atoms, candidate, round, oracle, reason, attempt=1, seconds=0.0):
        """Write one failed oracle call; returns its row id."""
        atoms = atoms.copy()
        atoms.calc = None
        keys = {"record": "failure", "candidate": int(candidate), "round": int(round), "oracle": _oracle_name(oracle),
                "reason": " ".join(str(reason).split()), "attempt": int(attempt), "seconds": float(seconds)}
        return self.db.write(atoms, key_value_pairs=keys, data={"oracle": oracle})

    def labels(self, query="", light=False):
        """The label rows that match ``query`` (ase.db syntax, e.g. ``"active<3"``), in the order written.

        ``light``: the rows' keys only (no atoms, no data), for bookkeeping.
        """
        return self._select("label", query, light)

    def failures(self, query="", light=False):
        """The failure rows that match ``query``, in the order written (``light`` as in :meth:`labels`)."""
        return self._select("failure", query, light)

    def _select(self, record, query, light):
        selection = ",".join(q for q in (f"record={record}", query) if q)
        if light:
            return list(self.db.select(selection, columns=["id", "key_value_pairs"], include_data=False))
        return list(self.db.select(selection))

    def training_set(self, name, before_round):
        """``(candidates, labels)`` of the set ``name`` (:data:`SETS`, or ``"test"``) before round ``before_round``.

        The query ``record=label,NAME<ROUND`` (``record=label,test=True`` for the test set).
        """
        rows = self.labels("test=True" if name == "test" else f"{name}<{int(before_round)}", light=True)
        return [row.candidate for row in rows], [row.label for row in rows]

    # ----------------------------------------------------------------------------------------- models
    def save_model(self, round, model_id, committee):
        """Keep the potential (or committee) ``committee`` that round ``round`` trained, as ``model_id``.

        A model row written before for this round (by a run killed before the round opened) is replaced.
        """
        import base64
        import tempfile

        from ase import Atoms

        from ..potentials.io import save_potential

        with tempfile.TemporaryDirectory(prefix="ml4ms-model-") as folder:
            save_potential(folder, committee)
            files = {}
            for where, _, names in os.walk(folder):
                for name in names:
                    path = os.path.join(where, name)
                    with open(path, "rb") as handle:
                        files[os.path.relpath(path, folder)] = base64.b64encode(handle.read()).decode("ascii")
        old = [row.id for row in self.db.select(record="model", round=int(round), columns=["id"])]
        row_id = self.db.write(Atoms(), key_value_pairs={"record": "model", "round": int(round),
                                                         "model": str(model_id)}, data={"files": files})
        if old:
            self.db.delete(old)
        return row_id

    def load_model(self, model_id):
        """The potential (or committee) kept as ``model_id`` (:meth:`save_model`), or None."""
        import base64
        import tempfile

        from ..potentials.io import load_potential

        rows = list(self.db.select(record="model", model=str(model_id)))
        if not rows:
            return None
        with tempfile.TemporaryDirectory(prefix="ml4ms-model-") as folder:
            for name, text in rows[-1].data["files"].items():
                if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
                    raise InputError(f"the model row of {model_id} names a file outside its folder ({name!r})",
                                     source=self.url, hint="give the database that 'ml4ms active run' wrote")
                path = os.path.join(folder, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as handle:
                    handle.write(base64.b64decode(text))
            return load_potential(folder)

    # ----------------------------------------------------------------------------------------- rounds
    def open_round(self, round, plan, keys=None, data=None):
        """Record the start of a round with its ``plan`` (set -> candidates); returns its row id."""
        from ase import Atoms

        row = {"record": "round", "round": int(round), "status": "open", "started": time.time()}
        row.update({k: _plain(v) for k, v in (keys or {}).items() if v is not None})
        return self.db.write(Atoms(), key_value_pairs=row, data={"plan": plan, **(data or {})})

    def close_round(self, round, **keys):
        """Mark round ``round`` done, with its counts; returns the row id."""
        row = self.db.get(record="round", round=int(round))
        self.db.update(row.id, status="done", ended=time.time(), **{k: _plain(v) for k, v in keys.items()})
        return row.id

    def rounds(self):
        """Every round as a dict of its keys and ``data``, in order."""
        out = []
        for row in self.db.select("record=round", sort="round"):
            entry = dict(row.key_value_pairs)
            entry["data"] = dict(row.data)
            out.append(entry)
        return out


def _oracle_name(settings):
    if "calculator" in settings:
        return settings["calculator"]
    return f"replay:{os.path.basename(str(settings.get('replay')))}"


def _choice_keys(choice):
    out = {}
    for key, value in (choice or {}).items():
        value = _plain(value)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        out[key] = value
    return out


def settings_digest(settings):
    """A short id of a JSON-able object (``m`` and 12 hex digits): the model id of a recipe and its training set.

    The letter in front keeps ase.db from refusing an id that reads as a number
    (``404166473e19``, ``123456789012``).

    Examples
    --------
    >>> settings_digest({"a": 1}) == settings_digest({"a": 1}), len(settings_digest([1, 2]))
    (True, 13)
    """
    import hashlib

    return "m" + hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
