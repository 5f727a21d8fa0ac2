"""Synthetic datasets shaped like real logs, with a planted right answer.

``fusionrank data synth`` (:func:`synth_dataset`) writes an own-data dataset under the data
folder, through the same path as ``fusionrank data import``, so that ``--dataset NAME`` and
``dataset: NAME`` find it. The generative story, every step seeded:

1. **Items.** A latent category (sizes Zipf-like) and a latent style. Item factors are the
   category's centroid plus the style's vector plus noise, so the catalogue text (a title
   and a description drawn from a vocabulary per category and per style) and the images
   (colour from the category, shape from the style) carry part of the signal; the noise
   part is left for collaborative models. Popularity weights are log-normal around a
   level per category (the rank-frequency curve is Zipf-like in the head, with a top
   item that no user can take twice, as in MovieLens-20M); each item has a release time.
2. **Users.** A favourite category; factors are its centroid plus noise. Side features are
   partly tied to the latent factors (country to the favourite category, age and gender
   to two directions of the factor space). Activity is log-normal, scaled to the
   requested total; each user is active during a window of the period.
3. **Events.** Each user's items are distinct and drawn from softmax(planted score) by
   Gumbel-top-k (Plackett-Luce sampling without replacement), users in chunks, so memory
   is a chunk x items, never users x items. The planted score is
   ``affinity * <user, item> / sqrt(factors) + log popularity - drift * |release - user's
   time| / period``: users prefer items released near their active window, so popularity
   drifts over the period. Timestamps fall in the user's window, after the release.
4. **Oracle.** Ranking by the planted score on the default split (``ratio``, seed 2020)
   gives the ceiling recorded in ``synth.json`` beside the generator settings and the
   statistics achieved (top-1% item share, events per user and per item).

The same settings give byte-identical files (on one machine: the scores are float32
matrix products, whose last bits may differ between BLAS builds).

With the defaults (measured; ``synth.json`` records them for every dataset):

================================  ==============  ===============  ====================
users x items, events             top-1% share    events per user  oracle NDCG@10
                                                  (median, max)    (ratio, seed 2020)
================================  ==============  ===============  ====================
2,000 x 1,000, 20k                19%             8, 113           0.45
40,000 x 12,000, 1M               27%             17, 620          0.25
138,000 x 27,000, 20M             21%             90, 8,504        0.36
================================  ==============  ===============  ====================

MovieLens-20M for comparison: the top 1% of movies take roughly 20-30% of the ratings and
the most rated movie has 67,310 ratings (the 20M set above: 67,740).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusionrank.columns import ITEM_ID, TIMESTAMP, USER_ID
from fusionrank.data.dataset import DATASET_FILE, Dataset, default_root, import_dataset
from fusionrank.data.errors import DataError
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import read_json, write_json
from fusionrank.settings import build_settings, replace_settings

SYNTH_FILE = "synth.json"
"""The generator's manifest in the dataset folder: settings, statistics and the oracle."""
IMAGES_DIR = "images"
"""Folder of the generated images inside the dataset folder."""
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
"""Image shape of each latent style (``styles`` is at most their number)."""
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "CA", "ES", "MX")
"""Values of the users' ``country`` side feature."""
AGE_BUCKETS = (18.0, 25.0, 35.0, 45.0, 50.0, 56.0)
"""Upper bounds of the age buckets in the profile (as MovieLens' age groups)."""
ORACLE_SPLIT = ("ratio", 2020)
"""The default split (kind, seed) on which the oracle is measured."""
FUNCTION_WORDS = ("the", "a", "of", "and", "in", "with", "for", "on", "to", "from", "by", "at")
PILOT_USERS = 4096
"""Users over which the preference term's lift of each item's popularity is measured."""
CHUNK_CELLS = 1 << 25
"""Users x items cells scored at once (128 MiB of float32): fixes the chunk size, hence the
random streams, from the item count alone."""


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the generator; the same settings give the same files.

    >>> SynthConfig(users=100, items=50, interactions=1000).factors
    16
    >>> SynthConfig(users=2, items=3, interactions=7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fusionrank.errors.InvalidArgumentError: interactions (7) exceed users x items (6): ...
    """

    users: int
    """Users; every one has at least ``min_per_user`` events (or every item, if fewer)."""
    items: int
    """Items in the catalogue; the least popular may have no events at all."""
    interactions: int
    """Events in all, exactly: each a distinct (user, item) pair."""
    images: int = 0
    """Items with a PNG image (the first ones by id, a random sample as to popularity)."""
    seed: int = 2020
    """Seed of every random choice."""
    categories: int = 18
    """Latent item categories (the ``genres`` column); they shape text, colour and taste."""
    styles: int = 4
    """Latent item styles (words of the description, shape of the image)."""
    factors: int = 16
    """Dimension of the planted user and item factors."""
    content_share: float = 0.6
    """Share of an item factor's variance explained by its category and style (the rest
    is noise that only interactions reveal)."""
    affinity: float = 2.5
    """Weight of the user-item preference in the planted score (0: popularity only)."""
    popularity: float = 2.0
    """Spread (sigma) of the log-normal item popularity weights."""
    activity_sigma: float = 1.0
    """Sigma of the log-normal user activity (events per user)."""
    min_per_user: int = 5
    """Fewest events per user (as MovieLens' 20, lower for small sets)."""
    start: str = "2015-01-01"
    """First day of the period (ISO date, UTC)."""
    period_days: float = 1095.0
    """Length of the period over which timestamps spread."""
    drift: float = 2.0
    """Weight of the release-time affinity: how strongly users prefer items released near
    their active window (0: no drift)."""
    image_size: int = 32
    """Width and height of the images in pixels."""

    def __post_init__(self) -> None:
        for name in ("users", "items", "interactions", "categories", "styles", "factors", "min_per_user"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1, got {getattr(self, name)}")
        cells = self.users * self.items
        if self.interactions > cells:
            raise InvalidArgumentError(
                f"interactions ({self.interactions}) exceed users x items ({cells}): a user has at most "
                "one event per item; ask for fewer interactions or more users or items"
            )
        least = self.users * min(self.min_per_user, self.items)
        if self.interactions < least:
            raise InvalidArgumentError(
                f"interactions ({self.interactions}) are fewer than users x min_per_user ({least}); "
                "ask for more interactions, fewer users or a lower min_per_user"
            )
        if not 0 <= self.images <= self.items:
            raise InvalidArgumentError(
                f"images must be between 0 and items ({self.items}), got {self.images}"
            )
        if self.styles > len(SHAPES):
            raise InvalidArgumentError(
                f"styles must be at most {len(SHAPES)} (one image shape each), got {self.styles}"
            )
        if not 0 <= self.content_share <= 1:
            raise InvalidArgumentError(f"content_share must be in [0, 1], got {self.content_share}")
        for name in ("affinity", "popularity", "activity_sigma", "drift"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.period_days <= 0:
            raise InvalidArgumentError(f"period_days must be > 0, got {self.period_days}")
        if not 8 <= self.image_size <= 512:
            raise InvalidArgumentError(f"image_size must be between 8 and 512 pixels, got {self.image_size}")
        self.start_seconds  # noqa: B018 - checks the date

    @property
    def start_seconds(self) -> int:
        """The period's first second (since 1970, UTC)."""
        try:
            day = dt.date.fromisoformat(self.start)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"start must be an ISO date such as 2015-01-01, got {self.start!r}"
            ) from exc
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())

    @property
    def chunk_users(self) -> int:
        """Users sampled at once (memory: this many x items x 4 bytes, a few times)."""
        return max(1, CHUNK_CELLS // self.items)


# --- the planted model ---------------------------------------------------------------------
@dataclass
class Planted:
    """The latent truth behind a synthetic dataset (arrays indexed by the generator's user
    and item numbers: ``u<n>`` and ``i<n>``)."""

    config: SynthConfig
    item_category: np.ndarray  # (items,) int64
    item_style: np.ndarray  # (items,) int64
    item_factors: np.ndarray  # (items, factors) float32, scaled by affinity / sqrt(factors)
    item_bias: np.ndarray  # (items,) float32: log popularity, corrected for the factors' share
    item_release: np.ndarray  # (items,) float32 days since the start (negative: back catalogue)
    user_category: np.ndarray  # (users,) int64: favourite category
    user_factors: np.ndarray  # (users, factors) float32
    user_start: np.ndarray  # (users,) float32 days: start of the active window
    user_span: np.ndarray  # (users,) float32 days: length of the active window
    user_counts: np.ndarray  # (users,) int64 events
    centroids: np.ndarray  # (categories, factors) float32: each category's direction
    style_vectors: np.ndarray  # (styles, factors) float32: each style's direction

    def content_factors(self, style: bool = True) -> np.ndarray:
        """The part of :attr:`item_factors` that the item's category (and style) explain, on
        the same scale, ``(items, factors)`` float32: what the catalogue's text, genres and
        images reveal; the rest is noise that only interactions reveal.

        >>> truth = plant(SynthConfig(users=50, items=30, interactions=600, content_share=1.0))
        >>> bool(np.allclose(truth.content_factors(), truth.item_factors, atol=1e-6))
        True
        """
        cfg = self.config
        part = _content(self.centroids, self.style_vectors, self.item_category, self.item_style, style)
        return part * np.sqrt(np.float32(cfg.content_share)) * np.float32(cfg.affinity / np.sqrt(cfg.factors))

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Planted scores of ``users`` (generator numbers) for every item, ``(n, items)``
        float32: the logits events are drawn from, and the oracle's ranking."""
        out = self.user_factors[users] @ self.item_factors.T  # (n, items)
        out += self.item_bias
        if self.config.drift > 0:
            out -= self.drift_penalty(users)
        return out

    def drift_penalty(self, users: np.ndarray) -> np.ndarray:
        """What release time takes off the planted scores of ``users`` (generator numbers),
        ``(n, items)`` float32: ``drift * |release - centre of the user's window| / period``."""
        centre = self.user_start[users] + self.user_span[users] / 2  # (n,)
        gap = np.subtract(self.item_release[None, :], centre[:, None])  # (n, items)
        np.abs(gap, out=gap)
        gap *= np.float32(self.config.drift / self.config.period_days)
        return gap


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per part of the story, so that e.g. images never change events."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _unit_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def plant(config: SynthConfig) -> Planted:
    """Draw the latent truth: categories, styles, factors, popularity, release times,
    user windows and events per user.

    >>> truth = plant(SynthConfig(users=50, items=30, interactions=600))
    >>> truth.scores(np.arange(3)).shape, int(truth.user_counts.sum())
    ((3, 30), 600)
    """
    c, n_items, n_users, d = config.categories, config.items, config.users, config.factors
    rng = _rng(config.seed, 0)
    category_p = _zipf_weights(c, 0.8)[rng.permutation(c)]
    centroids = _unit_normal(rng, (c, d))
    style_vectors = _unit_normal(rng, (config.styles, d))
    item_category = rng.choice(c, size=n_items, p=category_p)
    item_style = rng.integers(0, config.styles, size=n_items)
    share = np.float32(config.content_share)
    content = _content(centroids, style_vectors, item_category, item_style)
    item_factors = np.sqrt(share) * content + np.sqrt(1 - share) * _unit_normal(rng, (n_items, d))
    item_factors *= np.float32(config.affinity / np.sqrt(d))
    log_pop = np.float32(config.popularity) * _unit_normal(rng, (n_items,))
    item_release = rng.uniform(-0.5, 1.0, size=n_items).astype(np.float32) * np.float32(config.period_days)

    rng = _rng(config.seed, 1)
    user_category = rng.choice(c, size=n_users, p=category_p)
    user_factors = np.sqrt(np.float32(0.5)) * (centroids[user_category] + _unit_normal(rng, (n_users, d)))
    period = config.period_days
    user_span = (period * np.minimum(1.0, 0.02 * rng.lognormal(0.0, 1.5, size=n_users))).astype(np.float32)
    user_start = (rng.uniform(0, 1, size=n_users) * (period - user_span)).astype(np.float32)
    counts = activity_counts(
        rng, n_users, n_items, config.interactions, config.activity_sigma, config.min_per_user
    )
    # The preference term raises some items' mean softmax weight (large factors): take that
    # out within each category, so that popularity follows the log-normal weights around a
    # level per category (genres differ in popularity, as in real logs).
    lift = _mean_softmax_weight(user_factors[:PILOT_USERS], item_factors)
    level = np.bincount(item_category, lift, c) / np.maximum(np.bincount(item_category, minlength=c), 1)
    lift -= level[item_category].astype(np.float32)
    return Planted(
        config=config,
        item_category=item_category,
        item_style=item_style,
        item_factors=item_factors,
        item_bias=(log_pop - lift).astype(np.float32),
        item_release=item_release,
        user_category=user_category,
        user_factors=user_factors,
        user_start=user_start,
        user_span=user_span,
        user_counts=counts,
        centroids=centroids,
        style_vectors=style_vectors,
    )


def _content(
    centroids: np.ndarray,
    styles: np.ndarray,
    category: np.ndarray,
    style: np.ndarray,
    with_style: bool = True,
) -> np.ndarray:
    """Items' category and style directions, weighted as the planted factors weigh them."""
    out = np.sqrt(np.float32(0.75)) * centroids[category]
    return out + np.float32(0.5) * styles[style] if with_style else out


def _mean_softmax_weight(users: np.ndarray, items: np.ndarray, block: int = 512) -> np.ndarray:
    """log mean_u exp(<u, i>) per item, ``(items,)`` float32, users in blocks (memory: a
    block x items)."""
    total = np.full(len(items), -np.inf)
    for first in range(0, len(users), block):
        part = (users[first : first + block] @ items.T).astype(np.float64)  # (block, items)
        top = part.max(axis=0)
        total = np.logaddexp(total, top + np.log(np.exp(part - top).sum(axis=0)))
    return (total - np.log(len(users))).astype(np.float32)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def activity_counts(
    rng: np.random.Generator, users: int, items: int, total: int, sigma: float, minimum: int = 1
) -> np.ndarray:
    """Events per user: ``minimum`` each plus a log-normal share of the rest, capped at
    ``items`` (the overflow goes to the others), summing to ``total`` exactly.

    >>> counts = activity_counts(np.random.default_rng(0), 1000, 50, 20_000, 1.0, 5)
    >>> int(counts.sum()), int(counts.min()) >= 5, int(counts.max()) <= 50
    (20000, True, True)
    """
    base = min(minimum, items)
    extra, cap = total - base * users, items - base
    if extra < 0 or extra > cap * users:
        raise InvalidArgumentError(f"cannot give {users} users {total} events with {base} to {items} each")
    weight = rng.lognormal(0.0, sigma, size=users)
    capped = np.zeros(users, dtype=bool)
    while True:  # water-filling: scale the uncapped users until none exceeds the cap
        scale = (extra - cap * capped.sum()) / max(weight[~capped].sum(), 1e-300)
        now = capped | (scale * weight >= cap)
        if (now == capped).all():
            break
        capped = now
    share = np.where(capped, cap, np.minimum(cap, scale * weight))
    counts = np.floor(share).astype(np.int64)
    left = extra - int(counts.sum())
    while left > 0:  # largest remainders first, ties by user number
        room = np.flatnonzero(counts < cap)
        take = room[np.argsort(-(share[room] - counts[room]), kind="stable")[:left]]
        counts[take] += 1
        left = extra - int(counts.sum())
    return counts + base


# --- events ---------------------------------------------------------------------------------
def _sample_events(truth: Planted, progress: bool = False) -> pd.DataFrame:
    """Each user's distinct items by Gumbel-top-k over the planted scores, with timestamps
    in the user's window after the item's release; users in chunks. Columns: ``user``,
    ``item`` (generator numbers, int32) and ``timestamp`` (int64 seconds), ordered by user
    and time."""
    config = truth.config
    n_items, step = config.items, config.chunk_users
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    chunks = range(0, config.users, step)
    bar = tqdm(total=config.users, unit="user", desc="synth", disable=not progress or len(chunks) < 2)
    for k, first in enumerate(chunks):
        rng = _rng(config.seed, 2, k)
        rows = np.arange(first, min(first + step, config.users))
        keys = truth.scores(rows)  # (chunk, items)
        noise = rng.standard_exponential(keys.shape, dtype=np.float32)
        np.maximum(noise, np.float32(1e-30), out=noise)  # float32 draws can be 0
        keys -= np.log(noise, out=noise)  # + Gumbel(0, 1)
        counts = truth.user_counts[rows]
        items = np.empty(int(counts.sum()), dtype=np.int32)
        at = 0
        for r, n in enumerate(counts):
            items[at : at + n] = np.sort(np.argpartition(keys[r], n_items - n)[n_items - n :])
            at += n
        del keys, noise
        users = np.repeat(rows, counts).astype(np.int32)
        days = _event_days(truth, users, items, rng)
        order = np.lexsort((items, days, users))
        seconds = config.start_seconds + np.floor(days[order] * 86400).astype(np.int64)
        parts.append((users[order], items[order], seconds))
        bar.update(len(rows))
    bar.close()
    return pd.DataFrame(
        {
            "user": np.concatenate([p[0] for p in parts]),
            "item": np.concatenate([p[1] for p in parts]),
            TIMESTAMP: np.concatenate([p[2] for p in parts]),
        }
    )


def _event_days(truth: Planted, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Days since the start: uniform between the later of the user's start and the item's
    release, and the end of the user's window (or of the period)."""
    period = truth.config.period_days
    start, release = truth.user_start[users].astype(np.float64), truth.item_release[items].astype(np.float64)
    low = np.clip(np.maximum(start, release), 0, period)
    width = np.minimum(truth.user_span[users].astype(np.float64), period - low)
    return low + rng.uniform(0, 1, size=len(users)) * width


# --- catalogue and users --------------------------------------------------------------------
def _words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (two or three syllables)."""
    onsets = list("bdfgklmnprstvz") + ["ch", "sh", "th", "br", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "", "", "n", "r", "s", "l", "k"]
    out: dict[str, None] = {}
    while len(out) < n:
        syllables = rng.integers(2, 4)
        word = "".join(
            onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(syllables)
        )
        out.setdefault(word + codas[rng.integers(len(codas))], None)
    return list(out)


def _item_table(truth: Planted) -> pd.DataFrame:
    """The catalogue: ``item_id``, ``title``, ``description`` (words from the item's
    category and style vocabularies among shared words), ``genres`` (the category's name),
    ``year`` (of release) and ``image`` (a path under the images folder, or None)."""
    config = truth.config
    rng = _rng(config.seed, 3)
    n_cat, n_style = config.categories, config.styles
    per_cat, per_style, shared_n = 30, 15, 150
    pool = _words(rng, n_cat + n_cat * per_cat + n_style * per_style + shared_n)
    names = [w.capitalize() for w in pool[:n_cat]]
    at = n_cat
    cat_words = np.array(pool[at : at + n_cat * per_cat], dtype=object).reshape(n_cat, per_cat)
    at += n_cat * per_cat
    style_words = np.array(pool[at : at + n_style * per_style], dtype=object).reshape(n_style, per_style)
    shared = np.array(pool[at + n_style * per_style :] + list(FUNCTION_WORDS) * 4, dtype=object)
    n = config.items
    cat, style = truth.item_category, truth.item_style

    def draw(length: int, p_cat: float, p_style: float) -> np.ndarray:  # (items, length) words
        source = rng.uniform(size=(n, length))
        words = shared[rng.integers(len(shared), size=(n, length))]
        from_cat = cat_words[cat[:, None], rng.integers(per_cat, size=(n, length))]
        from_style = style_words[style[:, None], rng.integers(per_style, size=(n, length))]
        words = np.where(source < p_cat, from_cat, words)
        return np.where((source >= p_cat) & (source < p_cat + p_style), from_style, words)

    title_words, title_len = draw(3, 0.6, 0.1), rng.integers(1, 4, size=n)
    desc_words, desc_len = draw(24, 0.3, 0.15), rng.integers(12, 25, size=n)
    titles = [" ".join(w.capitalize() for w in row[:k]) for row, k in zip(title_words, title_len)]
    descriptions = [" ".join(row[:k]).capitalize() + "." for row, k in zip(desc_words, desc_len)]
    year = pd.to_datetime(config.start_seconds + truth.item_release.astype(np.float64) * 86400, unit="s").year
    ids = _item_ids(n)
    images = [f"{ids[i]}.png" if i < config.images else None for i in range(n)]
    return pd.DataFrame(
        {
            ITEM_ID: ids,
            "title": titles,
            "description": descriptions,
            "genres": np.array(names, dtype=object)[cat],
            "year": np.asarray(year, dtype=np.int64),
            "image": pd.Series(images, dtype=object),
        }
    )


def _user_table(truth: Planted) -> pd.DataFrame:
    """Users with side features partly tied to their factors: ``age`` (a factor direction
    plus noise), ``gender`` (another direction) and ``country`` (the favourite category,
    60% of the time)."""
    config = truth.config
    rng = _rng(config.seed, 4)
    n, d = config.users, config.factors
    directions = rng.standard_normal((2, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    z = truth.user_factors @ directions.T.astype(np.float32)  # (users, 2)
    z = (z - z.mean(axis=0)) / np.maximum(z.std(axis=0), 1e-6)
    age = np.clip(np.round(34 + 8 * z[:, 0] + 7 * rng.standard_normal(n)), 13, 80).astype(np.int64)
    female = rng.uniform(size=n) < 1 / (1 + np.exp(-1.2 * z[:, 1]))
    tied = rng.uniform(size=n) < 0.6
    country = np.where(tied, truth.user_category % len(COUNTRIES), rng.integers(len(COUNTRIES), size=n))
    return pd.DataFrame(
        {
            USER_ID: _user_ids(n),
            "age": age,
            "gender": np.where(female, "F", "M").astype(object),
            "country": np.array(COUNTRIES, dtype=object)[country],
        }
    )


def _user_ids(n: int) -> np.ndarray:
    """External ids of the generator's users: ``u0 .. u<n-1>``."""
    return np.array([f"u{i}" for i in range(n)], dtype=object)


def _item_ids(n: int) -> np.ndarray:
    """External ids of the generator's items: ``i0 .. i<n-1>``."""
    return np.array([f"i{i}" for i in range(n)], dtype=object)


def _write_images(truth: Planted, folder: Path) -> int:
    """PNG images of the first ``images`` items in ``folder`` (``i<n>.png``): the colour
    comes from the category, the shape from the style, the placement from the seed.
    Written in a temporary folder that replaces ``folder`` when done; returns the count."""
    from PIL import Image, ImageDraw

    config = truth.config
    size = config.image_size
    rng = _rng(config.seed, 5)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = _item_ids(config.images)
    for i in range(config.images):
        hue = truth.item_category[i] / config.categories
        colour = _rgb(hue, 0.75, 0.85)
        image = Image.new("RGB", (size, size), _rgb(hue, 0.15, 0.98))
        draw = ImageDraw.Draw(image)
        r = size * rng.uniform(0.25, 0.38)
        cx, cy = size / 2 + rng.uniform(-0.1, 0.1, size=2) * size
        _shape(draw, SHAPES[truth.item_style[i]], cx, cy, r, colour)
        image.save(tmp / f"{ids[i]}.png", format="PNG")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return config.images


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _shape(draw: Any, shape: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
    else:  # ring
        draw.ellipse(box, outline=colour, width=max(2, round(r / 3)))


# --- the dataset ------------------------------------------------------------------------------
@dataclass
class Synthetic:
    """A generated dataset in memory: the three tables and the truth behind them."""

    interactions: pd.DataFrame
    """``user_id``, ``item_id`` (str) and ``timestamp`` (int64 seconds), by user and time."""
    items: pd.DataFrame
    users: pd.DataFrame
    truth: Planted


def synthesize(config: SynthConfig, progress: bool = False) -> Synthetic:
    """Generate the tables of a synthetic dataset in memory (nothing is written).

    >>> data = synthesize(SynthConfig(users=40, items=30, interactions=400, seed=1))
    >>> len(data.interactions), bool(data.interactions[["user_id", "item_id"]].duplicated().any())
    (400, False)
    >>> list(data.items.columns)
    ['item_id', 'title', 'description', 'genres', 'year', 'image']
    """
    truth = plant(config)
    events = _sample_events(truth, progress)
    interactions = pd.DataFrame(
        {
            USER_ID: _user_ids(config.users)[events["user"].to_numpy()],
            ITEM_ID: _item_ids(config.items)[events["item"].to_numpy()],
            TIMESTAMP: events[TIMESTAMP].to_numpy(),
        }
    )
    return Synthetic(interactions, _item_table(truth), _user_table(truth), truth)


def synth_statistics(data: Synthetic) -> dict[str, Any]:
    """What the generator achieved: counts, the top-1% item share, events per user and
    per item (quantiles), and the time range.

    >>> stats = synth_statistics(synthesize(SynthConfig(users=40, items=30, interactions=400)))
    >>> stats["interactions"], stats["events_per_user"]["min"] >= 5
    (400, True)
    """
    config = data.truth.config
    per_user = data.truth.user_counts
    item_codes = pd.Index(data.items[ITEM_ID]).get_indexer(data.interactions[ITEM_ID])
    per_item = np.bincount(item_codes, minlength=config.items)
    ranked = np.sort(per_item)[::-1]
    top = max(1, round(0.01 * config.items))
    times = data.interactions[TIMESTAMP].to_numpy()

    def quantiles(x: np.ndarray) -> dict[str, float]:
        qs = {
            "min": 0.0,
            "p10": 0.1,
            "p25": 0.25,
            "p50": 0.5,
            "p75": 0.75,
            "p90": 0.9,
            "p99": 0.99,
            "max": 1.0,
        }
        out = {k: float(np.quantile(x, q)) for k, q in qs.items()}
        out["mean"] = float(x.mean())
        return out

    def iso(seconds: int) -> str:
        return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc).isoformat()

    return {
        "users": int(config.users),
        "items": int(config.items),
        "interactions": int(len(data.interactions)),
        "density": float(len(data.interactions) / (config.users * config.items)),
        "items_with_events": int((per_item > 0).sum()),
        "top1pct_items": int(top),
        "top1pct_item_share": float(ranked[:top].sum() / max(1, ranked.sum())),
        "events_per_user": quantiles(per_user),
        "events_per_item": quantiles(per_item),
        "first_event": iso(times.min()),
        "last_event": iso(times.max()),
        "images": int(config.images),
    }


def oracle_metrics(dataset: Dataset, truth: Planted, chunk_size: int = 1024) -> dict[str, Any]:
    """Metrics @10 of ranking by the planted scores on the default split (``ratio``,
    seed 2020, saved and reused like any split), test items against train + valid
    excluded, as ``fr.evaluate`` does: the ceiling beside every model's figure. The
    metrics are None when no user has a test item (every user too small).

    >>> import tempfile
    >>> data = synthesize(SynthConfig(users=60, items=40, interactions=900))
    >>> ds = Dataset.from_files(data.interactions, cache_dir=tempfile.mkdtemp())
    >>> oracle = oracle_metrics(ds, data.truth)
    >>> oracle["split"], oracle["n_users"], 0 < oracle["metrics"]["ndcg@10"] <= 1
    ('ratio', 60, True)
    """
    from fusionrank.columns import TEST, TRAIN, VALID
    from fusionrank.data.splits import split
    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    kind, seed = ORACLE_SPLIT
    parts = split(dataset, kind, seed=seed)
    users = pd.Index(_user_ids(truth.config.users)).get_indexer(parts.users.ids)
    items = pd.Index(_item_ids(truth.config.items)).get_indexer(parts.items.ids)
    if (users < 0).any() or (items < 0).any():
        raise DataError(f"dataset {dataset.name!r} has users or items the generator did not make")
    same_order = bool(np.array_equal(items, np.arange(truth.config.items)))

    def score(rows: np.ndarray) -> np.ndarray:  # (n, split items)
        out = truth.scores(users[rows])
        return out if same_order else out[:, items]

    truth_m, exclude = parts.matrix(TEST), parts.matrix(TRAIN, VALID)
    if truth_m.nnz == 0:  # every user too small to hold out a test item
        return {"split": kind, "seed": seed, "n_users": 0, "metrics": None}
    result = evaluate_ranking(score, truth_m, exclude, EvalConfig(ks=(10,), chunk_size=chunk_size))
    return {"split": kind, "seed": seed, "n_users": result.n_users, "metrics": result.metrics}


def _profile_of(config: SynthConfig, folder: Path) -> dict[str, Any]:
    """The dataset profile: text, title, genres, side features and, with images, the image
    column and its (absolute) root."""
    profile: dict[str, Any] = {
        "text": "{title}. {description}",
        "title": "title",
        "genres": "genres",
        "user_features": ["age", "gender", "country"],
        "user_buckets": {"age": list(AGE_BUCKETS)},
    }
    if config.images:
        profile["image"] = "image"
        profile["image_root"] = str((folder / IMAGES_DIR).resolve())
    return profile


def synth_dataset(
    name: str,
    config: SynthConfig | None = None,
    root: str | Path | None = None,
    *,
    progress: bool = False,
    **settings: Any,
) -> Dataset:
    """``fusionrank data synth`` as a function: generate a dataset (``config``, or
    :class:`SynthConfig` fields as keywords, which override ``config``'s), store it under
    ``<root>/<name>/`` through the own-data import, and write ``synth.json`` (settings,
    statistics, oracle metrics on the default split). A folder holding a dataset the
    generator did not make is refused, never overwritten.

    >>> import tempfile
    >>> ds = synth_dataset("toy", root=tempfile.mkdtemp(), users=60, items=40, interactions=900)
    >>> ds
    Dataset('toy', 900 interactions, 60 users, 40 items, with items, users)
    >>> sorted(synth_manifest("toy", ds.home.parent))
    ['generator', 'oracle', 'settings', 'statistics']
    """
    if config is None:
        config = build_settings(SynthConfig, settings, owner="data synth")
    elif settings:
        config = replace_settings(config, settings, owner="data synth")
    folder = (Path(root) if root is not None else default_root()) / name
    _check_folder(name, folder)
    manifest: dict[str, Any] = {"generator": __name__, "settings": dataclasses.asdict(config)}
    write_json(folder / SYNTH_FILE, manifest)  # marks the folder as the generator's
    data = synthesize(config, progress)
    manifest["statistics"] = synth_statistics(data)
    if config.images:
        _write_images(data.truth, folder / IMAGES_DIR)
    else:
        shutil.rmtree(folder / IMAGES_DIR, ignore_errors=True)
    truth, tables = data.truth, (data.interactions, data.items, data.users)
    del data  # the stored tables are read back; free the generated ones before the oracle
    dataset = import_dataset(
        name,
        *tables,
        root=folder.parent,
        columns={"timestamp": TIMESTAMP},
        profile=_profile_of(config, folder),
    )
    del tables
    manifest["oracle"] = oracle_metrics(dataset, truth)
    write_json(folder / SYNTH_FILE, manifest)
    return dataset


def synth_manifest(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The ``synth.json`` of the synthetic dataset ``name``: generator settings, statistics
    and oracle metrics (see :func:`synth_dataset` for an example)."""
    path = (Path(root) if root is not None else default_root()) / name / SYNTH_FILE
    if not path.exists():
        raise DataError(
            f"no synthetic dataset {name!r} here; make one with `fusionrank data synth`", file=path
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "oracle" not in manifest:
        raise DataError(
            "unfinished or damaged generator manifest; run `fusionrank data synth` again", file=path
        )
    return manifest


def _check_folder(name: str, folder: Path) -> None:
    """Refuse a shipped dataset's name and a folder holding another dataset."""
    from fusionrank.data.fetch import SHIPPED

    if name in SHIPPED or not name or Path(name).name != name or name.startswith("."):
        raise DataError(f"{name!r} cannot name a synthetic dataset; choose a plain name such as 'synth-1m'")
    theirs = (folder / DATASET_FILE).exists() or any(folder.glob("*.inter"))
    if theirs and not (folder / SYNTH_FILE).exists():
        raise DataError(
            "this folder holds a dataset the generator did not make; choose another --name or remove it",
            file=folder,
        )
