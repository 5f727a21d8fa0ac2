"""The run a service holds: opened once, its ranker scores computed once, and the one
thing that changes while it serves, the added items, behind a lock.

Readers take the current snapshot of added items (immutable) and the tables computed for
it, without a lock; ``add_items`` validates and embeds the new rows first, then, holding
this process's write lock and the log's ``flock`` (shared with the other processes serving
the run), appends one log line, computes the tables of the next snapshot and swaps it in.
A request that fails anywhere before the log line adds nothing; after it, everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrank.columns import ITEM_ID
from fusionrank.data.text import compose_text, template_fields
from fusionrank.io import read_json
from fusionrank.pipelines.added_items import AddedItems, replay
from fusionrank.pipelines.recommend import PLACEMENT_DEPTH, OpenRun
from fusionrank.scoring import ranked_order, ranked_topk
from fusionrank.serving.errors import BadRequestError

USER_CHUNK = 2048
"""Users scored together when the tables for added items are computed."""


class ServedRun(OpenRun):
    """An :class:`OpenRun` that keeps, for the current added items, each user's best added
    items and the content scores of each user's top items (users × :data:`PLACEMENT_DEPTH`,
    never users × items), so an answer costs a lookup. The numbers are those
    :class:`OpenRun` computes per call (the same calls on the same vectors)."""

    def __init__(self, *args: Any, image_root: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        configured = image_root if image_root is not None else self.data.profile.image_root
        self.image_root = Path(configured).resolve() if configured else None
        self._write = threading.Lock()
        self._tops: tuple[AddedItems, np.ndarray, np.ndarray] | None = None
        self._reference: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def load(
        cls, run: str | Path, root: str | Path | None = None, image_root: str | Path | None = None
    ) -> ServedRun:
        """Open ``run`` and build everything an answer needs, now rather than on the first
        request: the ranker's scores of every candidate and what its explanations read, the
        cold-start and content models, the encoder, the item-item weights, and the tables of
        the items already added."""
        opened = cls.open(run, root)
        assert isinstance(opened, ServedRun)  # noqa: S101 - cls.open builds cls
        if image_root is not None:
            opened.image_root = Path(image_root).resolve()
        if opened.ltr:
            opened.score_all_candidates()
            assert opened.ranker is not None  # noqa: S101 - ltr says so
            opened.ranker.prepare_contributions()
        if opened.data.users is not None and opened.data.profile.user_features:
            opened.profile_model()
        if opened.data.profile.text:
            opened.content_vectors()
            opened.encoder()
        opened.item_weights()
        if len(opened.added):
            opened._prepare(opened.added)
        return opened

    # --- what a request reads ------------------------------------------------------------
    def sync(self) -> bool:
        """Take in items another process added (the log grew), with their tables."""
        if self.log.size() == self._log_offset:
            return False
        with self._write:
            batches, offset = self.log.read(self._log_offset)
            if not batches:
                return False
            added = replay(self.added, batches)
            self._prepare(added)
            self.set_added(added, offset)
            return True

    def added_tops(self, user: int, added: AddedItems) -> tuple[np.ndarray, np.ndarray]:
        tops = self._tops
        if tops is not None and tops[0] is added:
            row = tops[1][user]
            keep = row >= 0
            return row[keep], tops[2][user][keep]
        return super().added_tops(user, added)

    def reference_scores(self, user: int, items: np.ndarray) -> np.ndarray:
        found = self._reference.get(int(user)) if self._reference is not None else None
        if found is not None:
            known, scores = found
            at = np.searchsorted(known, items)
            if np.all(at < len(known)) and np.array_equal(known[np.minimum(at, len(known) - 1)], items):
                return scores[at]
        return super().reference_scores(user, items)

    # --- adding items --------------------------------------------------------------------
    def add_items(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add ``rows`` (``item_id`` and catalogue fields) to the run: all of them or, on a
        :class:`BadRequestError`, none."""
        start = time.perf_counter()
        rows, texts = self.check_new_items(rows)
        vectors = self.embed_items(rows, texts)
        warnings = self.genre_warnings(rows, lambda n: f"items[{n}].genres")
        with self._write, self.log.locked():
            batches, offset = self.log.read(self._log_offset)  # another process's items first
            current = replay(self.added, batches)
            self._check_ids_free(rows, current)
            offset = self.log.append(rows, vectors)
            added = current.extended(rows, vectors)
            self._prepare(added)
            self.set_added(added, offset)
        return {
            "added": len(rows),
            "item_ids": [str(r[ITEM_ID]) for r in rows],
            "total_added": len(added),
            "seconds": time.perf_counter() - start,
            "warnings": warnings,
        }

    def check_new_items(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """The rows as they will be logged (``title`` under the profile's title column) and
        their texts; a :class:`BadRequestError` naming the first field at fault."""
        template = self.data.profile.text
        if not template:
            raise BadRequestError(
                "items", f"dataset {self.data.name!r} has no text template: added items are scored from text"
            )
        title_column, genres_column = self.data.profile.title, self.data.profile.genres
        image_column = self.data.profile.image or "image"
        out: list[dict[str, Any]] = []
        texts = []
        seen: set[str] = set()
        for n, given in enumerate(rows):
            row = {key: value for key, value in given.items() if value is not None}
            item = str(row.get(ITEM_ID, "")).strip()
            if not item:
                raise BadRequestError(f"items[{n}].item_id", "empty; every item needs an id")
            if item in seen:
                raise BadRequestError(f"items[{n}].item_id", f"{item!r} is given twice in this request")
            seen.add(item)
            row[ITEM_ID] = item
            if title_column and title_column != "title" and "title" in row:
                row.setdefault(title_column, row.pop("title"))
            if genres_column and genres_column != "genres" and "genres" in row:
                row.setdefault(genres_column, row.pop("genres"))
            if image_column != "image" and "image" in row:
                row.setdefault(image_column, row.pop("image"))
            if image_column in row:
                self._check_image(f"items[{n}].{image_column if image_column in given else 'image'}", row)
            text = compose_text(row, template=template)
            if not text:
                fields = ", ".join(template_fields(template))
                raise BadRequestError(f"items[{n}]", f"no text: give some of the fields {fields}")
            out.append(row)
            texts.append(text)
        self._check_ids_free(out, self.added)
        return out, texts

    def _check_ids_free(self, rows: Sequence[Mapping[str, Any]], added: AddedItems) -> None:
        for n, row in enumerate(rows):
            item = str(row[ITEM_ID])
            if item in self.items:
                raise BadRequestError(
                    f"items[{n}].item_id", f"{item!r} is in the run's catalogue already", 409
                )
            if item in added.position:
                raise BadRequestError(f"items[{n}].item_id", f"{item!r} was added already", 409)

    def _check_image(self, field: str, row: dict[str, Any]) -> None:
        column = self.data.profile.image or "image"
        if self.image_root is None:
            raise BadRequestError(
                field, "no image root is configured (fusionrank serve --image-root, or the dataset profile's)"
            )
        given = Path(str(row[column]))
        path = (given if given.is_absolute() else self.image_root / given).resolve()
        if not path.is_relative_to(self.image_root):
            raise BadRequestError(field, f"{str(given)!r} is outside the image root {self.image_root}")
        if not path.is_file():
            raise BadRequestError(field, f"{str(given)!r} is not a file under the image root")
        row[column] = path.relative_to(self.image_root).as_posix()

    def _prepare(self, added: AddedItems) -> None:
        """The tables of ``added``: each user's best :data:`PLACEMENT_DEPTH` added items, and
        (once) the content scores of each user's top items."""
        if not len(added):
            return
        if self._reference is None:
            self._reference = self._reference_table()
        users = np.flatnonzero(self._history)
        depth = min(PLACEMENT_DEPTH, len(added))
        best = np.full((self.split.n_users, depth), -1, np.int64)
        values = np.zeros((self.split.n_users, depth), np.float32)
        for start in range(0, len(users), USER_CHUNK):
            chunk = users[start : start + USER_CHUNK]
            scores = torch.from_numpy(np.ascontiguousarray(self.added_item_scores(chunk, added), np.float32))
            top_values, top_index = ranked_topk(scores, depth)
            best[chunk], values[chunk] = top_index.numpy(), top_values.numpy()
        self._tops = (added, best, values)

    def _reference_table(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per user with history: their top :data:`PLACEMENT_DEPTH` items (sorted indices)
        and the content model's scores of them."""
        users = np.flatnonzero(self._history)
        table: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for start in range(0, len(users), USER_CHUNK):
            chunk = users[start : start + USER_CHUNK]
            scores = self.added_item_scores_of_catalogue(chunk)
            for row, user in enumerate(chunk):
                top = np.sort(self._top_items(int(user)))
                if len(top):
                    table[int(user)] = (top, scores[row, top])
        return table

    def added_item_scores_of_catalogue(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) content-model scores of the catalogue from its content
        vectors (as :meth:`OpenRun.reference_scores`); a chunk of users at a time."""
        from typing import cast

        from fusionrank.capabilities import ScoresNewItems

        model = cast(ScoresNewItems, self.content_model())
        return model.score_content(np.asarray(users, np.int64), self.content_vectors())

    def _top_items(self, user: int) -> np.ndarray:
        """Item indices of the user's top :data:`PLACEMENT_DEPTH` (the ranker's or the model's)."""
        if self.ltr:
            try:
                items, scores = self.ranker_scores(user)
            except ValueError:
                return np.zeros(0, np.int64)
            return np.asarray(items[ranked_order(scores, PLACEMENT_DEPTH)], np.int64)
        assert self.model is not None  # noqa: S101
        recs = self.model.recommend([self.users.ids[user]], PLACEMENT_DEPTH)
        return self.items.to_index(recs[ITEM_ID].astype(str))

    # --- what GET /run shows -------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The run's name, kind, metrics and settings as its files hold them."""
        if self.ltr:
            settings = read_json(self.folder / "config.json")
        else:
            settings = {
                **read_json(self.folder / "source.json"),
                "model": read_json(self.folder / "model" / "config.json"),
            }
        metrics_path = self.folder / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        return {
            "name": str(settings.get("name", self.folder.name)),
            "kind": "run" if self.ltr else "train",
            "folder": str(self.folder),
            "metrics": metrics,
            "settings": settings,
        }
