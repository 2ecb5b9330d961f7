"""Domain or surface? How a task is written, and how much of the domain effect it explains
(book, *Domain or surface?*; methods §12).

Tasks of one domain share more than their domain: the eight arithmetic tasks share one template,
the code tasks and two physics tasks open with "You will be given …", the Language tasks are the only
ones read as raw text. Attribution at the last prompt token on the answers' logit difference could
pick neurons that read such a frame or write such answers. This module

* describes each task's **surface** (:func:`describe_tasks`): its prompt frame (chat template or raw
  text, the fixed opening and closing words of its messages, a few-shot "Context: … Answer:" frame),
  its answer form and closed answer vocabulary, its prompt length and its task family;
* turns the descriptions into **pair predictors** (:func:`pair_predictors`): one [n, n] matrix per
  term, 1 where two tasks share the feature;
* fits pairwise overlap (or ablation drop) on same-domain plus the surface terms with permutation
  p-values that respect the dependence between pairs sharing a task (:func:`qap_regression`:
  Dekker's double semi-partialling, a multiple-regression QAP), and compares the domain coefficient
  with and without the surface terms (:func:`confound_model`);
* restricts the within/cross ratio to pairs that differ in frame, answer form and/or family
  (:func:`restricted_ratios`) and scores the study's clustering against frame labels as well as
  domains (:func:`domain_vs_frame_ari`).

Everything here is pure: task objects and matrices in, DataFrames out.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from . import stats
from .overlap import domain_of
from .tasks.frames import split_variant
from .tasks.schema import TaskData, assemble_message

#: Tasks written from one template with different parameters (operands, number format, the property
#: asked about, the judgement asked for). Task keys are the study's; the generated suites reuse them.
#: A task not listed is a family of its own.
FAMILIES: dict[str, str] = {
    **{f"{op}_{n}op_{form}": "arithmetic" for op in ("add_sub", "mul_div") for n in (2, 3)
       for form in ("symbolic", "verbal")},
    **{name: "code" for name in ("code_A", "code_B", "code_conditional", "code_list", "code_loop")},
    "logic_propositional_1": "propositional logic", "logic_propositional_symbolic": "propositional logic",
    "logic_syllogism_1": "syllogism", "logic_syllogism_symbolic": "syllogism",
    **{name: "physical outcome" for name in (
        "physics_brightness", "physics_buoyancy", "physics_elasticity", "physics_solubility", "physics_speed",
        "physics_stability", "physics_temperature")},
    **{name: "social judgement" for name in ("emotion_fewshot", "norm_appropriate", "norm_moral")},
    "primary_emotions": "how does X feel", "secondary_emotions": "how does X feel",
    **{name: "do you think that" for name in ("agent", "social_interactions", "social_relations")},
    **{name: "determiner–noun agreement" for name in (
        "det_noun_agreement_irregular", "det_noun_agreement_regular", "det_noun_agreement_with_adjective")},
}

#: Words of a fixed opening / closing: the first / last this many words of a task's messages.
FRAME_WORDS = 4
#: A task has a fixed opening (closing) when more than this share of its messages, and two at least,
#: start (end) with it.
FIXED_SHARE = 0.5
#: A task's answers form a closed vocabulary when they take at most this many distinct values.
CLOSED_VOCABULARY = 20

#: The pair predictors, in the order the models list them: the domain, then the surface terms.
DOMAIN_TERM = "same_domain"
SURFACE_TERMS: tuple[str, ...] = (
    "same_template", "same_opening", "same_closing", "both_fewshot", "same_answer_form",
    "answer_overlap", "same_family", "length_similarity",
)
TERM_NAMES: dict[str, str] = {
    "same_domain": "same domain",
    "same_template": "same template (chat or raw)",
    "same_opening": "same fixed opening",
    "same_closing": "same fixed closing",
    "both_fewshot": "both few-shot",
    "same_answer_form": "same answer form",
    "answer_overlap": "shared answer words (Jaccard)",
    "same_family": "same task family",
    "length_similarity": "similar prompt length",
    "same_content": "same content (the task's items)",
    "same_frame": "same frame",
}

_NUMBER_WORDS = set(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "and minus negative".split())


def answer_form(answer: str) -> str:
    """The form of one answer: ``number`` (digits, a list of numbers, or number words), ``symbols``
    (no word of two letters), ``word``, ``phrase`` (two words) or ``sentence`` (three or more)."""
    text = answer.strip()
    tokens = [token for token in re.split(r"[\s,\[\]'\"]+", text) if token]
    if tokens and all(re.fullmatch(r"[-+]?\d+(\.\d+)?", token) for token in tokens):
        return "number"
    if tokens and all(part in _NUMBER_WORDS for token in tokens for part in token.lower().split("-")):
        return "number"
    if not re.search(r"[A-Za-z]{2,}", text):
        return "symbols"
    words = len(text.split())
    return "word" if words == 1 else "phrase" if words == 2 else "sentence"


def _fixed(texts: list[str], take) -> str:
    """The most common ``take(text)`` when more than :data:`FIXED_SHARE` of ``texts`` (two at least)
    share it, else ""."""
    value, count = Counter(take(text) for text in texts).most_common(1)[0]
    return value if value and count > FIXED_SHARE * len(texts) and count >= 2 else ""


#: The frame of a task with none of the fixed features: the chat template around a free question.
PLAIN_CHAT = "chat, no fixed words"


def frame_label(template: str, fewshot: bool, opening: str, closing: str) -> str:
    """The frame a task is written in, the first that applies: ``raw text`` (no chat template),
    ``few-shot Context/Answer``, its fixed opening (``"You will be given …"``), its fixed closing
    (``"… no other words."``), else :data:`PLAIN_CHAT`. Tasks with the same label share a frame."""
    if template == "raw":
        return "raw text"
    if fewshot:
        return "few-shot Context/Answer"
    if opening:
        return f"{opening} …"
    if closing:
        return f"… {closing}"
    return PLAIN_CHAT


#: The columns of :func:`describe_tasks` (``task`` becomes the index).
DESCRIPTOR_COLUMNS = ("task", "domain", "template", "opening", "closing", "fewshot", "frame", "answer_form",
                      "answer_words", "vocabulary", "prompt_words", "family")


def describe_task(task: TaskData) -> dict:
    """The surface of one task, from its prompt config and its items' clean messages and answers.

    ``template``: ``raw`` (scored without the chat template: Language tasks) or ``chat``;
    ``opening`` / ``closing``: the first / last :data:`FRAME_WORDS` words shared by more than half the
    messages ("" when none is); ``fewshot``: the messages repeat an ``Answer:`` cue; ``frame``:
    :func:`frame_label` of these four; ``answer_form``: the most common
    :func:`answer_form` of the answers; ``answer_words``: mean words per answer; ``vocabulary``: the
    distinct answers joined by ``|`` when there are at most :data:`CLOSED_VOCABULARY` (a closed set,
    such as Yes/No), else ""; ``prompt_words``: mean words per message; ``family``: :data:`FAMILIES`.
    """
    if not task.items:
        raise ValueError(f"task {task.label!r} has no items to describe")
    messages = [assemble_message(task.config, item, "clean") for item in task.items]
    answers = [item[key] for item in task.items for key in ("clean_correct", "clean_incorrect")]
    template = "raw" if task.config.force_base_evaluation else "chat"
    opening = _fixed(messages, lambda text: " ".join(text.split()[:FRAME_WORDS]))
    closing = _fixed(messages, lambda text: " ".join(text.split()[-FRAME_WORDS:]))
    fewshot = sum(message.count("Answer:") >= 2 for message in messages) > FIXED_SHARE * len(messages)
    distinct = sorted({answer.strip() for answer in answers})
    return {
        "task": task.label, "domain": task.domain, "template": template, "opening": opening, "closing": closing,
        "fewshot": bool(fewshot),
        "frame": frame_label(template, bool(fewshot), opening, closing),
        "answer_form": Counter(answer_form(answer) for answer in answers).most_common(1)[0][0],
        "answer_words": float(np.mean([len(answer.split()) for answer in answers])),
        "vocabulary": "|".join(distinct) if len(distinct) <= CLOSED_VOCABULARY else "",
        "prompt_words": float(np.mean([len(message.split()) for message in messages])),
        "family": FAMILIES.get(split_variant(task.name)[0], split_variant(task.name)[0]),
    }


def describe_tasks(tasks: Mapping[str, TaskData] | Iterable[TaskData]) -> pd.DataFrame:
    """:func:`describe_task` of each task: one row per task, indexed by its ``domain/task`` label."""
    tasks = tasks.values() if isinstance(tasks, Mapping) else tasks
    rows = [describe_task(task) for task in tasks]
    return pd.DataFrame(rows, columns=DESCRIPTOR_COLUMNS).set_index("task")


def pair_predictors(descriptors: pd.DataFrame, labels: Iterable[str]) -> dict[str, np.ndarray]:
    """The pair predictors of the tasks ``labels`` (rows of ``descriptors``): ``{term: [n, n]}``.

    Same domain / template / answer form / family, and both few-shot: 1 or 0. Same opening (closing):
    1 when both tasks have a fixed opening (closing) and it is the same. ``answer_overlap``: the
    Jaccard index of two closed answer vocabularies, case-folded (0 when either is open). ``length_similarity``:
    −|ln(prompt words of i / prompt words of j)| (0 for equal lengths). Diagonals are whatever the
    rule gives; the models never read them.
    """
    labels = list(labels)
    missing = [label for label in labels if label not in descriptors.index]
    if missing:
        raise ValueError(f"no surface description of {missing[:5]}; describe every task of the matrix")
    rows = descriptors.loc[labels]

    def same(column: str, fixed_only: bool = False) -> np.ndarray:
        values = rows[column].astype(str).to_numpy()
        return _shared(values, values != "" if fixed_only else None)

    vocabularies = [set(v.casefold().split("|")) if v else set() for v in rows["vocabulary"].fillna("").astype(str)]
    overlap = np.array([[len(a & b) / len(a | b) if a and b else 0.0 for b in vocabularies] for a in vocabularies])
    fewshot = rows["fewshot"].astype(bool).to_numpy()
    length = np.log(rows["prompt_words"].to_numpy(dtype=float))
    return {
        "same_domain": same("domain"),
        "same_template": same("template"),
        "same_opening": same("opening", fixed_only=True),
        "same_closing": same("closing", fixed_only=True),
        "both_fewshot": _shared(np.ones(len(labels)), fewshot),
        "same_answer_form": same("answer_form"),
        "answer_overlap": overlap,
        "same_family": same("family"),
        "length_similarity": -np.abs(length[:, None] - length[None, :]),
    }


def _shared(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """[n, n] of 1.0 where two tasks have the same value (and, given ``where`` [n] booleans, both have
    it true), else 0.0."""
    equal = values[:, None] == values[None, :]
    if where is not None:
        equal &= where[:, None] & where[None, :]
    return equal.astype(float)


# --------------------------------------------------------------------------- regression with QAP p-values


def _pair_cells(values: np.ndarray, directed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the pairs a model reads: off-diagonal finite cells, each unordered
    pair once (upper triangle of the symmetrised matrix) unless ``directed``."""
    n = values.shape[0]
    if not directed:
        values = (values + values.T) / 2
    cells = ~np.eye(n, dtype=bool) if directed else np.triu(np.ones((n, n), dtype=bool), k=1)
    rows, columns = np.nonzero(cells & np.isfinite(values))
    return rows, columns, values[rows, columns]


def _orthonormal_basis(design: np.ndarray) -> np.ndarray:
    basis, _ = np.linalg.qr(design)
    return basis


def _estimable_terms(columns: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, str]]:
    """Terms kept in the model (in order) and, for the others, why not: a column constant over the
    pairs, or one the intercept and the earlier terms already span."""
    kept, dropped, design = [], {}, [np.ones(len(next(iter(columns.values()))))]
    for term, column in columns.items():
        if np.ptp(column) == 0:
            dropped[term] = "the same for every pair"
            continue
        trial = np.column_stack(design + [column])
        if np.linalg.matrix_rank(trial) < trial.shape[1]:
            dropped[term] = "determined by the terms before it"
            continue
        kept.append(term)
        design.append(column)
    return kept, dropped


def qap_regression(matrix: pd.DataFrame, predictors: Mapping[str, np.ndarray], *, directed: bool = False,
                   n_permutations: int = 10_000, seed: int = stats.STUDY_SEED) -> pd.DataFrame:
    """OLS of a task × task matrix on pair predictors, with multiple-regression QAP p-values.

    ``matrix`` [n, n]: overlap (symmetric: each unordered pair once, the mean of its two cells) or,
    with ``directed``, an ablation matrix (every ordered off-diagonal pair). NaN cells are left out.
    ``predictors``: ``{term: [n, n]}`` aligned with the matrix's rows.

    Pairs that share a task are not independent, so the p-value of each coefficient comes from
    permutations (Dekker, Krackhardt & Snijders 2007, double semi-partialling): the term's residual
    after regressing it on the other terms, as a task × task matrix, has its rows and columns permuted
    together by the same ``n_permutations`` task permutations (:func:`stats.permutation_indices`,
    ``seed``); the model is refitted with it in place of the term, and p is two-sided:
    (#{|t_null| ≥ |t|} + 1) / (n_permutations + 1). With the identity permutation the refit is the
    model itself (Frisch–Waugh–Lovell), so t is the ordinary OLS t.

    Returns one row per term: ``term``, ``coef``, ``se``, ``t`` (OLS), ``p`` (QAP), ``note`` (why a
    term was left out: constant or collinear; its numbers NaN). ``attrs``: ``r2``, ``n_pairs``,
    ``n_tasks``, ``n_permutations``.
    """
    values = matrix.to_numpy(dtype=float)
    n = values.shape[0]
    for term, predictor in predictors.items():
        if np.shape(predictor) != (n, n):
            raise ValueError(f"predictor {term!r} has shape {np.shape(predictor)}, the matrix ({n}, {n})")
    rows, columns, y = _pair_cells(values, directed)
    columns_of = {term: np.asarray(predictor, dtype=float)[rows, columns] for term, predictor in predictors.items()}
    kept, dropped = _estimable_terms(columns_of)
    design = np.column_stack([np.ones(len(y))] + [columns_of[term] for term in kept])
    records = {term: {"term": term, "coef": np.nan, "se": np.nan, "t": np.nan, "p": np.nan, "note": why}
               for term, why in dropped.items()}
    residual_df = len(y) - design.shape[1]
    permutations = stats.permutation_indices(n, n_permutations, seed)
    all_rows, all_columns = np.nonzero(~np.eye(n, dtype=bool))
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    r2 = 1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)
    for position, term in enumerate(kept, start=1):
        others = _orthonormal_basis(np.delete(design, position, axis=1))
        y_rest = y - others @ (others.T @ y)
        # The term's part not explained by the others, defined on every cell so that it can move.
        full_others = np.column_stack([np.ones(len(all_rows))] + [
            np.asarray(predictors[t], dtype=float)[all_rows, all_columns] for t in kept if t != term])
        full_term = np.asarray(predictors[term], dtype=float)[all_rows, all_columns]
        gamma, *_ = np.linalg.lstsq(full_others, full_term, rcond=None)
        residual = np.zeros((n, n))
        residual[all_rows, all_columns] = full_term - full_others @ gamma
        observed = _partial_t(residual[rows, columns][None, :], y_rest, others, residual_df)[0]
        null = np.concatenate([
            _partial_t(residual[block[:, rows], block[:, columns]], y_rest, others, residual_df)
            for block in np.array_split(permutations, max(1, len(permutations) // 1000))]) \
            if n_permutations else np.empty(0)
        coef, se, t = observed
        records[term] = {"term": term, "coef": coef, "se": se, "t": t,
                         "p": stats.permutation_p(np.abs(null[:, 2]), abs(t)) if n_permutations else np.nan,
                         "note": ""}
    table = pd.DataFrame([records[term] for term in predictors], columns=["term", "coef", "se", "t", "p", "note"])
    table.attrs.update(r2=float(r2), n_pairs=int(len(y)), n_tasks=int(n), n_permutations=int(n_permutations))
    return table


def _partial_t(term_columns: np.ndarray, y_rest: np.ndarray, others: np.ndarray, residual_df: int) -> np.ndarray:
    """``[P, 3]``: coefficient, standard error and t of a term column (each row of ``term_columns``
    [P, m]) in the model with the columns ``others`` spans, from the outcome's residual ``y_rest``."""
    rest = term_columns - (term_columns @ others) @ others.T
    spread = np.einsum("pm,pm->p", rest, rest)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = rest @ y_rest / spread
        rss = y_rest @ y_rest - coef ** 2 * spread
        se = np.sqrt(np.clip(rss, 0, None) / residual_df / spread)
        return np.column_stack([coef, se, coef / se])


def confound_model(matrix: pd.DataFrame, descriptors: pd.DataFrame, *, directed: bool = False,
                   n_permutations: int = 10_000, seed: int = stats.STUDY_SEED) -> pd.DataFrame:
    """The domain coefficient alone and beside the surface terms (:func:`qap_regression` twice).

    Returns the rows of both fits with a ``model`` column (``domain only``, ``domain + surface``) and a
    ``r2`` column; ``attrs`` as :func:`qap_regression`'s.
    """
    predictors = pair_predictors(descriptors, matrix.index)
    fits = []
    for model, terms in (("domain only", (DOMAIN_TERM,)), ("domain + surface", (DOMAIN_TERM,) + SURFACE_TERMS)):
        fit = qap_regression(matrix, {term: predictors[term] for term in terms}, directed=directed,
                             n_permutations=n_permutations, seed=seed)
        fits.append(fit.assign(model=model, r2=fit.attrs["r2"]))
    table = pd.concat(fits, ignore_index=True)[["model", "term", "coef", "se", "t", "p", "r2", "note"]]
    table.attrs.update({key: value for key, value in fits[-1].attrs.items() if key != "r2"})
    return table


def domain_effect(model_table: pd.DataFrame) -> dict:
    """The domain coefficient and its p without and with the surface terms, from :func:`confound_model`:
    ``{coef_alone, p_alone, coef_with_surface, p_with_surface, share_kept}`` (``share_kept``: the
    coefficient with the surface terms over the one without)."""
    rows = model_table[model_table.term == DOMAIN_TERM].set_index("model")
    alone, beside = rows.loc["domain only"], rows.loc["domain + surface"]
    return {"coef_alone": float(alone.coef), "p_alone": float(alone.p), "coef_with_surface": float(beside.coef),
            "p_with_surface": float(beside.p),
            "share_kept": float(beside.coef / alone.coef) if alone.coef else float("nan")}


# --------------------------------------------------------------------------- restricted ratios and ARI

#: Pair subsets of :func:`restricted_ratios`: name → (the surface features two tasks must NOT share,
#: those they must share). The last keeps chat-template pairs only, so that raw-text (Language) tasks,
#: which differ in template from every other task, do not fill the cross-domain side.
SUBSETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all pairs": ((), ()),
    "different frame": (("same_frame",), ()),
    "different answer form": (("same_answer_form",), ()),
    "different family": (("same_family",), ()),
    "different in all three": (("same_frame", "same_answer_form", "same_family"), ()),
    "different in all three, both chat": (("same_frame", "same_answer_form", "same_family"), ("both_chat",)),
}


def restricted_ratios(matrix: pd.DataFrame, descriptors: pd.DataFrame, *, n_permutations: int = 10_000,
                      seed: int = stats.STUDY_SEED) -> pd.DataFrame:
    """The within/cross test (:func:`stats.within_cross_permutation`) on the pairs of each
    :data:`SUBSETS` entry: the other cells set to NaN, so that both means and every permutation read
    only pairs that differ in frame, answer form and/or family (and, last, that both use the chat
    template); the domain labels are permuted, the surface stays with its task.

    Returns one row per subset: ``subset``, ``within_pairs``, ``cross_pairs`` (unordered pairs of each
    kind in the subset), ``within``, ``cross``, ``ratio``, ``delta``, ``p``, ``note``.
    """
    labels = list(matrix.index)
    frames = descriptors.loc[labels, "frame"].astype(str).to_numpy()
    predictors = pair_predictors(descriptors, labels)
    chat = descriptors.loc[labels, "template"].astype(str).to_numpy() == "chat"
    shared = {"same_frame": _shared(frames) > 0,
              "same_answer_form": predictors["same_answer_form"] > 0, "same_family": predictors["same_family"] > 0,
              "both_chat": _shared(np.ones(len(labels)), chat) > 0}
    same_domain = predictors["same_domain"] > 0
    upper = np.triu(np.ones(same_domain.shape, dtype=bool), k=1)
    rows = []
    for subset, (excluded, required) in SUBSETS.items():
        keep = np.ones(same_domain.shape, dtype=bool)
        for name in excluded:
            keep &= ~shared[name]
        for name in required:
            keep &= shared[name]
        restricted = matrix.where(keep)
        defined = keep & upper & np.isfinite(matrix.to_numpy(dtype=float))
        test = stats.within_cross_permutation(restricted, n_permutations=n_permutations, seed=seed)
        rows.append({"subset": subset, "within_pairs": int((defined & same_domain).sum()),
                     "cross_pairs": int((defined & ~same_domain).sum()),
                     **{key: test[key] for key in ("within", "cross", "ratio", "delta", "p", "note")}})
    return pd.DataFrame(rows)


def domain_vs_frame_ari(matrix: pd.DataFrame, descriptors: pd.DataFrame, *, knn: int = 5,
                        n_permutations: int = 10_000, seed: int = stats.STUDY_SEED) -> pd.DataFrame:
    """The study's clustering (one cluster per domain present, kNN graph) scored against the domain
    labels and against the frame labels, and against the task families, each with its permutation p
    (:func:`stats.ari_permutation`: the clustering fixed, the labels shuffled).

    Returns one row per labelling: ``labels``, ``n_groups``, ``ari``, ``p``, ``null_mean``,
    ``ari_of_domains`` (the ARI of the domains themselves against the labelling: what a clustering that
    recovered the domains exactly would score, since four clusters cannot match nine frames), ``note``
    (why a labelling with one group has no ARI).
    """
    labels = list(matrix.index)
    n_clusters = len({domain_of(label) for label in labels})
    knn = min(knn, max(len(labels) - 1, 1))
    rows = []
    for name, column in (("domain", "domain"), ("frame", "frame"), ("task family", "family")):
        groups = descriptors.loc[labels, column].astype(str)
        if groups.nunique() < 2:  # one group: every clustering agrees with it equally, ARI says nothing
            rows.append({"labels": name, "n_groups": 1, "ari": np.nan, "p": np.nan, "null_mean": np.nan,
                         "ari_of_domains": np.nan, "note": f"every task has the same {name}"})
            continue
        test = stats.ari_permutation(matrix, dict(zip(labels, groups)), n_permutations=n_permutations, seed=seed,
                                     knn=knn, n_clusters=n_clusters)
        rows.append({"labels": name, "n_groups": int(groups.nunique()), "ari": test["ari"], "p": test["p"],
                     "null_mean": test["null_mean"],
                     "ari_of_domains": float(adjusted_rand_score(descriptors.loc[labels, "domain"], groups)),
                     "note": ""})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the frame-swap design


def content_and_frame(label: str) -> tuple[str, str]:
    """``("domain/task", frame)`` of a ``domain/task~frame`` label; frame ``own`` for a task in its own frame."""
    task, frame = split_variant(label.split("/", 1)[1])
    return f"{domain_of(label)}/{task}", frame or "own"


def is_frame_swap(labels: Iterable[str]) -> bool:
    """Whether the tasks include framed variants (``domain/task~frame``)."""
    return any(content_and_frame(label)[1] != "own" for label in labels)


def frame_swap_test(matrix: pd.DataFrame, *, directed: bool = False, n_permutations: int = 10_000,
                    seed: int = stats.STUDY_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Does a matrix over framed variants follow the content or the frame?

    Each label ``domain/task~frame`` has a content (``domain/task``: its items) and a frame (a task in
    its own frame is frame ``own``). Returns ``(fit, cells)``: ``fit`` is :func:`qap_regression` on
    ``same_domain``, ``same_content`` and ``same_frame`` (a term the others determine is left out with
    its reason: with one content per domain, same content is same domain); when a domain has several
    contents, the same-domain p is instead the within/cross permutation test over the contents (the
    content × content matrix of mean variant-pair values, one-sided as in §6): variants of one content
    share their items, so permuting them one by one would treat near-copies as independent tasks;
    ``cells`` the mean over the pairs of each kind of the 2 × 2 design: ``same content, other frame``, ``other content, same
    frame``, ``other content, other frame`` (within ``domain``/``cross-domain`` for the last), with
    their pair counts (unordered pairs, or ordered with ``directed``).
    """
    labels = list(matrix.index)
    contents, frames = (np.array(parts) for parts in zip(*map(content_and_frame, labels)))
    domains = np.array([domain_of(label) for label in labels])
    predictors = {"same_domain": _shared(domains), "same_content": _shared(contents), "same_frame": _shared(frames)}
    fit = qap_regression(matrix, predictors, directed=directed, n_permutations=n_permutations, seed=seed)
    values = matrix.to_numpy(dtype=float)
    if not directed:
        values = (values + values.T) / 2
    # The variants of one content are near-copies, not independent tasks: the domain term's p permutes
    # the domain labels over the contents (each cell the mean over their variants' pairs), not over variants.
    names = list(dict.fromkeys(contents))
    notes = fit.set_index("term").note
    if len(names) < len(contents) and notes.get("same_domain") == "" and notes.get("same_content") == "":
        by_content = pd.DataFrame(
            [[np.nanmean(values[np.ix_(contents == a, contents == b)]) if a != b else np.nan for b in names]
             for a in names], index=names, columns=names)
        test = stats.within_cross_permutation(by_content, n_permutations=n_permutations, seed=seed)
        row = fit.index[fit.term == "same_domain"][0]
        fit.loc[row, "p"] = test["p"]
        fit.loc[row, "note"] = "p: domain labels permuted over the contents, not the variants"
    cells_mask = (~np.eye(len(labels), dtype=bool) if directed else np.triu(np.ones_like(values, dtype=bool), k=1)) \
        & np.isfinite(values)
    content, frame, domain = (predictors[name] > 0 for name in ("same_content", "same_frame", "same_domain"))
    kinds = {"same content, other frame": content & ~frame, "other content, same frame": ~content & frame,
             "other content, other frame (same domain)": ~content & ~frame & domain,
             "other content, other frame (other domain)": ~content & ~frame & ~domain}
    cells = pd.DataFrame([{"pairs": kind, "n_pairs": int((mask & cells_mask).sum()),
                           "mean": float(values[mask & cells_mask].mean()) if (mask & cells_mask).any() else np.nan}
                          for kind, mask in kinds.items()])
    return fit, cells
