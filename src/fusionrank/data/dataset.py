"""A recommendation dataset: interactions, optional side tables, and a profile that says
what the columns mean.

Three ways in, one object out:

- :func:`load_dataset` reads a dataset stored under the data folder by name: a shipped
  one (``ml-100k``, fetched if missing) or one stored by ``fusionrank data import``;
- :meth:`Dataset.from_files` reads the user's own files (CSV/TSV/Parquet/JSONL, or
  DataFrames) with a column mapping, validating every row;
- :meth:`Dataset.save` stores a dataset under the data folder, so that every command can
  name it (``--dataset shop``).

Derived files (splits, content vectors) go under the dataset's ``home`` folder: its own
folder in the data directory, or a cache folder for datasets read from files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusionrank.columns import DOMAIN, ITEM_ID, RATING, TIMESTAMP, USER_ID
from fusionrank.data.atomic import read_atomic_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.feedback import FeedbackConfig, implicit_feedback
from fusionrank.data.loaders import (
    InteractionColumns,
    check_known_items,
    normalise_catalogue,
    normalise_interactions,
    read_table,
)
from fusionrank.data.profile import MODALITIES, DatasetProfile
from fusionrank.data.text import template_fields
from fusionrank.errors import InvalidArgumentError, MissingInputError
from fusionrank.io import atomic_path, read_json, sha256_file, write_json

DEFAULT_ROOT_ENV = "FUSIONRANK_DATA"
CACHE_ENV = "FUSIONRANK_CACHE"
DATASET_FILE = "dataset.json"
TABLE_FILES = {"interactions": "interactions.parquet", "items": "items.parquet", "users": "users.parquet"}


def default_root() -> Path:
    """Data directory: ``$FUSIONRANK_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


def default_cache() -> Path:
    """Cache for datasets read from files: ``$FUSIONRANK_CACHE``, else ``~/.cache/fusionrank``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "fusionrank"))


@dataclass
class Dataset:
    """Interactions (implicit, deduplicated) and the side tables that came with them.

    ``interactions`` has ``user_id``, ``item_id`` (str), ``rating`` and ``timestamp``
    (float seconds; 0 when the source has none), and ``domain`` when mapped. ``items`` /
    ``users`` are keyed by ``item_id`` / ``user_id``; ``kg`` holds (head_id, relation_id,
    tail_id) triples and ``link`` maps items to KG entities, when the source has them.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    kg: pd.DataFrame | None = None
    link: pd.DataFrame | None = None
    profile: DatasetProfile = field(default_factory=DatasetProfile)
    """What the columns mean (text template, title, images, genres, domains, side features)."""
    home: Path | None = None
    """Folder for derived files (splits, content vectors); None keeps nothing on disk."""
    files: dict[str, Path] = field(default_factory=dict)
    """Files the tables came from (``items``, ``kg``, ``link`` ...), for encoders and errors."""

    @property
    def item_ids(self) -> list[str]:
        """Every item id: catalogue order first, then items only seen in interactions."""
        ids = list(self.items[ITEM_ID]) if self.items is not None else []
        seen = set(ids)
        for i in self.interactions[ITEM_ID].unique():
            if i not in seen:
                ids.append(i)
                seen.add(i)
        return ids

    @property
    def user_ids(self) -> list[str]:
        """Every user id: in order of first interaction."""
        return list(pd.unique(self.interactions[USER_ID]))

    # --- content vectors ---------------------------------------------------------------
    def content_inputs(self, modality: str) -> dict[str, Any]:
        """What in the profile decides ``modality``'s vectors (the text template, the image
        column and root, the encoder settings): recorded beside the vectors by the embed
        stage, so that vectors made for other settings are never read as current."""
        if modality not in MODALITIES:
            raise InvalidArgumentError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        p = self.profile
        return {
            "text": p.text,
            "image": p.image,
            "image_root": p.image_root,
            "encoder": p.encoders.get(modality),
        }

    def current_content(self, modality: str) -> Path:
        """The file that names the current vectors folder of ``modality`` (written by the
        embed stage): ``<home>/content/<modality>.json``."""
        if self.home is None:
            raise InvalidArgumentError(f"dataset {self.name!r} has no home folder to keep content vectors in")
        return self.home / "content" / f"{modality}.json"

    def check_modality(self, modality: str) -> None:
        """Refuse, in one line, a content modality this dataset has nothing to make from:
        text needs a text template, images an image column, CLIP either, the knowledge
        graph its ``.kg`` and ``.link`` files (a folder in ``profile.vectors`` always does)."""
        p = self.profile
        if modality not in MODALITIES:
            raise InvalidArgumentError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if modality in p.vectors:
            return
        if modality == "text" and not p.text or modality == "clip" and not (p.text or p.image):
            raise InvalidArgumentError(
                f"dataset {self.name!r} has no text template in its profile (text=...)"
            )
        if modality == "image" and not p.image:
            raise InvalidArgumentError(
                f"dataset {self.name!r} has no image column in its profile (image=...)"
            )
        if modality == "kg" and not ("kg" in self.files and "link" in self.files):
            raise MissingInputError(f"dataset {self.name!r} has no knowledge graph (.kg and .link files)")

    def content_folder(self, modality: str) -> Path:
        """The folder of this dataset's ``modality`` vectors: one the profile names
        (``profile.vectors``), else the one the embed stage made for the current settings
        (``fr.embed_content`` / ``fusionrank run``). Reads only; a one-line error says what
        to run when they are missing or were made for other settings."""
        self.check_modality(modality)
        if modality in self.profile.vectors:  # made elsewhere
            given = Path(self.profile.vectors[modality])
            if not (given / "manifest.json").exists():
                raise MissingInputError(
                    f"{self.name}: the {modality} vectors folder {given} has no manifest.json"
                )
            return given
        todo = f"embed them first: fr.embed_content(dataset, [{modality!r}]) or `fusionrank run`"
        pointer = self.current_content(modality)
        if not pointer.exists():
            raise MissingInputError(f"dataset {self.name!r} has no {modality} vectors yet; {todo}")
        made = read_json(pointer)
        if made.get("inputs") != json.loads(json.dumps(self.content_inputs(modality))):
            raise MissingInputError(
                f"dataset {self.name!r}: its {modality} vectors were made for other profile settings; {todo}"
            )
        folder = pointer.parent.parent / "vectors" / made["folder"]
        if not (folder / "manifest.json").exists():
            raise MissingInputError(
                f"dataset {self.name!r}: {folder} is not a finished vectors folder; {todo}"
            )
        return folder

    def __repr__(self) -> str:
        sides = [n for n in ("items", "users", "kg") if getattr(self, n) is not None]
        return (
            f"Dataset({self.name!r}, {len(self.interactions):,} interactions, "
            f"{self.interactions[USER_ID].nunique():,} users, {len(self.item_ids):,} items"
            + (f", with {', '.join(sides)}" if sides else "")
            + ")"
        )

    # --- the user's own files ----------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        interactions: str | Path | pd.DataFrame,
        items: str | Path | pd.DataFrame | None = None,
        users: str | Path | pd.DataFrame | None = None,
        *,
        columns: dict[str, str] | None = None,
        text: str | None = None,
        image: str | None = None,
        image_root: str | Path | None = None,
        name: str | None = None,
        profile: DatasetProfile | dict[str, Any] | None = None,
        feedback: FeedbackConfig | None = None,
        cache_dir: str | Path | None = None,
    ) -> Dataset:
        """A dataset from the user's own files (CSV/TSV/Parquet/JSONL) or DataFrames.

        ``columns`` maps fusionrank's fields to the interaction file's columns: ``user``,
        ``item`` (required unless named ``user_id``/``item_id``), ``timestamp`` (numbers,
        ISO-8601 text or datetimes), ``rating`` (a rating or weight) and ``domain``. The
        catalogue and user table are keyed by the same id column as the interactions (or by
        ``item_id``/``user_id``). ``text`` is the item text template, ``image`` the image
        path column (relative to ``image_root``); ``profile`` sets the other profile
        fields (genres, title, domains, side features, encoders). Every problem stops with
        a :class:`DataError` naming the file, the 1-based row and the column.

        >>> import pandas as pd
        >>> events = pd.DataFrame({"uid": ["a", "a", "b"], "sku": ["x", "y", "x"], "ts": [1, 2, 3]})
        >>> Dataset.from_files(events, columns={"user": "uid", "item": "sku", "timestamp": "ts"}, name="toy")
        Dataset('toy', 3 interactions, 2 users, 2 items)
        """
        cols = InteractionColumns.from_mapping(columns)
        raw, inter_name = read_table(interactions, "interactions")
        inter = normalise_interactions(raw, cols, inter_name)
        if TIMESTAMP not in inter.columns:
            inter[TIMESTAMP] = 0.0
        item_table = user_table = None
        items_name = "<profile>"
        if items is not None:
            frame, items_name = read_table(items, "items")
            item_table = normalise_catalogue(frame, _id_column(frame, cols.item, ITEM_ID), items_name)
            check_known_items(inter, item_table, inter_name, cols.item)
        if users is not None:
            frame, users_name = read_table(users, "users")
            user_table = normalise_catalogue(
                frame, _id_column(frame, cols.user, USER_ID), users_name, id_name=USER_ID
            )
        base = profile if isinstance(profile, DatasetProfile) else DatasetProfile.from_json(profile)
        prof = _with_overrides(base, text=text, image=image, image_root=image_root)
        check_profile(prof, item_table, user_table, items_name)
        name = name or (Path(interactions).stem if not isinstance(interactions, pd.DataFrame) else "dataset")
        home = (
            Path(cache_dir)
            if cache_dir is not None
            else default_cache() / f"{name}-{_key(interactions, items, users)}"
        )
        return cls(
            name=name,
            interactions=implicit_feedback(inter, feedback),
            items=item_table,
            users=user_table,
            profile=prof,
            home=home,
        )

    # --- storage under the data folder ----------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Store the dataset as Parquet tables + ``dataset.json`` (profile, row counts,
        checksums) in ``folder``; :func:`load_dataset` reads it back by name. Tables are
        written under temporary names and renamed, ``dataset.json`` last."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tables = {"interactions": self.interactions, "items": self.items, "users": self.users}
        meta: dict[str, Any] = {"format": "fusionrank", "name": self.name, "files": {}}
        for key, frame in tables.items():
            if frame is None:
                continue
            path = folder / TABLE_FILES[key]
            with atomic_path(path) as tmp:
                frame.to_parquet(tmp, index=False)
            meta["files"][key] = {"file": path.name, "rows": len(frame), "sha256": sha256_file(path)}
        meta["profile"] = self.profile.to_json()
        write_json(folder / DATASET_FILE, meta)
        return folder

    def catalogue_file(self) -> Path:
        """A file holding the catalogue with an ``item_id`` column, for the embedding engine:
        the stored table, or the atomic ``.item`` file, else written once under ``home``."""
        if "items" in self.files:
            return self.files["items"]
        if self.items is None:
            raise DataError(f"dataset {self.name!r} has no item catalogue: content needs one")
        if self.home is None:
            raise InvalidArgumentError(f"dataset {self.name!r} has no home folder for its catalogue file")
        path = self.home / "items.parquet"
        if not path.exists():
            with atomic_path(path) as tmp:
                self.items.to_parquet(tmp, index=False)
        self.files["items"] = path
        return path


def _id_column(frame: pd.DataFrame, mapped: str, default: str) -> str:
    """The id column of a side table: the interactions' column name if present, else the default."""
    return mapped if mapped in frame.columns else default


def _with_overrides(profile: DatasetProfile, **values: Any) -> DatasetProfile:
    import dataclasses

    given: dict[str, Any] = {
        k: (str(Path(v).expanduser().resolve()) if k == "image_root" else v) for k, v in values.items() if v
    }
    return dataclasses.replace(profile, **given)


def check_profile(
    profile: DatasetProfile, items: pd.DataFrame | None, users: pd.DataFrame | None, source: str
) -> None:
    """Every column the profile names exists in its table (before any model runs)."""
    needs_items = {
        "text": template_fields(profile.text) if profile.text else [],
        "title": [profile.title] if profile.title else [],
        "image": [profile.image] if profile.image else [],
        "genres": [profile.genres] if profile.genres else [],
    }
    for key, wanted in needs_items.items():
        for col in wanted:
            if items is None:
                raise DataError(f"the {key} setting names column {col!r} but there is no item catalogue")
            if col not in items.columns:
                raise DataError(
                    f"the {key} setting names a column the catalogue lacks; it has {list(items.columns)}",
                    file=source,
                    column=col,
                )
    if profile.image and not profile.image_root:
        raise DataError("an image column needs an image root folder (image_root)", column=profile.image)
    for col in profile.user_features:
        if users is None or col not in users.columns:
            have = list(users.columns) if users is not None else "no user table"
            raise DataError(f"user_features names a column the user table lacks ({have})", column=col)


def _key(*sources: Any) -> str:
    """A short key for files (path, size, mtime) or DataFrames (content hash)."""
    parts: list[Any] = []
    for s in sources:
        if s is None:
            parts.append(None)
        elif isinstance(s, pd.DataFrame):
            parts.append(str(pd.util.hash_pandas_object(s.astype(str), index=False).sum()))
        else:
            p = Path(s).resolve()
            st = p.stat()
            parts.append([str(p), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


# --- loading by name ----------------------------------------------------------------------
def load_atomic(
    directory: str | Path,
    name: str,
    feedback: FeedbackConfig | None = None,
    profile: DatasetProfile | None = None,
) -> Dataset:
    """Load a dataset stored as RecBole atomic files, e.g. ``data/ml-100k/ml-100k.inter``."""
    directory = Path(directory)
    tables = read_atomic_dataset(directory, name)
    inter_path = directory / f"{name}.inter"
    inter = tables["inter"]
    for col in (USER_ID, ITEM_ID):
        if col not in inter.columns:
            raise DataError(
                f"missing column; the file has {list(inter.columns)}", file=inter_path, column=col
            )
    present = {c: c if c in inter.columns else None for c in (RATING, TIMESTAMP, DOMAIN)}
    cols = InteractionColumns(rating=present[RATING], timestamp=present[TIMESTAMP], domain=present[DOMAIN])
    checked = normalise_interactions(inter, cols, inter_path)  # empty ids, bad times, NaN ratings
    inter = inter.assign(**{c: checked[c] for c in checked.columns})
    if TIMESTAMP not in inter.columns:
        inter[TIMESTAMP] = 0.0
    items = None
    files: dict[str, Path] = {s: directory / f"{name}.{s}" for s in ("kg", "link") if s in tables}
    if "item" in tables:
        items = normalise_catalogue(tables["item"], ITEM_ID, directory / f"{name}.item")
        check_known_items(inter, items, inter_path)
        files["items"] = directory / f"{name}.item"
    users = tables.get("user")
    if users is not None:
        users = normalise_catalogue(users, USER_ID, directory / f"{name}.user", id_name=USER_ID)
    profile = profile or DatasetProfile()
    check_profile(profile, items, users, str(directory / f"{name}.item"))
    return Dataset(
        name=name,
        interactions=implicit_feedback(inter, feedback),
        items=items,
        users=users,
        kg=tables.get("kg"),
        link=tables.get("link"),
        profile=profile,
        home=directory,
        files=files,
    )


def load_stored(folder: Path, name: str, feedback: FeedbackConfig | None = None) -> Dataset:
    """Load a dataset stored by :meth:`Dataset.save` (Parquet tables + ``dataset.json``)."""
    try:
        meta = read_json(folder / DATASET_FILE)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"not valid JSON ({exc}); import the dataset again", file=folder / DATASET_FILE
        ) from exc
    if not isinstance(meta, dict):
        raise DataError("expected a JSON object; import the dataset again", file=folder / DATASET_FILE)
    profile = DatasetProfile.from_json(meta.get("profile"), owner=str(folder / DATASET_FILE))
    if meta.get("format") == "atomic":
        return load_atomic(folder, name, feedback, profile)
    tables: dict[str, pd.DataFrame | None] = {}
    for key in TABLE_FILES:
        info = meta["files"].get(key)
        tables[key] = pd.read_parquet(folder / info["file"]) if info else None
    inter = tables["interactions"]
    assert inter is not None  # noqa: S101 - save() always writes it
    for col in (USER_ID, ITEM_ID):
        inter[col] = inter[col].astype(str)
    if DOMAIN in inter.columns:
        inter[DOMAIN] = inter[DOMAIN].astype(str)
    files = {"items": folder / TABLE_FILES["items"]} if tables["items"] is not None else {}
    return Dataset(
        name=name,
        interactions=implicit_feedback(inter, feedback),
        items=tables["items"],
        users=tables["users"],
        profile=profile,
        home=folder,
        files=files,
    )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    feedback: FeedbackConfig | None = None,
    *,
    fetch: bool = True,
) -> Dataset:
    """Load a dataset by name from ``<root>/<name>/`` (root: ``$FUSIONRANK_DATA`` or ``./data``).

    A shipped dataset (``ml-100k``) is fetched first when it is missing and ``fetch`` is
    true; other names must have been stored with ``fusionrank data import``.

    >>> import fusionrank as fr
    >>> fr.load_dataset("no-such-data", root="/nonexistent", fetch=False)
    Traceback (most recent call last):
    ...
    fusionrank.data.errors.DataError: file /nonexistent/no-such-data: no dataset 'no-such-data' here; ...
    """
    from fusionrank.data.fetch import SHIPPED

    root = Path(root) if root is not None else default_root()
    folder = root / name
    if name in SHIPPED:
        fetch_fn, profile = SHIPPED[name]
        if not (folder / f"{name}.inter").exists():
            if not fetch:
                raise DataError(
                    f"dataset {name!r} is not fetched; run `fusionrank data fetch {name}`", file=folder
                )
            fetch_fn(root)
        if not (folder / DATASET_FILE).exists():  # fetched by an older version: add the profile
            write_json(
                folder / DATASET_FILE, {"format": "atomic", "name": name, "profile": profile.to_json()}
            )
    if (folder / DATASET_FILE).exists():
        return load_stored(folder, name, feedback)
    if (folder / f"{name}.inter").exists():
        return load_atomic(folder, name, feedback)
    shipped = ", ".join(sorted(SHIPPED))
    raise DataError(
        f"no dataset {name!r} here; store your own with `fusionrank data import --name {name} ...`"
        f" or fetch a shipped one ({shipped}) with `fusionrank data fetch NAME`",
        file=folder,
    )


def domain_labels(dataset: Dataset, item_ids: np.ndarray | list[str]) -> np.ndarray:
    """Domain per item id ('' for none): the profile's rule over genres, else the
    interactions' ``domain`` column (an item's first domain)."""
    from fusionrank.data.side import item_domains

    ids = [str(i) for i in item_ids]
    if dataset.profile.domains:
        if dataset.items is None or not dataset.profile.genres:
            raise DataError(f"dataset {dataset.name!r}: a domain rule needs a catalogue with a genres column")
        rule = item_domains(dataset.items, dataset.profile.domains, dataset.profile.genres)
        return np.array([rule.get(i, "") for i in ids], dtype=object)
    if DOMAIN in dataset.interactions.columns:
        first = dataset.interactions.drop_duplicates(ITEM_ID).set_index(ITEM_ID)[DOMAIN].astype(str)
        return np.array([first.get(i, "") for i in ids], dtype=object)
    raise DataError(
        f"dataset {dataset.name!r} has no domains: map a domain column (columns={{'domain': ...}}) "
        "or give a domain rule over genres in its profile"
    )


def import_dataset(
    name: str,
    interactions: str | Path | pd.DataFrame,
    items: str | Path | pd.DataFrame | None = None,
    users: str | Path | pd.DataFrame | None = None,
    *,
    root: str | Path | None = None,
    **options: Any,
) -> Dataset:
    """``fusionrank data import`` as a function: read and validate the user's files
    (:meth:`Dataset.from_files` options) and store them under ``<root>/<name>/`` so that
    ``load_dataset(name)`` and ``--dataset name`` find them. Every problem stops here,
    before any model runs. Re-importing replaces the stored tables (splits and vectors
    derived from the old ones are removed)."""
    import shutil

    folder = (Path(root) if root is not None else default_root()) / name
    data = Dataset.from_files(interactions, items, users, name=name, cache_dir=folder, **options)
    for derived in ("splits", "vectors"):
        shutil.rmtree(folder / derived, ignore_errors=True)
    data.save(folder)
    return load_stored(folder, name)
