"""Top-k recommendations from a finished run folder (``fusionrank train --out`` or
``fusionrank run``).

- A user known to a ``train`` run is scored by the run's model, seen items excluded.
- A user known to a ``run`` (LTR) folder is answered by the LightGBM ranker over the
  run's test-stage candidates (features from training history; training and validation
  items excluded); ``explain=True`` adds the three features that moved each item most
  (LightGBM ``pred_contrib``).
- A user unknown to training is served by the model's cold-start path, or else from side
  features (the dataset profile's user columns) by a ``profile`` model fitted on the run's
  split; the features come from ``user_features`` or the dataset's user table.
- ``new_items`` ranks items that were not in training, from their content alone: the
  file's items are embedded with the dataset's text template and encoder (and their
  genres read, where the dataset has them), and scored by the model of
  ``registry.DEFAULT_MODELS['new items']`` (``kernel-content``: EASE columns predicted
  from content) fitted on the run's split.
- Items added to the run since (``POST /items`` of ``fusionrank serve``, kept in the
  run's append-only log, :mod:`fusionrank.pipelines.added_items`) enter a known user's
  top-k by their content: :func:`place_added_items`.

:class:`OpenRun` is a run opened once: ``fusionrank recommend`` opens one per call,
``fusionrank serve`` one per process, and both answer through the same methods, so the
service's answer is the command's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from fusionrank.capabilities import ReadsContent, ScoresNewItems, ServesUnknownUsers, item_item_weights
from fusionrank.columns import ITEM_ID, ITEM_IDX, RANK, SCORE, USER_ID, USER_IDX
from fusionrank.data.dataset import Dataset, load_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.idmap import IdMap
from fusionrank.data.profile import GENRES
from fusionrank.data.splits import Split, SplitConfig, prepare_split
from fusionrank.errors import InvalidArgumentError, MissingInputError, UnknownKeyError
from fusionrank.io import read_json, require_complete, write_json
from fusionrank.pipelines.added_items import LOG_NAME, AddedItems, ItemLog, replay
from fusionrank.pipelines.evaluate import RUN_SOURCE, content_needed
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.recommender import Recommender, UnknownUserError, saved_config
from fusionrank.registry import DEFAULT_MODELS, build_model, load_model, saved_class
from fusionrank.scoring import ranked_order, top_k

if TYPE_CHECKING:
    from fusionrank.encoders.base import Encoder
    from fusionrank.features.shards import ShardedTable
    from fusionrank.ranker.lgbm import LTRRanker

SHOWN = (RANK, ITEM_ID, SCORE)

RANKER_SOURCE = "LightGBM ranker"
"""What answered a known user of a ``run`` folder (the service's ``X-FusionRank-Source``)."""
SIDE_FEATURES_SOURCE = "side features"
"""What answered a user the run does not know, from the side features given."""

FITTED = "fitted"
"""The folder of a run that keeps the models an answer fits on the run's split (the
cold-start ``profile`` model, the new-items content model), so the next process serving
the run, or the next ``fusionrank recommend``, loads them instead of fitting them again."""

PLACEMENT_DEPTH = 100
"""An added item enters a known user's top-k by its content score among the content scores
of the user's top :data:`PLACEMENT_DEPTH` items (the ranker's or the model's), so the top
10 is a prefix of the top 50; it is also the most a request may ask for."""


def recommend(
    run: str | Path,
    user: str,
    k: int = 10,
    root: str | Path | None = None,
    user_features: dict[str, Any] | None = None,
    explain: bool = False,
    new_items: str | Path | None = None,
) -> pd.DataFrame:
    """``rank, item_id, score`` (and ``title`` when the dataset profile names one, ``why``
    when explained) for ``user``; ``.attrs["source"]`` says what answered."""
    ltr = check_run_folder(Path(run))
    if explain and not ltr:
        raise InvalidArgumentError(
            "--explain needs a `fusionrank run` folder (a LightGBM ranker explains its scores)"
        )
    return OpenRun.open(run, root).recommend(user, k, user_features, explain=explain, new_items=new_items)


def check_run_folder(run: Path) -> bool:
    """Whether ``run`` is a finished ``fusionrank run`` folder (True) or ``train --out``
    folder (False); one line when it is neither, or was not finished."""
    ltr = is_ltr_run(run)
    if not ltr and not (run / "model" / "config.json").exists():
        raise MissingInputError(
            f"{run} is not a finished `fusionrank train --out` folder (model/)"
            " or `fusionrank run` folder (ranker/)"
        )
    for finished in (run / "features", run / "ranker") if ltr else (run,):  # not killed mid-write
        require_complete(finished, "the run folder" if ltr else "the train folder")
    return ltr


def is_ltr_run(run: Path) -> bool:
    return (run / "ranker" / "ranker.json").exists() and (run / "features" / "features_test.parquet").exists()


def open_run_split(run: Path, root: str | Path | None = None) -> tuple[Dataset, Split]:
    """The dataset and split a run folder was made from (``config.json`` of a ``run``,
    ``source.json`` of a ``train --out`` folder)."""
    if is_ltr_run(run):
        from fusionrank.pipelines.config import ConfigError, parse_run_config
        from fusionrank.settings import SettingsError

        try:
            config = parse_run_config(read_json(run / "config.json"), str(run / "config.json"))
        except SettingsError as exc:  # a setting this version no longer (or not yet) has
            raise ConfigError(
                f"{exc}; the run folder was written by a fusionrank with other settings: run its "
                "config again (fusionrank run CONFIG) to recommend or serve from it"
            ) from exc
        if root is not None and isinstance(config.dataset, str):
            data = load_dataset(config.dataset, root)
        else:
            data = config.open_dataset()
        return data, prepare_split(data, config.split)
    source = read_json(run / RUN_SOURCE)
    data = load_dataset(source["dataset"], root if root is not None else source["root"])
    return data, prepare_split(data, SplitConfig.from_json(source["split"]))


class OpenRun:
    """A finished run folder opened once: its dataset, split and id maps, its LightGBM
    ranker and test-stage feature table (a ``run``) or its model (a ``train`` folder),
    and the items added to it since. The models only some answers need (the cold-start
    ``profile`` model, the content model and the text encoder for added items, the
    item-item weights for similar items) are built on first use, once.

    Reading is safe from several threads: the added items are an immutable snapshot that
    a writer replaces whole (:meth:`set_added`), and the feature table, the boosters and
    the lazily built parts are behind one lock."""

    def __init__(
        self,
        folder: Path,
        data: Dataset,
        split: Split,
        ranker: LTRRanker | None = None,
        table: ShardedTable | None = None,
        model: Recommender | None = None,
    ) -> None:
        self.folder = folder
        self.data = data
        self.split = split
        self.ranker = ranker
        self.table = table
        self.model = model
        self.log = ItemLog(folder)
        self._history = np.diff(split.matrix("train").indptr) > 0  # users with training interactions
        self._user_index = {str(u): i for i, u in enumerate(split.users.ids)}  # one id, no pandas
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}
        self._scores: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._added = AddedItems()
        self._log_offset = 0
        self._titles = self._catalogue_titles()

    @classmethod
    def open(cls, run: str | Path, root: str | Path | None = None) -> OpenRun:
        """Open ``run`` (checked finished) and replay its log of added items."""
        from fusionrank.features.shards import ShardedTable
        from fusionrank.ranker.lgbm import LTRRanker

        run = Path(run)
        ltr = check_run_folder(run)
        data, split = open_run_split(run, root)  # the run's id maps are the split's
        if ltr:
            opened = cls(
                run,
                data,
                split,
                ranker=LTRRanker.load(run / "ranker"),
                table=ShardedTable(run / "features" / "features_test.parquet"),
            )
        else:
            opened = cls(run, data, split, model=load_model(run / "model"))
        opened.sync()
        return opened

    # --- what the run knows --------------------------------------------------------------
    @property
    def ltr(self) -> bool:
        return self.ranker is not None

    @property
    def users(self) -> IdMap:
        return self.split.users

    @property
    def items(self) -> IdMap:
        return self.split.items

    @property
    def added(self) -> AddedItems:
        """The items added to the run so far (a snapshot)."""
        return self._added

    def set_added(self, added: AddedItems, log_offset: int) -> None:
        """Replace the snapshot of added items (a writer holds the log's lock)."""
        self._added, self._log_offset = added, log_offset

    def sync(self) -> bool:
        """Take in the log's lines written since the last look (by this process or another
        serving the same run); True when there were some."""
        if self.log.size() == self._log_offset:
            return False
        with self._lock:
            batches, offset = self.log.read(self._log_offset)
            if batches:
                self.set_added(replay(self._added, batches), offset)
            return bool(batches)

    def has_history(self, user: str) -> bool:
        """Whether ``user`` has training interactions in the run."""
        index = self._user_index.get(user)
        return index is not None and bool(self._history[index])

    def is_item(self, item: str) -> bool:
        """Whether ``item`` is in the run's catalogue or was added to it."""
        return item in self.items or item in self._added.position

    def title(self, item: str) -> str:
        return self._titles.get(item) or _row_title(self.data, self._added, item)

    def _catalogue_titles(self) -> dict[str, str]:
        from fusionrank.data.text import field_text

        table, column = self.data.items, self.data.profile.title
        if table is None or not column or column not in table.columns:
            return {}
        return {str(i): field_text(t) for i, t in zip(table[ITEM_ID], table[column])}

    # --- the ranker's answer -------------------------------------------------------------
    def candidate_rows(self, user: int) -> pd.DataFrame:
        """The test-stage feature rows of user index ``user`` (in the table's item order)."""
        assert self.table is not None  # noqa: S101 - an LTR run has its table
        with self._lock:
            rows = self.table.read_users([int(user)])
        if rows.empty:
            raise InvalidArgumentError(f"user index {user} has no candidates in {self.folder}")
        return rows

    def ranker_scores(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices of the candidates of user index ``user`` and the ranker's scores."""
        if self._scores is not None:
            found = self._scores.get(int(user))
            if found is None:
                raise InvalidArgumentError(f"user index {user} has no candidates in {self.folder}")
            return found
        rows = self.candidate_rows(user)
        assert self.ranker is not None  # noqa: S101
        with self._lock:
            scores = self.ranker.predict(rows)
        return rows[ITEM_IDX].to_numpy(), scores

    def score_all_candidates(self) -> None:
        """Score every candidate of the test table now, one row group at a time (a service
        does it once; the scores are the ranker's on the same rows, so the answers are the
        same). Keeps users × candidates, not users × items."""
        assert self.table is not None and self.ranker is not None  # noqa: S101
        scores: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        columns = list(dict.fromkeys([USER_IDX, ITEM_IDX, *self.ranker.columns]))
        with self._lock:
            for g in range(self.table.n_groups):
                rows = self.table.read_group(g, columns)
                values = self.ranker.predict(rows)
                users = rows[USER_IDX].to_numpy()
                items = rows[ITEM_IDX].to_numpy()
                order = np.argsort(users, kind="stable")  # the table's order within a user
                bounds = np.flatnonzero(np.diff(users[order])) + 1
                for part in np.split(order, bounds):
                    if len(part):
                        scores[int(users[part[0]])] = (items[part], values[part])
            self._scores = scores

    def ranker_top(self, user: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ranker's best ``n`` candidates of user index ``user``, best first: their rows
        in the user's candidates, item indices and scores (the one ordering both answers use)."""
        items, scores = self.ranker_scores(user)
        top = ranked_order(scores, n)  # the rows are in item order: ties go to the smaller index
        top = top[np.isfinite(scores[top])]  # rows beyond the ranker's candidate depth are not candidates
        return top, items[top], scores[top]

    def ranker_answer(self, user: str, k: int) -> tuple[list[dict[str, Any]], str] | None:
        """The answer of :meth:`recommend` for a known user of a ``run`` folder, as the JSON
        records the service sends (``item_id``, ``score``, ``rank``, ``title`` where known,
        ``why`` for an added item) and what answered, built from :meth:`ranker_top` and
        :func:`content_placement` without pandas; None where :meth:`recommend` takes
        another path (an unknown user, a ``train`` folder)."""
        if not (self.ltr and self.has_history(user)):
            return None
        index = self._user_index[user]
        added = self._added
        if not len(added):
            _, items, scores = self.ranker_top(index, k)
            return self.records(self.items.to_ids(items), scores), RANKER_SOURCE
        _, items, scores = self.ranker_top(index, max(k, PLACEMENT_DEPTH))
        ids = self.items.to_ids(items)
        positions, new_scores = self.added_tops(index, added)
        placed = content_placement(scores, self.reference_scores(index, items), new_scores, k)
        if placed is None:
            return self.records(ids[:k], scores[:k]), RANKER_SOURCE
        n = len(ids)
        picked = placed.pick(ids, np.asarray(added.ids, object)[positions[placed.kept]])
        why = placed.pick([""] * n, placed.added_whys(new_scores, n)).tolist()
        source = RANKER_SOURCE
        if any(why):
            source += " and added items by content"
        return self.records(picked, placed.scores, why), source

    def side_feature_records(
        self, user: str, user_features: Mapping[str, Any] | None, k: int
    ) -> list[dict[str, Any]] | None:
        """The answer of :meth:`recommend` for a user the run does not know, served from
        ``user_features`` by the profile model, as JSON records built without pandas (one
        row of features aside); None where :meth:`recommend` takes another path (a known
        user, no features, a run model with its own cold-start path)."""
        if not user_features or self.has_history(user) or user in self._user_index:
            return None
        if self.model is not None and has_cold_path(self.model):
            return None
        side = pd.DataFrame([{USER_ID: user, **user_features}])
        try:
            model = cast(ServesUnknownUsers, self.profile_model())
            scores = np.asarray(model.score_unknown([user], side), dtype=np.float32)
        except UnknownUserError as exc:
            raise InvalidArgumentError(f"user {user!r} is unknown to the run: {exc}") from exc
        idx, vals = top_k(lambda rows: scores[rows], np.arange(1), k)  # recommend's own top-k
        keep = idx[0] >= 0
        return self.records(self.items.to_ids(idx[0][keep]), vals[0][keep])

    def _from_ranker(self, user: int, k: int, depth: int, explain: bool) -> pd.DataFrame:
        top, items, scores = self.ranker_top(user, max(k, depth))
        out = pd.DataFrame(
            {RANK: np.arange(1, len(top) + 1), ITEM_ID: self.items.to_ids(items), SCORE: scores}
        )
        if explain:
            assert self.ranker is not None  # noqa: S101
            rows = self.candidate_rows(user)
            with self._lock:
                contrib = self.ranker.contributions(rows.iloc[top[:k]]).drop(columns="bias")
            why = [
                ", ".join(
                    f"{f} {c:+.2f}" for f, c in r.sort_values(key=np.abs, ascending=False).head(3).items()
                )
                for _, r in contrib.iterrows()
            ]
            out["why"] = why + [""] * (len(out) - len(why))
        return out

    # --- answers -------------------------------------------------------------------------
    def recommend(
        self,
        user: str,
        k: int = 10,
        user_features: Mapping[str, Any] | None = None,
        explain: bool = False,
        new_items: str | Path | None = None,
    ) -> pd.DataFrame:
        """The answer of :func:`recommend` for ``user`` (see the module's docstring)."""
        if explain and not self.ltr:
            raise InvalidArgumentError(
                "--explain needs a `fusionrank run` folder (a LightGBM ranker explains its scores)"
            )
        known = self.has_history(user)
        if new_items is not None:
            if not known:
                raise InvalidArgumentError(
                    f"user {user!r} has no history in this run; new items are ranked from history"
                )
            name, _ = DEFAULT_MODELS["new items"]
            out = self._new_items_file(user, Path(new_items), k)
            out.attrs["source"] = f"content of {Path(new_items).name} ({name})"
            return out
        side = pd.DataFrame([{USER_ID: user, **user_features}]) if user_features else None
        added = self._added
        depth = PLACEMENT_DEPTH if known and len(added) else k
        if known and self.ltr:
            out = self._from_ranker(self._user_index[user], k, depth, explain)
            source = RANKER_SOURCE
        elif self.model is not None and (known or has_cold_path(self.model)):
            with self._lock:
                out = self.model.recommend([user], max(k, depth), user_features=side)[list(SHOWN)]
            source = "history" if known else f"{self.model.name}'s side features"
        else:
            out, source = self._from_side_features(user, side, k), SIDE_FEATURES_SOURCE
        if known and len(added):
            out = self.place_added_items(user, out, added, k)
            if added.position.keys() & set(out[ITEM_ID]):
                source += " and added items by content"
        out = self._with_titles(out.head(k).reset_index(drop=True))
        out.attrs["source"] = source
        return out

    def _with_titles(self, out: pd.DataFrame) -> pd.DataFrame:
        if self.data.profile.title and self._titles:
            out["title"] = [self.title(str(i)) for i in out[ITEM_ID]]
        return out

    def _from_side_features(self, user: str, side: pd.DataFrame | None, k: int) -> pd.DataFrame:
        """A model serving users from side features (``profile``), fitted on the run's split once."""
        try:
            recs = self.profile_model().recommend([user], k, user_features=side)
        except UnknownUserError as exc:
            raise InvalidArgumentError(f"user {user!r} is unknown to the run: {exc}") from exc
        return recs[list(SHOWN)]

    def profile_model(self) -> Recommender:
        """The cold-start model of ``DEFAULT_MODELS['unknown users']``, fitted on the run's split."""

        name, settings = DEFAULT_MODELS["unknown users"]
        defaults = {"progress": False, "seed": self.split.config.seed}

        def made() -> Recommender:
            model = build_model(name, defaults=defaults, **settings)
            return self._saved_or_fitted("profile", model, lambda: model.fit(self.split))

        return cast(Recommender, self._once("profile", made))

    def content_model(self) -> Recommender:
        """The model of ``DEFAULT_MODELS['new items']`` (scores items from their content),
        fitted on the run's split; its content vectors are embedded first if missing."""

        name, settings = DEFAULT_MODELS["new items"]
        if not self.data.profile.genres and GENRES in settings.get("modalities", ()):
            settings = {**settings, "modalities": tuple(m for m in settings["modalities"] if m != GENRES)}

        def made() -> Recommender:
            model = build_model(name, **settings)
            if not isinstance(model, ScoresNewItems):
                raise InvalidArgumentError(f"{name} cannot score new items from their content")
            embed_content(self.data, content_needed([model]))  # the vectors it reads, saved or not
            return self._saved_or_fitted("content", model, lambda: model.fit(self.split))

        return cast(Recommender, self._once("content", made))

    def _saved_or_fitted(
        self, key: str, unfitted: Recommender, fit: Callable[[], Recommender]
    ) -> Recommender:
        """The model ``fit`` makes on the run's split, saved under the run's :data:`FITTED`
        folder with what made it (the name and every setting of ``unfitted``, defaults
        included, so that a new default fits it again) and loaded from there while that is
        unchanged. The folder is replaced whole (a temporary sibling renamed), so a process
        killed while saving leaves the last complete model or none; a run folder that cannot
        be written to is answered from the fitted model all the same."""
        folder = self.folder / FITTED / key
        made_by = [unfitted.name, dataclasses.asdict(unfitted.config)]
        made_by = json.loads(json.dumps(made_by))  # as read back (tuples become lists)
        try:
            if read_json(folder / "made_by.json") == made_by:
                return load_model(folder / "model")
        except (OSError, ValueError, DataError, MissingInputError):
            pass  # none yet, another version's or damaged: fit again
        model = fit()
        tmp = folder.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            model.save(tmp / "model")
            write_json(tmp / "made_by.json", made_by)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # fails when another process saved its copy first: keep that
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return model

    def content_vectors(self) -> np.ndarray:
        """(n_items, d) the catalogue's content as the content model reads it (fused, unit rows)."""
        from fusionrank.fusion.content import load_content

        def load() -> np.ndarray:
            model = self.content_model()
            modalities = model.content_modalities if isinstance(model, ReadsContent) else ("text",)
            vectors = load_content(self.split, tuple(modalities)).vectors
            vectors.flags.writeable = False  # fixed for the run: the content model keeps its columns
            return vectors

        return cast(np.ndarray, self._once("content vectors", load))

    def encoder(self) -> Encoder:
        """The dataset's text encoder (``embed_config(data, "text")``), loaded once."""
        from fusionrank.encoders.engine import build_encoder, embed_config

        return cast("Encoder", self._once("encoder", lambda: build_encoder(embed_config(self.data, "text"))))

    def embed_items(self, rows: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> np.ndarray:
        """(n, d) content vectors of new items (catalogue ``rows`` and their composed
        ``texts``) as the content model reads the catalogue's: the text through the run's
        encoder, the genres from the profile's genres column (genres the catalogue does not
        know add nothing), fused the same way (unit rows)."""
        from fusionrank.data.side import genre_rows
        from fusionrank.fusion.content import fuse_modalities

        model = self.content_model()
        blocks = []
        for modality in model.content_modalities if isinstance(model, ReadsContent) else ("text",):
            if modality == "text":
                encoder = self.encoder()
                with self._lock:  # one encoder, one caller at a time
                    blocks.append(np.asarray(encoder.encode(list(texts)), np.float32))
            elif modality == GENRES:
                names = cast(list[str], self._once("genre names", lambda: self.split.genres()[1]))
                blocks.append(genre_rows(rows, str(self.data.profile.genres), names))
            else:
                raise InvalidArgumentError(
                    f"the new-items model reads {modality} content; new items are scored from text and genres"
                )
        return fuse_modalities(blocks)

    def genre_warnings(self, rows: Sequence[Mapping[str, Any]], where: Callable[[int], str]) -> list[str]:
        """What :meth:`embed_items` cannot read from new items' genres, one line each: the
        items without genres (scored as items with none, so they rank low beside catalogue
        items that have some) and genres the catalogue does not know (left out). ``where(n)``
        names row ``n``'s genres field. Empty where the new-items model reads no genres."""
        model = self.content_model()
        if not (isinstance(model, ReadsContent) and GENRES in model.content_modalities):
            return []
        from fusionrank.data.side import genre_list

        column = str(self.data.profile.genres)
        known = set(cast(list[str], self._once("genre names", lambda: self.split.genres()[1])))
        missing: list[int] = []
        strange: list[str] = []
        for n, row in enumerate(rows):
            given = genre_list(row.get(column))
            if not given:
                missing.append(n)
            elif unknown := [g for g in given if g not in known]:
                strange.append(
                    f"{where(n)}: {' '.join(unknown)!r} not among the catalogue's genres, left out"
                )
        out = strange[:3] + (
            [f"and {len(strange) - 3} more items with genres the catalogue does not know"]
            if len(strange) > 3
            else []
        )
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            which = "this item is" if len(missing) == 1 else f"these {len(missing)} items are"
            out.insert(
                0,
                f"{', '.join(where(n) for n in missing[:3])}{more}: no genres given; the new-items "
                f"model reads genres beside the text, so {which} scored as having none",
            )
        return out

    def item_weights(self) -> tuple[str, Any] | None:
        """(model name, item-item weights) of the run's first model that has them (a
        ``run``'s models in its config's order; a ``train`` folder's model), or None."""

        def find() -> tuple[str, Any] | None:
            if self.model is not None:
                weights = item_item_weights(self.model)
                return None if weights is None else (self.model.name, weights)
            names = list(read_json(self.folder / "config.json").get("models", {}))
            for name in names:
                folder = self.folder / "models" / name / "model"
                if not (folder / "config.json").exists():
                    continue
                cls = saved_class(saved_config(folder)["class"])
                if not callable(getattr(cls, "item_similarity", None)):
                    continue  # ask the class before loading the weights
                weights = item_item_weights(load_model(folder))
                if weights is not None:
                    return name, weights
            return None

        return cast("tuple[str, Any] | None", self._once("item weights", find))

    def _once(self, key: str, build: Any) -> Any:
        if key not in self._built:
            with self._lock:
                if key not in self._built:
                    self._built[key] = build()
        return self._built[key]

    # --- added items ---------------------------------------------------------------------
    def added_item_scores(self, users: np.ndarray, added: AddedItems) -> np.ndarray:
        """(len(users), n_added) content-model scores of the added items."""
        model = cast(ScoresNewItems, self.content_model())
        width = self.content_vectors().shape[1]
        if added.vectors.shape[1] != width:
            raise InvalidArgumentError(
                f"{LOG_NAME}: the added items have {added.vectors.shape[1]}-dimensional content vectors, "
                f"the run's new-items model reads {width}: it changed since they were added; "
                "move the log aside and add them again"
            )
        return model.score_content(np.asarray(users, np.int64), added.vectors)

    def added_tops(self, user: int, added: AddedItems) -> tuple[np.ndarray, np.ndarray]:
        """Indices into ``added`` of user index ``user``'s best :data:`PLACEMENT_DEPTH` added
        items by content score, best first, and those scores."""
        scores = self.added_item_scores(np.asarray([user]), added)[0]
        top = ranked_order(scores, PLACEMENT_DEPTH)
        return top, scores[top]

    def reference_scores(self, user: int, items: np.ndarray) -> np.ndarray:
        """Content-model scores of catalogue ``items`` for user index ``user``, computed
        as for added items (from their content vectors, not their history)."""
        model = cast(ScoresNewItems, self.content_model())
        row = model.score_content(np.asarray([user], np.int64), self.content_vectors())[0]
        return row[np.asarray(items, np.int64)]

    def place_added_items(self, user: str, ranked: pd.DataFrame, added: AddedItems, k: int) -> pd.DataFrame:
        """``ranked`` (``user``'s top items, best first) with the added items that belong in
        its top ``k`` (:func:`place_by_content`): the content scores of ``ranked``'s items
        and of the user's best added items, both from the content model on content vectors."""
        index = self._user_index[user]
        reference = self.reference_scores(index, self.items.to_index(ranked[ITEM_ID].astype(str)))
        positions, new_scores = self.added_tops(index, added)
        return place_by_content(ranked, reference, added, positions, new_scores, k)

    def _new_items_file(self, user: str, path: Path, k: int) -> pd.DataFrame:
        """Rank the catalogue in ``path`` for ``user`` from its content (the new-items model);
        what its genres could not say is in ``attrs["warnings"]`` (:meth:`genre_warnings`)."""
        from fusionrank.data.loaders import load_catalogue
        from fusionrank.data.text import compose_text, template_fields

        template = self.data.profile.text
        if not template:
            raise InvalidArgumentError(
                f"dataset {self.data.name!r} has no text template: new items are ranked from their text"
            )
        catalogue = load_catalogue(path)
        for col in template_fields(template):
            if col not in catalogue.columns:
                raise DataError(
                    f"the dataset's text template needs this column; the file has {list(catalogue.columns)}",
                    file=path,
                    column=col,
                )
        records = cast(list[dict[str, Any]], catalogue.to_dict("records"))  # the catalogue's columns are str
        texts = [compose_text(row, template=template) for row in records]
        empty = [r for r, t in enumerate(texts) if not t]
        if empty:
            raise DataError(
                "item has no text", file=path, row=empty[0] + 1, column=template_fields(template)[0]
            )
        model = cast(ScoresNewItems, self.content_model())
        scores = model.score_content(self.users.to_index([user]), self.embed_items(records, texts))[0]
        warnings = self.genre_warnings(
            records, lambda n: f"{path.name} row {n + 1}, column {self.data.profile.genres}"
        )
        top = ranked_order(scores, k)  # ties go to the earlier catalogue row
        out = pd.DataFrame(
            {
                RANK: np.arange(1, len(top) + 1),
                ITEM_ID: catalogue[ITEM_ID].to_numpy()[top],
                SCORE: scores[top],
            }
        )
        column = self.data.profile.title
        if column and column in catalogue.columns:
            from fusionrank.data.text import field_text

            titles = {str(i): field_text(t) for i, t in zip(catalogue[ITEM_ID], catalogue[column])}
            out["title"] = [titles.get(str(i), "") for i in out[ITEM_ID]]
        out.attrs["warnings"] = warnings
        return out

    # --- neighbours and audiences --------------------------------------------------------
    def similar(self, item: str, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(content neighbours, collaborative neighbours) of ``item``, each ``rank, item_id,
        score, title``: cosine over the content model's vectors (the catalogue's and the
        added items'), and the item-item weights of the run's first model that has them
        (none for an added item: nobody has interacted with it)."""
        (c_ids, c_scores), (w_ids, w_scores) = self.similar_top(item, k)
        frames = [
            self._with_titles(pd.DataFrame({RANK: np.arange(1, len(ids) + 1), ITEM_ID: ids, SCORE: scores}))
            for ids, scores in ((c_ids, c_scores), (w_ids, w_scores))
        ]
        return frames[0], frames[1]

    def similar_top(
        self, item: str, k: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """:meth:`similar` as arrays, best first: (item ids, scores) of the content
        neighbours and of the collaborative ones (empty without item-item weights)."""
        added = self._added
        if item in self.items:
            query = self.content_vectors()[self.items.to_index([item])[0]]
        elif item in added.position:
            query = added.vectors[added.position[item]]
        else:
            raise UnknownKeyError(f"item: {item!r} is neither in the run's catalogue nor added to it")
        vectors = self.content_vectors()
        scores = vectors @ query
        ids = self.items.ids
        if len(added):
            scores = np.concatenate([scores, added.vectors @ query])
            ids = np.concatenate([ids, np.asarray(added.ids, dtype=object)])
        scores[ids == item] = -np.inf
        top = ranked_order(scores, k)
        top = top[np.isfinite(scores[top])]
        content = (ids[top], scores[top])
        collab: tuple[np.ndarray, np.ndarray] = (np.empty(0, dtype=object), np.empty(0, np.float32))
        found = self.item_weights() if item in self.items else None
        if found is not None:
            _, weights = found
            i = self.items.to_index([item])[0]
            row = weights[i]
            row = np.asarray(row.todense()).ravel() if hasattr(row, "todense") else np.asarray(row).ravel()
            row = row.astype(np.float32).copy()
            row[i] = -np.inf
            row[row == 0] = -np.inf  # no weight: not a neighbour
            top = ranked_order(row, k)
            top = top[np.isfinite(row[top])]
            collab = (self.items.to_ids(top), row[top])
        return content, collab

    def records(
        self, ids: np.ndarray, scores: np.ndarray, why: str | Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The JSON records a service sends for ranked items (best first): ``item_id``,
        ``score``, ``rank``, ``title`` where known and ``why`` where given (one string for
        all, or one per item; an empty one is left out); no pandas on the way."""
        titled = bool(self.data.profile.title and self._titles)
        whys = [why] * len(ids) if why is None or isinstance(why, str) else list(why)
        out = []
        for rank, (item, score, reason) in enumerate(
            zip(np.asarray(ids).tolist(), np.asarray(scores).tolist(), whys), 1
        ):
            record: dict[str, Any] = {ITEM_ID: str(item), SCORE: float(score), RANK: rank}
            if titled and (title := self.title(str(item))):
                record["title"] = title
            if reason:
                record["why"] = reason
            out.append(record)
        return out

    def audience(self, item: str, k: int) -> pd.DataFrame:
        """``rank, user_id, score``: the users the content model scores highest for ``item``
        (an added item, or a catalogue item for users who have not seen it), among users
        with training history."""
        added = self._added
        if item in added.position:
            vector = added.vectors[[added.position[item]]]
            seen = np.zeros(self.split.n_users, dtype=bool)
        elif item in self.items:
            i = self.items.to_index([item])[0]
            vector = self.content_vectors()[[i]]
            seen = np.asarray(self.split.matrix("train", "valid")[:, i].todense()).ravel() > 0
        else:
            raise UnknownKeyError(f"item: {item!r} is neither in the run's catalogue nor added to it")
        users = np.flatnonzero(self._history & ~seen)
        model = cast(ScoresNewItems, self.content_model())
        scores = model.score_content(users, vector)[:, 0]
        top = ranked_order(scores, k)
        return pd.DataFrame(
            {RANK: np.arange(1, len(top) + 1), USER_ID: self.users.to_ids(users[top]), SCORE: scores[top]}
        )


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where added items go among a user's ranked items (:func:`content_placement`)."""

    order: np.ndarray
    """The top k, best first, as indices into the ranked items followed by the kept added
    items (index ``n + j``: the ``j``-th kept added item)."""
    scores: np.ndarray
    """The merged list's scores, in ``order`` (an added item's: midway between its neighbours)."""
    kept: np.ndarray
    """Indices into the added items given of those that reach the top k."""
    above: np.ndarray
    """For each kept added item, how many ranked items have a content score at least its own."""

    def pick(self, ranked: Sequence[Any] | np.ndarray, added: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The merged list's values in :attr:`order` (an object array), from one value per
        ranked item and one per kept added item."""
        return np.concatenate([np.asarray(ranked, object), np.asarray(added, object)])[self.order]

    def added_whys(self, new_scores: np.ndarray, n: int) -> list[str]:
        """What the answer says of each kept added item, among ``n`` ranked items
        (``new_scores``: the content scores of all the added items given)."""
        return [added_why(v, a, n) for v, a in zip(new_scores[self.kept], self.above)]


def content_placement(
    scores: np.ndarray, reference: np.ndarray, new_scores: np.ndarray, k: int
) -> Placement | None:
    """Merge added items into a ranked list (``scores``, best first; ``reference``: the
    content scores of its items). An added item with content score ``s`` goes after the
    ``m`` ranked items whose content score is at least ``s`` (ahead of the rest): among the
    user's top items it ranks where its content ranks. Added items at one place keep their
    order (best content first). None where no added item reaches the top ``k``.

    >>> p = content_placement(np.array([3.0, 2.0, 1.0]), np.array([0.9, 0.1, 0.5]), np.array([0.6]), 3)
    >>> p.order.tolist(), p.scores.tolist(), p.kept.tolist(), p.above.tolist()
    ([0, 3, 1], [3.0, 2.5, 2.0], [0], [1])
    """
    reference = np.asarray(reference, np.float64)
    after = (reference[None, :] >= np.asarray(new_scores, np.float64)[:, None]).sum(axis=1)
    keep = np.flatnonzero(after < k)
    if not len(keep):
        return None
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    m = after[keep]
    below = np.where(m < n, scores[np.minimum(m, n - 1)], scores[-1] if n else 0.0)
    gap = abs(scores[0] - scores[1]) if n > 1 else 1.0
    above = np.where(m > 0, scores[np.maximum(m - 1, 0)], below + gap)
    # ranked items sort by (position, 1, 0), added ones by (items above them, 0, order)
    at = np.concatenate([np.arange(n), m])
    first = np.concatenate([np.ones(n), np.zeros(len(keep))])
    order = np.lexsort((np.arange(n + len(keep)), first, at))[:k]
    merged = np.concatenate([scores, (above + below) / 2])[order]
    return Placement(order=order, scores=merged, kept=keep, above=m)


def added_why(score: float, above: int, n: int) -> str:
    """What an answer says of an added item it placed by content."""
    return f"added item: content score {float(score):.3f}, above {n - int(above)} of the {n}"


def place_by_content(
    ranked: pd.DataFrame,
    reference: np.ndarray,
    added: AddedItems,
    positions: np.ndarray,
    new_scores: np.ndarray,
    k: int,
) -> pd.DataFrame:
    """:func:`content_placement` of the added items ``positions`` (content scores
    ``new_scores``) into ``ranked`` (best first; ``reference``: the content scores of its
    items), as a table with a ``why`` for each added item. Returns the top ``k``.

    >>> ranked = pd.DataFrame({"rank": [1, 2, 3], "item_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]})
    >>> added = AddedItems().extended([{"item_id": "n"}], np.zeros((1, 2)))
    >>> out = place_by_content(ranked, np.array([0.9, 0.1, 0.5]), added, np.array([0]), np.array([0.6]), 3)
    >>> out["item_id"].tolist(), out["score"].tolist(), out["why"][1]
    (['a', 'n', 'b'], [3.0, 2.5, 2.0], 'added item: content score 0.600, above 2 of the 3')
    """
    placed = content_placement(ranked[SCORE].to_numpy(np.float64), reference, new_scores, k)
    if placed is None:
        return ranked
    n = len(ranked)
    why_ranked = ranked["why"].to_numpy(object) if "why" in ranked.columns else np.full(n, "", object)
    out = {
        RANK: np.arange(1, len(placed.order) + 1),
        ITEM_ID: placed.pick(
            ranked[ITEM_ID].to_numpy(object), np.asarray(added.ids, object)[positions[placed.kept]]
        ),
        SCORE: placed.scores,
        "why": placed.pick(why_ranked, placed.added_whys(new_scores, n)),
    }
    columns = [*ranked.columns, *(["why"] if "why" not in ranked.columns else [])]
    return pd.DataFrame({c: out[c] for c in columns})


def _row_title(data: Dataset, added: AddedItems, item: str) -> str:
    from fusionrank.data.text import field_text

    position = added.position.get(item)
    if position is None:
        return ""
    row = added.rows[position]
    column = data.profile.title
    return field_text(row.get(column) if column and column in row else row.get("title"))


def has_cold_path(model: Recommender) -> bool:
    """Whether the model serves users without history itself."""
    return isinstance(model, ServesUnknownUsers)
