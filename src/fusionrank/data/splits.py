"""Deterministic train/valid/test splits, saved to Parquet so every model sees the same data.

Split kinds (``SplitConfig.kind``):

- ``ratio``: per user, a seeded random order, then 8:1:1 (RecBole's ``RS`` + ``RO``,
  with RecBole's rounding: valid/test get ``int(ratio * n)`` rows, and at least one row
  when ``0 < ratio * n < 1`` while train keeps two or more).
- ``temporal-ratio``: per user, ordered by time, then the same ratios.
- ``leave-last``: per user ordered by time; test = last item, valid = second last
  (users with two interactions give train + test, with one only train).
- ``global-temporal``: all interactions ordered by time; the first 80% train, next 10%
  valid, last 10% test.
- ``cold-items``: a seeded share of items is held out with all its interactions (test);
  the remaining interactions are split per user at random into train and valid (9:1).
- ``cold-users``: the same with a seeded share of users (default 10%; items default 20%).
- ``cross-domain``: items get a domain from the dataset profile (a rule over genres) or
  the interactions' domain column; interactions with items in no domain are left out. A
  seeded share of the users active in both the source and the target domain (default
  20%) lose their target-domain interactions (test); ``valid_users_share`` more (10%) are
  held out the same way for validation. Models are served from the source domain.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import (
    ITEM_ID,
    ITEM_IDX,
    PART,
    PARTS,
    TEST,
    TIMESTAMP,
    TRAIN,
    USER_ID,
    USER_IDX,
    VALID,
)
from fusionrank.data.dataset import Dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.profile import GENRES
from fusionrank.data.vectors import align
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import (
    StageCacheWarning,
    atomic_path,
    begin_stage,
    mark_done,
    read_json,
    verify_stage,
    write_json,
)

SplitKind = Literal[
    "ratio", "temporal-ratio", "leave-last", "global-temporal", "cold-items", "cold-users", "cross-domain"
]
SPLIT_KINDS: tuple[str, ...] = SplitKind.__args__  # type: ignore[attr-defined]
_PART_CODE = {0: TRAIN, 1: VALID, 2: TEST}


@dataclass(frozen=True)
class SplitConfig:
    """How to split interactions into train, valid and test."""

    kind: SplitKind = "ratio"
    """Protocol; see the module docstring."""
    seed: int = 2020
    """Seed of every random choice in the split."""
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """train:valid:test shares for ``ratio``, ``temporal-ratio`` and ``global-temporal``."""
    cold_share: float | None = None
    """Share held out for test: items for ``cold-items`` (default 0.2), users for ``cold-users``
    (0.1), users active in both domains for ``cross-domain`` (0.2)."""
    cold_valid_ratio: float = 0.1
    """Share of each warm user's interactions that goes to valid in the cold protocols."""
    warm_test_ratio: float = 0.0
    """``cold-items``: share of each warm user's interactions that also goes to test, so that
    ranking every item (protocol b) is scored against a truth that holds warm and cold items
    and the cold items' share of the top-K can be compared with their share of the truth.
    0 (the default): the test holds only the cold items' interactions."""
    valid_users_share: float = 0.1
    """``cross-domain``: share of the users active in both domains held out for validation."""
    source: str | None = None
    """``cross-domain``: the domain users are served from (default: the dataset profile's)."""
    target: str | None = None
    """``cross-domain``: the domain users are cold in (default: the dataset profile's)."""

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise InvalidArgumentError(f"unknown split kind {self.kind!r}; expected one of {SPLIT_KINDS}")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or sum(self.ratios) <= 0:
            raise InvalidArgumentError(f"ratios must be three non-negative shares, got {self.ratios}")
        cold_share = self.cold_share
        if cold_share is None:
            cold_share = 0.1 if self.kind == "cold-users" else 0.2
            object.__setattr__(self, "cold_share", cold_share)
        if not 0 < cold_share < 1:
            raise InvalidArgumentError(f"cold_share must be in (0, 1), got {cold_share}")
        if not 0 <= self.warm_test_ratio < 1 - self.cold_valid_ratio:
            raise InvalidArgumentError(
                f"warm_test_ratio must be in [0, 1 - cold_valid_ratio), got {self.warm_test_ratio}"
            )
        if self.warm_test_ratio and self.kind != "cold-items":
            raise InvalidArgumentError(f"warm_test_ratio applies to cold-items splits only, not {self.kind}")
        if not 0 <= self.valid_users_share < 1 - cold_share:
            raise InvalidArgumentError(
                f"valid_users_share must be in [0, 1 - cold_share), got {self.valid_users_share}"
            )

    @property
    def name(self) -> str:
        """Folder name that identifies this split."""
        extra = ""
        if self.kind in ("ratio", "temporal-ratio", "global-temporal") and self.ratios != (0.8, 0.1, 0.1):
            extra = "-" + "-".join(f"{r:g}" for r in self.ratios)
        if self.kind in ("cold-items", "cold-users"):
            extra = f"-{self.cold_share:g}" + (
                f"-warmtest{self.warm_test_ratio:g}" if self.warm_test_ratio else ""
            )
        if self.kind == "cross-domain":
            extra = f"-{self.source or ''}{self.target or ''}-{self.cold_share:g}-{self.valid_users_share:g}"
        return f"{self.kind}{extra}-seed{self.seed}"

    @classmethod
    def from_json(cls, raw: dict) -> SplitConfig:
        """Read back :func:`dataclasses.asdict` output (lists become tuples; newer fields default)."""
        from fusionrank.settings import build_settings

        return build_settings(cls, raw, owner="split config")


@dataclass
class Split:
    """Train, valid and test interactions with their id maps.

    The frames carry the external ``user_id`` / ``item_id`` (str), the internal
    ``user_idx`` / ``item_idx`` and the original columns. ``dataset`` is the dataset the
    split came from: models read their content, side features and domains through it.
    """

    config: SplitConfig
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    users: IdMap
    items: IdMap
    meta: dict = field(default_factory=dict)
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    _matrices: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"Split({self.config.kind!r}, seed={self.config.seed}, {self.n_users:,} users, "
            f"{self.n_items:,} items, train/valid/test = "
            f"{len(self.train):,}/{len(self.valid):,}/{len(self.test):,})"
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def name(self) -> str:
        """The dataset name (``meta['dataset']``)."""
        return str(self.meta.get("dataset", self.dataset.name if self.dataset is not None else ""))

    def part(self, name: str) -> pd.DataFrame:
        if name not in PARTS:
            raise InvalidArgumentError(f"unknown part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def matrix(self, *parts: str) -> sp.csr_matrix:
        """Binary user x item CSR matrix of the union of ``parts`` (default: train); cached."""
        parts = parts or (TRAIN,)
        if parts not in self._matrices:
            frames = [self.part(p) for p in parts]
            rows = np.concatenate([f[USER_IDX].to_numpy() for f in frames])
            cols = np.concatenate([f[ITEM_IDX].to_numpy() for f in frames])
            m = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)), shape=(self.n_users, self.n_items)
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._matrices[parts] = m
        return self._matrices[parts]

    def content(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """The items' ``modality`` vectors (text, image, clip, kg) in this split's item order,
        zero rows for items without one, and which items have one. Reads the vectors the
        embed stage made (``fr.embed_content``, ``fusionrank run``) or the folder the profile
        names; a one-line error says what to run when they are missing. ``genres`` is read
        from the catalogue: the 0/1 rows of :meth:`genres`."""
        if modality == GENRES:
            rows = self.genres()[0].toarray().astype(np.float32)
            return rows, np.asarray(rows.any(axis=1), dtype=bool)
        folder = self.require_dataset(f"{modality} content").content_folder(modality)
        return align(folder, self.items)

    def with_parts(self, **parts: pd.DataFrame) -> Split:
        """The same split (same config, id maps and dataset) with some parts replaced."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise InvalidArgumentError(f"unknown part(s) {sorted(unknown)}; expected some of {PARTS}")
        return Split(
            self.config,
            parts.get(TRAIN, self.train),
            parts.get(VALID, self.valid),
            parts.get(TEST, self.test),
            self.users,
            self.items,
            meta=self.meta,
            dataset=self.dataset,
        )

    def restrict_items(self, keep: np.ndarray) -> Split:
        """The same split (same id maps) with only the interactions of items where ``keep``
        (a boolean mask over item indices) is true: e.g. one domain's interactions."""
        frames = {
            p: self.part(p)[keep[self.part(p)[ITEM_IDX].to_numpy()]].reset_index(drop=True) for p in PARTS
        }
        return Split(
            self.config, users=self.users, items=self.items, meta=self.meta, dataset=self.dataset, **frames
        )

    # --- what the dataset says about the split's items and users -------------------------
    def require_dataset(self, what: str) -> Dataset:
        if self.dataset is None:
            raise InvalidArgumentError(
                f"{what} needs the dataset of this split; make it with fr.split(dataset, ...)"
            )
        return self.dataset

    def item_domains(self) -> np.ndarray:
        """Domain label per item index ('' for none)."""
        from fusionrank.data.dataset import domain_labels

        return domain_labels(self.require_dataset("item domains"), self.items.ids)

    def domain_pair(self) -> tuple[str, str]:
        """(source, target) domains: the split's, else the dataset profile's, else the first two."""
        if "source" in self.meta and "target" in self.meta:
            return self.meta["source"], self.meta["target"]
        data = self.require_dataset("cross-domain models")
        names = sorted(set(self.item_domains()) - {""})
        source = self.config.source or data.profile.source_domain or (names[0] if names else None)
        target = (
            self.config.target or data.profile.target_domain or next((n for n in names if n != source), None)
        )
        if source is None or target is None or source == target:
            raise InvalidArgumentError(
                f"{self.name}: need two domains for a cross-domain model, found {names}"
            )
        return source, target

    def genres(self) -> tuple[sp.csr_matrix, list[str]]:
        """(n_items, n_genres) 0/1 matrix from the profile's genres column, and the names."""
        from fusionrank.data.side import genre_matrix

        data = self.require_dataset("genres")
        if data.items is None or not data.profile.genres:
            raise InvalidArgumentError(f"dataset {data.name!r} has no genres column in its profile")
        return genre_matrix(data.items, self.items, data.profile.genres)

    def user_features(self) -> tuple[np.ndarray, list[str]]:
        """One-hot side features (n_users, n_features) from the profile's user columns."""
        from fusionrank.data.side import user_features

        data = self.require_dataset("user side features")
        if data.users is None or not data.profile.user_features:
            raise InvalidArgumentError(
                f"dataset {data.name!r} has no user side features (a user table and "
                "profile.user_features): cold users cannot be served from features"
            )
        return user_features(data.users, self.users, data.profile.user_features, data.profile.user_buckets)

    def candidate_items(self) -> np.ndarray | None:
        """The items test users are ranked over by the protocol's headline metrics: the cold
        items (``cold-items``), the target domain's items (``cross-domain``), else None (all)."""
        if self.config.kind == "cold-items":
            mask = np.zeros(self.n_items, dtype=bool)
            mask[self.items.to_index(self.meta["cold_items"])] = True
            return mask
        if self.config.kind == "cross-domain":
            return self.item_domains() == self.domain_pair()[1]
        return None

    # --- persistence -----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write ``split.parquet``, ``users.parquet``, ``items.parquet``, a manifest and, last,
        the done-marker with their checksums."""
        folder = Path(folder)
        begin_stage(folder)
        frames = []
        for name in PARTS:
            f = self.part(name).drop(columns=[USER_IDX, ITEM_IDX]).copy()
            f[PART] = name
            frames.append(f)
        table = pd.concat(frames, ignore_index=True)
        self.users.save(folder / "users.parquet")
        self.items.save(folder / "items.parquet")
        with atomic_path(folder / "split.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        write_json(
            folder / "manifest.json",
            {
                "config": asdict(self.config),
                "rows": {p: len(self.part(p)) for p in PARTS},
                "n_users": self.n_users,
                "n_items": self.n_items,
                **self.meta,
            },
        )
        mark_done(folder, self.config.name)

    @classmethod
    def load(cls, folder: str | Path, dataset: Dataset | None = None) -> Split:
        folder = Path(folder)
        manifest = read_json(folder / "manifest.json")
        config = SplitConfig.from_json(manifest["config"])
        users = IdMap.load(folder / "users.parquet")
        items = IdMap.load(folder / "items.parquet")
        table = pd.read_parquet(folder / "split.parquet")
        table[USER_ID] = table[USER_ID].astype(str)
        table[ITEM_ID] = table[ITEM_ID].astype(str)
        table = _with_indices(table, users, items)
        parts = {p: table[table[PART] == p].drop(columns=[PART]).reset_index(drop=True) for p in PARTS}
        meta = {k: v for k, v in manifest.items() if k not in ("config", "rows", "n_users", "n_items")}
        return cls(
            config=config,
            train=parts[TRAIN],
            valid=parts[VALID],
            test=parts[TEST],
            users=users,
            items=items,
            meta=meta,
            dataset=dataset,
        )


TEMPORAL_KINDS = ("temporal-ratio", "leave-last", "global-temporal")
"""Splits whose parts follow time: the ranking protocols' folds follow it there too."""


@dataclass(frozen=True)
class SplitView:
    """A view of a split that the ranking protocols fit models on, with the same id maps:
    the split itself (``split``); train + valid as train, for models refit before test
    (``refit``); or one out-of-fold fold of train (``fold``): train without fold ``fold``
    as train, fold ``fold`` as valid (its labels). Folds are each user's training
    interactions cut at random (``seed``) into ``folds`` parts, or on splits that follow
    time (:data:`TEMPORAL_KINDS`) into ``folds`` consecutive parts, a fold then fitting on
    the parts before it only (fold 0 has none, so it is never used). ``with_valid``: a fold
    also fits on valid (splits that do not follow time), so its models see as much data as
    the split's own do."""

    kind: Literal["split", "refit", "fold"] = "split"
    fold: int = 0
    folds: int = 5
    seed: int = 2020
    with_valid: bool = False

    def __post_init__(self) -> None:
        if self.folds < 2 or not 0 <= self.fold < self.folds:
            raise InvalidArgumentError(
                f"fold {self.fold} of {self.folds}: need 0 <= fold < folds and folds >= 2"
            )
        if self.with_valid and self.kind != "fold":
            raise InvalidArgumentError(f"with_valid is a fold's setting, not a {self.kind} view's")

    @property
    def name(self) -> str:
        """``split``, ``refit`` or ``fold<k>of<n>`` (``fold<k>of<n>v`` with valid; folder
        names of the models fit on it)."""
        if self.kind != "fold":
            return self.kind
        return f"fold{self.fold}of{self.folds}" + ("v" if self.with_valid else "")

    def of(self, split: Split) -> Split:
        """This view of ``split``."""
        if self.kind == "split":
            return split
        empty = split.valid.iloc[:0]
        if self.kind == "refit":
            train = pd.concat([split.train, split.valid], ignore_index=True)
            return split.with_parts(train=train, valid=empty)
        temporal = split.config.kind in TEMPORAL_KINDS
        if self.with_valid and temporal:
            raise InvalidArgumentError(
                f"a fold of a {split.config.kind} split cannot fit on valid, which follows it in time"
            )
        part = fold_of(split.train, self.folds, self.seed, temporal=temporal)
        held = part == self.fold
        fit = part < self.fold if temporal else ~held
        train = split.train[fit]
        if self.with_valid:
            train = pd.concat([train, split.valid])
        return split.with_parts(
            train=train.reset_index(drop=True), valid=split.train[held].reset_index(drop=True)
        )


def fold_of(train: pd.DataFrame, folds: int, seed: int, temporal: bool) -> np.ndarray:
    """The fold (0 ... folds - 1) of each training interaction: per user, at random
    (``seed``) in near-equal parts, or by time into consecutive parts (``temporal``)."""
    users = train[USER_IDX].to_numpy()
    if temporal:
        order = np.lexsort((np.arange(len(train)), train[TIMESTAMP].to_numpy(), users))
    else:
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(train)), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    out = np.empty(len(train), np.int64)
    out[order] = (position * folds) // np.repeat(sizes, sizes)
    return out


def _with_indices(frame: pd.DataFrame, users: IdMap, items: IdMap) -> pd.DataFrame:
    frame = frame.copy()
    frame[USER_IDX] = users.to_index(frame[USER_ID])
    frame[ITEM_IDX] = items.to_index(frame[ITEM_ID])
    return frame


def ratio_counts(totals: np.ndarray, ratios: tuple[float, ...]) -> np.ndarray:
    """Rows per part for groups of size ``totals``, rounded as RecBole's ``_calcu_split_ids``.

    >>> ratio_counts(np.array([10, 5, 1]), (0.8, 0.1, 0.1)).tolist()
    [[8, 1, 1], [3, 1, 1], [1, 0, 0]]
    """
    r = np.asarray(ratios, dtype=np.float64) / np.sum(ratios)
    totals = np.asarray(totals, dtype=np.int64)
    cnt = np.stack([(r[i] * totals).astype(np.int64) for i in range(len(r))], axis=1)
    cnt[:, 0] = totals - cnt[:, 1:].sum(axis=1)
    active = np.ones(len(totals), dtype=bool)
    for i in range(1, len(r)):
        active &= cnt[:, 0] > 1
        want = active & (r[-i] * totals > 0) & (r[-i] * totals < 1)
        cnt[want, -i] += 1
        cnt[want, 0] -= 1
    return cnt


def _label_by_position(groups: np.ndarray, order: np.ndarray, ratios: tuple[float, ...]) -> np.ndarray:
    """Part codes for rows ordered by ``order`` within each group (0 train, 1 valid, 2 test)."""
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    pos = np.arange(len(order)) - np.repeat(starts, sizes)
    cnt = np.repeat(ratio_counts(sizes, ratios), sizes, axis=0)
    code_sorted = (pos >= cnt[:, 0]).astype(np.int8) + (pos >= cnt[:, 0] + cnt[:, 1])
    codes = np.empty(len(order), dtype=np.int8)
    codes[order] = code_sorted
    return codes


def _per_user_random(users: np.ndarray, ratios: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    key = rng.permutation(len(users))
    order = np.lexsort((key, users))
    return _label_by_position(users, order, ratios)


def assign_parts(frame: pd.DataFrame, config: SplitConfig) -> np.ndarray:
    """Return the part code (0 train, 1 valid, 2 test) of every row of ``frame``."""
    rng = np.random.default_rng(config.seed)
    users = frame[USER_IDX].to_numpy()
    times = frame[TIMESTAMP].to_numpy() if TIMESTAMP in frame.columns else np.zeros(len(frame))
    rows = np.arange(len(frame))
    if config.kind == "ratio":
        return _per_user_random(users, config.ratios, rng)
    if config.kind == "temporal-ratio":
        return _label_by_position(users, np.lexsort((rows, times, users)), config.ratios)
    if config.kind == "leave-last":
        order = np.lexsort((rows, times, users))
        sorted_users = users[order]
        last = np.r_[sorted_users[1:] != sorted_users[:-1], True]
        second = np.r_[last[1:], False] & ~last
        starts = np.r_[True, sorted_users[1:] != sorted_users[:-1]]
        codes_sorted = np.zeros(len(order), dtype=np.int8)
        codes_sorted[last & ~starts] = 2
        # a second-last row that is also the user's first stays in train
        codes_sorted[second & ~starts] = 1
        codes = np.empty(len(order), dtype=np.int8)
        codes[order] = codes_sorted
        return codes
    if config.kind == "global-temporal":
        order = np.lexsort((rows, times))
        cnt = ratio_counts(np.array([len(frame)]), config.ratios)[0]
        codes_sorted = np.zeros(len(frame), dtype=np.int8)
        codes_sorted[cnt[0] : cnt[0] + cnt[1]] = 1
        codes_sorted[cnt[0] + cnt[1] :] = 2
        codes = np.empty(len(frame), dtype=np.int8)
        codes[order] = codes_sorted
        return codes
    # cold-items / cold-users
    column = ITEM_IDX if config.kind == "cold-items" else USER_IDX
    entities = np.unique(frame[column].to_numpy())
    assert config.cold_share is not None  # SplitConfig.__post_init__ fills the default
    n_cold = max(1, round(config.cold_share * len(entities)))
    cold = rng.choice(entities, size=n_cold, replace=False)
    is_cold = np.isin(frame[column].to_numpy(), cold)
    codes = np.full(len(frame), 2, dtype=np.int8)
    warm = np.flatnonzero(~is_cold)
    vr, wt = config.cold_valid_ratio, config.warm_test_ratio
    codes[warm] = _per_user_random(users[warm], (1 - vr - wt, vr, wt), rng)
    return codes


def make_split(dataset: Dataset, config: SplitConfig) -> Split:
    """Split a dataset's interactions; id maps cover every user and catalogue item."""
    if config.kind == "cross-domain":
        return _cross_domain_split(dataset, config)
    users = IdMap(dataset.user_ids)
    items = IdMap(dataset.item_ids)
    frame = _with_indices(dataset.interactions.reset_index(drop=True), users, items)
    codes = assign_parts(frame, config)
    parts = {name: frame[codes == code].reset_index(drop=True) for code, name in _PART_CODE.items()}
    meta: dict = {"dataset": dataset.name}
    if config.kind in ("cold-items", "cold-users"):
        column = ITEM_ID if config.kind == "cold-items" else USER_ID
        held = set(parts[TEST][column]) - set(parts[TRAIN][column]) - set(parts[VALID][column])
        meta["cold_" + ("items" if column == ITEM_ID else "users")] = sorted(held)
    return Split(config=config, users=users, items=items, meta=meta, dataset=dataset, **parts)


def _cross_domain_split(dataset: Dataset, config: SplitConfig) -> Split:
    """The cross-domain protocol (see the module docstring). Id maps cover the users and
    items of in-domain interactions, in order of first interaction."""
    from fusionrank.data.dataset import domain_labels

    labels = domain_labels(dataset, dataset.item_ids)
    in_domain = {i for i, d in zip(dataset.item_ids, labels) if d}
    frame = dataset.interactions[dataset.interactions[ITEM_ID].isin(in_domain)].reset_index(drop=True)
    if frame.empty:
        raise InvalidArgumentError(f"dataset {dataset.name!r}: no interaction has an item in a domain")
    users = IdMap(pd.unique(frame[USER_ID]))
    items = IdMap(pd.unique(frame[ITEM_ID]))
    frame = _with_indices(frame, users, items)
    domain = domain_labels(dataset, items.ids)
    probe = Split(config, frame.iloc[:0], frame.iloc[:0], frame.iloc[:0], users, items, {}, dataset)
    source, target = probe.domain_pair()
    in_target = domain[frame[ITEM_IDX].to_numpy()] == target
    in_source = domain[frame[ITEM_IDX].to_numpy()] == source
    both = np.intersect1d(frame.loc[in_target, USER_IDX].unique(), frame.loc[in_source, USER_IDX].unique())
    rng = np.random.default_rng(config.seed)
    chosen = rng.permutation(both)
    assert config.cold_share is not None  # SplitConfig.__post_init__ fills the default
    n_test, n_valid = round(config.cold_share * len(both)), round(config.valid_users_share * len(both))
    test_users, valid_users = np.sort(chosen[:n_test]), np.sort(chosen[n_test : n_test + n_valid])
    u = frame[USER_IDX].to_numpy()
    is_test = in_target & np.isin(u, test_users)
    is_valid = in_target & np.isin(u, valid_users)
    meta = {
        "dataset": dataset.name,
        "source": source,
        "target": target,
        "test_users": users.to_ids(test_users).tolist(),
        "valid_users": users.to_ids(valid_users).tolist(),
    }
    return Split(
        config=config,
        train=frame[~is_test & ~is_valid].reset_index(drop=True),
        valid=frame[is_valid].reset_index(drop=True),
        test=frame[is_test].reset_index(drop=True),
        users=users,
        items=items,
        meta=meta,
        dataset=dataset,
    )


def prepare_split(dataset: Dataset, config: SplitConfig, root: str | Path | None = None) -> Split:
    """Load the saved split under the dataset's home (or ``root/<name>``) if it matches
    ``config``, else make it and save it there (nothing is saved without a folder)."""
    base = Path(root) / dataset.name if root is not None else dataset.home
    folder = base / "splits" / config.name if base is not None else None
    if folder is not None and (folder / "manifest.json").exists():
        problem = verify_stage(folder)
        if problem is not None:
            warnings.warn(
                f"saved split {folder}: {problem}; making it again", StageCacheWarning, stacklevel=2
            )
        else:
            split = Split.load(folder, dataset)
            rows = len(split.train) + len(split.valid) + len(split.test)
            expected = rows if config.kind == "cross-domain" else len(dataset.interactions)
            if split.config == config and rows == expected and split.meta.get("dataset") == dataset.name:
                return split
    split = make_split(dataset, config)
    if folder is not None:
        split.save(folder)
    return split


def split(dataset: Dataset, kind: str = "ratio", seed: int = 2020, **options: object) -> Split:
    """Split ``dataset`` by a protocol's name (see the module docstring); the split is saved
    under the dataset's home folder and reused, so every model sees the same rows.
    ``options`` are the other :class:`SplitConfig` fields (``ratios``, ``cold_share`` ...).

    >>> import tempfile, pandas as pd, fusionrank as fr
    >>> events = pd.DataFrame({"user_id": list("aaaabbbb"), "item_id": list("wxyzwxyz")})
    >>> data = fr.Dataset.from_files(events, name="toy", cache_dir=tempfile.mkdtemp())
    >>> s = fr.split(data, "leave-last", seed=1)
    >>> len(s.train), len(s.valid), len(s.test)
    (4, 2, 2)
    """
    from fusionrank.settings import build_settings

    config = build_settings(SplitConfig, {"kind": kind, "seed": seed, **options}, owner="split")
    return prepare_split(dataset, config)
