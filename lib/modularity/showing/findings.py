"""What a run found, in words chosen by rules on its numbers.

Every sentence a page states as a conclusion comes from one of these functions, so a rerun for
another model gets sentences that follow its own numbers:

* a test is *not computed* when its statistic is undefined (``p`` NaN: too few tasks, the rule of
  :func:`modularity.science.stats.untestable_reason`), never reported as a number;
* a difference is *beyond chance* only when its permutation ``p`` is below :data:`ALPHA`;
* a ratio whose denominator is near zero (at most :data:`NEAR_ZERO`) is named as such: it can be
  large without the numerator being large;
* clustering *recovers* the domains only when ARI = 1; otherwise it agrees with them beyond chance
  (``p`` < :data:`ALPHA`) or not, and with two domains the reader is told how little that is;
* p-values are shown in one style (:func:`format_p`) and never averaged.

:func:`run_numbers` reads the headline numbers of one run from its results folder;
:func:`run_sentences` turns them into the run's findings.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..running.runner import CODE_CHANGED, CURRENT, NOT_RECORDED, TEMPLATE_CHANGED
from ..science.localizer import ALPHA
from ..science.matrix_csv import read_matrix_csv
from ..science.overlap import resolve_domains
from ..science.stats import untestable_reason
from ..science.surface import domain_effect
from ..science.tasks.schema import DOMAIN_NAMES, DOMAINS

__all__ = ["lesion_effect_sentence", "dissociation_sentence", "MIN_KEYED", "ALPHA", "NEAR_ZERO", "families_sentences", "format_p", "beyond_chance", "ratio_sentence", "ari_sentence", "run_numbers",
           "run_sentences", "passing_by_domain", "MEASURES", "join", "across_runs", "untested_reason",
           "currency_sentence", "STATE_ANSWERS"]

#: A cross-domain mean at or below this (an overlap fraction or an accuracy drop) makes a
#: within/cross ratio fragile: a few shared neurons or one flipped item move it by a factor.
NEAR_ZERO = 0.01
#: The three headline measures, as stage 6 names them (``beside_study.csv``).
MEASURES = ("overlap ratio", "ablation ratio", "ARI")


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def untested_reason(matrix: pd.DataFrame | None) -> str | None:
    """Why a run's within/cross tests are not computed (None when they are): no matrix at all when
    fewer than two tasks were attributed, else :func:`modularity.science.stats.untestable_reason`."""
    if matrix is None or matrix.empty:
        return "fewer than two tasks were attributed"
    return untestable_reason(matrix)


def format_p(p, n_permutations: int | None = None) -> str:
    """``p = 0.044``, ``p < 0.0001`` at the resolution of ``n_permutations`` draws (the smallest
    permutation p is 1/(P + 1)), or ``p not computed``."""
    if not _finite(p):
        return "p not computed"
    if n_permutations and p <= 1.0 / (n_permutations + 1) + 1e-12:
        return f"p < {1.0 / n_permutations:.1g}"
    return f"p = {p:.2g}"  # two significant digits; Python writes 1e-04 and below in exponent form


def beyond_chance(p) -> bool:
    """Whether a permutation ``p`` says the observed difference is beyond chance: p < :data:`ALPHA`."""
    return _finite(p) and p < ALPHA


def ratio_sentence(what: str, within, cross, ratio, p, n_permutations: int | None = None,
                   reason: str | None = None) -> str:
    """One sentence on a within/cross comparison (``what``: "overlap" or "ablation drop").

    ``reason`` says why the test was not computed (when ``p`` is NaN); a denominator at or below
    :data:`NEAR_ZERO` is named.
    """
    if not _finite(p) or not _finite(ratio):
        return f"The within/cross {what} test is not computed: {reason or 'its statistic is undefined'}."
    shown = f"Within-domain {what} is {ratio:.3g} times cross-domain {what} ({format_p(p, n_permutations)})"
    if beyond_chance(p):
        verdict = "beyond what shuffled domain labels give"
    else:
        verdict = "not distinguishable from shuffled domain labels"
    sentence = f"{shown}: {verdict}."
    if _finite(cross) and cross <= NEAR_ZERO:
        sentence += (f" The cross-domain mean is only {cross:.2g}, so the ratio is large partly because its "
                     f"denominator is near zero; the within-domain mean is {within:.2g}.")
    return sentence


def ari_sentence(ari, p, n_domains: int, n_permutations: int | None = None, reason: str | None = None) -> str:
    """One sentence on how the study's clustering of the overlap matrix matches the domains."""
    if not _finite(p) or not _finite(ari):
        return f"The clustering's ARI is not computed: {reason or 'its statistic is undefined'}."
    shown = f"ARI = {ari:.2f}, {format_p(p, n_permutations)}"
    if not beyond_chance(p):
        sentence = f"Clustering the tasks by their overlap does not match the domains beyond chance ({shown})."
    elif ari >= 1.0 - 1e-12:
        sentence = f"Clustering the tasks by their overlap recovers the domains exactly ({shown})."
    else:
        sentence = (f"Clustering the tasks by their overlap agrees with the domains beyond chance ({shown}), "
                    "but not exactly: some domains share clusters.")
    if n_domains == 2:
        sentence += " With only two domains, the clustering has a single split to get right."
    return sentence


# --------------------------------------------------------------------------- one run's numbers


def passing_by_domain(eval_summary: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """``{domain: (passing, tasks)}`` in the study's order, from stage 1's ``eval_summary.csv``."""
    counts = eval_summary.groupby("domain").passes.agg(["sum", "count"])
    return {d: (int(counts.loc[d, "sum"]), int(counts.loc[d, "count"])) for d in DOMAINS if d in counts.index}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_numbers(run_dir: Path) -> dict:
    """The headline numbers of the run in ``run_dir`` (``book/results/<run>/<profile>``).

    ``passing``: :func:`passing_by_domain`; ``measures``: per measure of :data:`MEASURES` its
    value, p and n_tasks (stage 6's ``beside_study.csv``, NaN where not computed);
    ``overlap`` / ``ablation``: within, cross (stage 4's summary; stage 5's ``across``);
    ``n_domains``: domains among the attributed tasks; ``reason``: why the tests were not
    computed (None when they were); ``localizer``: the localizer sets' overall overlap and
    ablation tests (within, across, p), when stage 7 ran; ``surface``: the same-domain coefficient
    without and with the surface terms (stage 4's ``surface_model.csv``,
    :func:`modularity.science.surface.domain_effect`), None before stage 4 wrote it; ``n_permutations``.
    """
    run_dir = Path(run_dir)
    manifest = _json(run_dir / "manifest.json")
    params = manifest.get("params", {})
    summary = pd.read_csv(run_dir / "eval_summary.csv")
    placed = pd.read_csv(run_dir / "beside_study.csv") if (run_dir / "beside_study.csv").exists() else pd.DataFrame()
    mine = placed[placed.source == "run"].set_index("measure") if len(placed) else pd.DataFrame()
    measures = {m: {"value": float(mine.value.get(m, math.nan)) if len(mine) else math.nan,
                    "p": float(mine.p.get(m, math.nan)) if len(mine) else math.nan,
                    "n_tasks": int(mine.n_tasks.get(m, 0)) if len(mine) else 0} for m in MEASURES}
    main = run_dir / f"overlap_{params.get('main_pct', 0.1):g}.csv"
    matrix = read_matrix_csv(main) if main.exists() else None
    unfinished = [stage for stage in ("03_overlap", "04_ari_permutation") if stage not in manifest.get("stages", {})]
    if unfinished:
        reason = f"stage {unfinished[0]} has not run for this run"
    else:
        reason = untested_reason(matrix)
    stats_summary = _json(run_dir / "stats_summary.json").get("overlap") or {}
    ablation = _json(run_dir / "ablation_summary.json").get("summary", {}).get("drop", {})
    localizer = _json(run_dir / "localizer_summary.json")
    surface_model = run_dir / "surface_model.csv"
    model_table = pd.read_csv(surface_model) if surface_model.exists() and surface_model.stat().st_size > 1 else None
    return {
        "run": f"{run_dir.parent.name} ({run_dir.name})", "model": params.get("model", run_dir.parent.name),
        "profile": run_dir.name, "n_permutations": params.get("n_permutations"),
        "passing": passing_by_domain(summary), "measures": measures,
        "overlap": {"within": stats_summary.get("overlap_within", math.nan),
                    "cross": stats_summary.get("overlap_cross", math.nan)},
        "ablation": {"within": ablation.get("within", math.nan), "cross": ablation.get("across", math.nan)},
        "n_domains": 0 if matrix is None else len(set(resolve_domains(matrix))),
        "reason": reason,
        "localizer": {kind: (localizer.get(kind) or {}).get("overall") for kind in ("overlap", "ablation")},
        "surface": domain_effect(model_table) if model_table is not None and len(model_table) else None,
        "lesions": _lesions(run_dir),
    }


def _lesions(run_dir: Path) -> list[dict] | None:
    """Stage 9's dissociation tests in the mode its page shows, one per (selection, domain); None
    before stage 9 ran."""
    path, summary = run_dir / "lesion_dissociation.csv", _json(run_dir / "lesion_summary.json")
    if not path.exists() or path.stat().st_size <= 1:
        return None if not summary else []
    table = pd.read_csv(path)
    return table[table["mode"] == summary.get("shown_mode", "mean")].to_dict("records")


def run_sentences(numbers: dict) -> list[str]:
    """The findings of one run (:func:`run_numbers`), one sentence per finding, in reading order."""
    passing = numbers["passing"]
    n_passing = sum(p for p, _ in passing.values())
    shares = ", ".join(f"{DOMAIN_NAMES.get(d, d)} {p} of {n}" for d, (p, n) in passing.items())
    sentences = [f"{n_passing} of {sum(n for _, n in passing.values())} tasks pass the 60% both-correct "
                 f"filter ({shares})."]
    empty = [DOMAIN_NAMES.get(d, d) for d, (p, _) in passing.items() if p < 2]
    if empty:
        sentences.append(f"{join(empty)} {'has' if len(empty) == 1 else 'have'} fewer than two passing "
                         "tasks, so no within-domain pair exists there: this run says nothing about "
                         f"{'that domain' if len(empty) == 1 else 'those domains'}.")
    measures, n, reason = numbers["measures"], numbers["n_permutations"], numbers["reason"]
    if reason is not None:  # one reason for the three tests, said once
        sentences.append(f"None of the three tests (overlap, ablation, clustering) is computed: {reason}.")
        return sentences + _localizer_sentences(numbers)
    sentences.append(ratio_sentence("overlap", numbers["overlap"]["within"], numbers["overlap"]["cross"],
                                    measures["overlap ratio"]["value"], measures["overlap ratio"]["p"], n, reason))
    sentences.append(ratio_sentence("ablation drop", numbers["ablation"]["within"], numbers["ablation"]["cross"],
                                    measures["ablation ratio"]["value"], measures["ablation ratio"]["p"], n, reason))
    sentences.append(ari_sentence(measures["ARI"]["value"], measures["ARI"]["p"], numbers["n_domains"], n, reason))
    if numbers.get("surface"):
        sentences.append(surface_sentence("Against how its tasks are written", numbers["surface"], n))
    return sentences + _localizer_sentences(numbers) + [dissociation_sentence(row, n) for row in numbers.get("lesions") or []]


def _localizer_sentences(numbers: dict) -> list[str]:
    sentences = []
    localizer = numbers.get("localizer") or {}
    if localizer.get("overlap"):
        overlap, ablation = localizer["overlap"], localizer.get("ablation") or {}
        found = [what for what, test in (("overlap more with their own domain's attribution sets than with other "
                                          "domains'", overlap),
                                         ("hurt their own domain's tasks more than other domains' when ablated",
                                          ablation))
                 if beyond_chance(test.get("p"))]
        sentences.append(f"The localizer's units (stage 7) {' and '.join(found)}, beyond chance." if found else
                         "The localizer's units (stage 7) neither overlap more with their own domain's attribution "
                         "sets nor hurt their own domain's tasks more when ablated, beyond chance.")
    return sentences


def join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def across_runs(numbers: dict[str, dict]) -> list[str]:
    """What the runs show together (``{run: run_numbers(...)}``): how many of the runs whose tests
    were computed show each measure beyond chance, and the domains no run can speak to (fewer
    than two passing tasks in every run) or that every run passes less than half of."""
    computed = {run: n for run, n in numbers.items() if n["reason"] is None}
    sentences = []
    if not computed:
        sentences.append("The run has too few tasks for the within/cross tests." if len(numbers) == 1 else
                         f"None of the {len(numbers)} runs has enough tasks for the within/cross tests.")
    else:
        counts = {measure: sum(beyond_chance(n["measures"][measure]["p"]) for n in computed.values())
                  for measure in MEASURES}
        sentences.append(
            f"The tests could be computed for {len(computed)} of the {len(numbers)} runs; among them the overlap ratio "
            f"is beyond chance in {counts['overlap ratio']}, the ablation ratio in {counts['ablation ratio']} and the "
            f"clustering's ARI in {counts['ARI']}.")
    domains = list(dict.fromkeys(d for n in numbers.values() for d in n["passing"]))
    silent = [d for d in domains if all(n["passing"].get(d, (0, 0))[0] < 2 for n in numbers.values())]
    weak = [d for d in domains if d not in silent and all(p < t / 2 for p, t in
                                                            (n["passing"].get(d, (0, 1)) for n in numbers.values()))]
    if silent:
        sentences.append(f"No run passes two tasks of {join([DOMAIN_NAMES.get(d, d) for d in silent])}: "
                         "these runs cannot say whether its neurons form a module.")
    if weak:
        sentences.append(f"Every run passes fewer than half of the {join([DOMAIN_NAMES.get(d, d) for d in weak])} "
                         f"tasks, so {'that domain is' if len(weak) == 1 else 'those domains are'} represented by the "
                         "few of its tasks these models can do.")
    return sentences


#: A stage's state (:func:`modularity.running.runner.stage_states`) as a table cell answering
#: "made by this build's code?".
STATE_ANSWERS = {CURRENT: "yes", CODE_CHANGED: "no: the code of its tables changed",
                 TEMPLATE_CHANGED: "its tables' code yes, its page template no", NOT_RECORDED: "not recorded"}


def currency_sentence(states: dict[str, str], titles: dict[str, str]) -> str:
    """Whether a run's pages still hold at the code they are read with: ``states`` per stage as
    :func:`modularity.running.runner.stage_states` judges them (``current``, ``code changed since``,
    ``page template changed since``, ``not recorded``), ``titles`` how to name each stage."""
    if not states:
        return "No stage of this run has finished."
    by_state: dict[str, list[str]] = {}
    for stage, state in states.items():
        by_state.setdefault(state, []).append(titles.get(stage, stage))
    if set(by_state) == {CURRENT}:
        return ("Every stage of this run was made by the code and page templates of this build: its tables "
                "and pages are what rerunning it would give, up to float rounding.")
    sentences = []
    if by_state.get(CURRENT):
        sentences.append(f"{join(by_state['current']).capitalize()} {_be(by_state['current'])} made by the code "
                         "and page templates of this build.")
    if by_state.get(CODE_CHANGED):
        stages = by_state[CODE_CHANGED]
        sentences.append(f"The code behind the tables of {join(stages)} has changed since {_pronoun(stages)} ran: "
                         f"rerun {_pronoun(stages, 'them')} to check that {_pronoun(stages, 'their')} tables still "
                         "hold.")
    if by_state.get(TEMPLATE_CHANGED):
        stages = by_state[TEMPLATE_CHANGED]
        sentences.append(f"The tables of {join(stages)} are those of the current code, but "
                         f"{_pronoun(stages, 'their')} page {'template has' if len(stages) == 1 else 'templates have'} "
                         "changed since: the words and displays may differ from a rerun's.")
    if by_state.get(NOT_RECORDED):
        stages = by_state[NOT_RECORDED]
        sentences.append(f"{join(stages).capitalize()} ran before runs recorded the code that made them, so "
                         f"whether {_pronoun(stages, 'their')} tables still hold is not known without a rerun.")
    return " ".join(sentences)


def _be(items: list) -> str:
    return "was" if len(items) == 1 else "were"


def _pronoun(items: list, form: str = "it") -> str:
    one = {"it": "it", "them": "it", "their": "its"}
    many = {"it": "they", "them": "them", "their": "their"}
    return (one if len(items) == 1 else many)[form]


def families_sentences(checked: pd.DataFrame, allowed_gap: float, r_floor: float) -> list[str]:
    """What the architecture check found, in words: how many families loaded, how well attribution
    predicted exact patching (the smallest r, and which families fell below ``r_floor``), and whether
    the nnsight backend and an offloaded model gave the hook backend's numbers within ``allowed_gap``.

    ``checked``: :func:`modularity.running.family_check.check_families`'s table."""
    ok = checked[checked.error == ""]
    failed = list(checked.model_type[checked.error != ""])
    words = [f"{len(ok)} of {len(checked)} architectures loaded with their sites found by structure"
             + (f"; {join(failed)} failed (the table says why)." if failed else ".")]
    if len(ok):
        low = ok[ok.attribution_r < r_floor]
        worst = ok.loc[ok.attribution_r.idxmin()]
        words.append(f"Attribution predicted exact single-neuron patching with r ≥ {worst.attribution_r:.3f} "
                     f"(lowest: {worst.model_type})"
                     + (f"; below {r_floor:g} for {join(list(low.model_type))}." if len(low) else
                        f", at or above {r_floor:g} for every one."))
        far = ok[(ok.nnsight_gap > allowed_gap) | (ok.offload_gap > allowed_gap)]
        words.append("The nnsight backend and a model with half its blocks on disk gave the hook backend's numbers "
                     + (f"to float rounding for every architecture but {join(list(far.model_type))}." if len(far) else
                        "to float rounding for every architecture."))
    return words


# --------------------------------------------------------------------------- domain or surface (methods §12)


def surface_sentence(name: str, effect: Mapping, n_permutations: int | None = None) -> str:
    """One sentence on how much of a matrix's domain effect survives the surface terms, from
    :func:`modularity.science.surface.domain_effect` (``name``: whose matrix)."""
    alone, beside = effect.get("coef_alone"), effect.get("coef_with_surface")
    p_alone, p_beside = effect.get("p_alone"), effect.get("p_with_surface")
    if not _finite(p_alone) or not _finite(alone):
        return f"{name}: the same-domain coefficient is not computed."
    if not beyond_chance(p_alone) or alone <= 0:
        return (f"{name}: same-domain pairs do not overlap more than other pairs beyond chance even before the "
                f"surface is considered (coefficient {alone:.3g}, {format_p(p_alone, n_permutations)}).")
    kept = beside / alone
    if _finite(p_beside) and beyond_chance(p_beside) and beside > 0:
        if kept >= 0.5:
            return (f"{name}: the domain effect survives the surface terms: the same-domain coefficient goes from "
                    f"{alone:.3g} to {beside:.3g} ({kept:.0%} of it kept), still beyond chance "
                    f"({format_p(p_beside, n_permutations)}).")
        return (f"{name}: the surface terms absorb most of the same-domain coefficient ({1 - kept:.0%} of it: from "
                f"{alone:.3g} to {beside:.3g}); the rest is still beyond chance ({format_p(p_beside, n_permutations)}).")
    return (f"{name}: beside the surface terms the domain effect is no longer distinguishable from chance: the "
            f"same-domain coefficient goes from {alone:.3g} to {beside:.3g} ({kept:.0%} of it kept, "
            f"{format_p(p_beside, n_permutations)}).")


def restricted_ratio_sentence(row: Mapping, n_permutations: int | None = None) -> str:
    """One sentence on the within/cross ratio among the pairs of one subset of
    :func:`modularity.science.surface.restricted_ratios` (a row of its table)."""
    subset = {"different frame": "pairs written in different frames",
              "different answer form": "pairs with different answer forms",
              "different family": "pairs from different task families",
              "different in all three": "pairs that differ in frame, answer form and family"}.get(
        row["subset"], row["subset"])
    if not _finite(row.get("p")) or not _finite(row.get("ratio")):
        kinds = [what for what, n in (("same-domain", row.get("within_pairs")), ("cross-domain", row.get("cross_pairs")))
                 if not n]
        return (f"Among {subset} there is no {' and no '.join(kinds) or 'usable'} pair, so the ratio is not "
                "computed there.")
    verdict = "beyond chance" if beyond_chance(row["p"]) else "not distinguishable from shuffled domain labels"
    return (f"Among {subset} ({row['within_pairs']} same-domain, {row['cross_pairs']} cross-domain), within-domain "
            f"overlap is {row['ratio']:.3g} times cross-domain ({format_p(row['p'], n_permutations)}): {verdict}.")


def frame_swap_sentence(what: str, fit: pd.DataFrame, cells: pd.DataFrame, n_permutations: int | None = None) -> str:
    """Sentences on whether ``what`` (e.g. "Overlap") follows the content or the frame, from
    :func:`modularity.science.surface.frame_swap_test`'s ``(fit, cells)``: the content is a task's items
    (the same-content term, or same domain where each domain has one task), and when both are
    estimable a second sentence says what the domain adds beyond a task's own items."""
    terms = fit.set_index("term")
    both = _finite(terms.p.get("same_content")) and _finite(terms.p.get("same_domain"))
    content = "same_content" if _finite(terms.p.get("same_content")) else "same_domain"
    p_content, p_frame = terms.p.get(content), terms.p.get("same_frame")
    coef_content, coef_frame = terms.coef.get(content), terms.coef.get("same_frame")
    follows_content = beyond_chance(p_content) and coef_content > 0
    follows_frame = beyond_chance(p_frame) and coef_frame > 0
    verdict = ("follows both the content and the frame" if follows_content and follows_frame else
               "follows the content, not the frame" if follows_content else
               "follows the frame, not the content" if follows_frame else
               "follows neither the content nor the frame beyond chance")
    means = cells.set_index("pairs")["mean"]
    sentence = (f"{what} {verdict}: same content in another frame "
                f"{means.get('same content, other frame', math.nan):.3g}, another content in the same frame "
                f"{means.get('other content, same frame', math.nan):.3g} (content coefficient {coef_content:.3g}, "
                f"{format_p(p_content, n_permutations)}; frame coefficient {coef_frame:.3g}, "
                f"{format_p(p_frame, n_permutations)}).")
    if both:
        coef_domain, p_domain = terms.coef.get("same_domain"), terms.p.get("same_domain")
        shares = beyond_chance(p_domain) and coef_domain > 0
        sentence += (f" Beyond a task's own items, two different tasks of one domain "
                     f"{'share more' if shares else 'do not share more'} than two of different domains"
                     f"{'' if shares else ' beyond chance'} (same-domain coefficient {coef_domain:.3g}, "
                     f"{format_p(p_domain, n_permutations)}).")
    return sentence


def study_surface_sentence(effects: Mapping[str, Mapping], what: str = "overlap",
                           n_permutations: int | None = None) -> str:
    """One sentence on the study's models together: for how many the domain effect on ``what`` stays
    beyond chance beside the surface terms, and the share of the coefficient kept (``effects``:
    ``{model: surface.domain_effect(...)}``)."""
    kept = [e["share_kept"] for e in effects.values() if _finite(e.get("share_kept"))]
    survive = [name for name, e in effects.items() if beyond_chance(e.get("p_with_surface"))
               and _finite(e.get("coef_with_surface")) and e["coef_with_surface"] > 0]
    lost = [name for name in effects if name not in survive]
    if not kept:
        return f"The same-domain coefficient of the study's {what} is not computed."
    share = f"{min(kept):.0%}" if min(kept) == max(kept) else f"{min(kept):.0%}–{max(kept):.0%}"
    sentence = (f"Beside the surface terms, the same-domain coefficient of the study's {what} keeps {share} of its "
                f"size, and stays beyond chance for {len(survive)} of the {len(effects)} matrices")
    return sentence + (f" (not for {join(lost)})." if lost and survive else ".")


# --------------------------------------------------------------------------- lesions (stage 9)


#: Fewer keyed prompts than this cannot give a sign-flip p below :data:`ALPHA` (2⁻⁴ > 0.05).
MIN_KEYED = 5


def lesion_effect_sentence(domain: str, selected: Mapping, random: Mapping, n_permutations: int | None = None) -> str:
    """What silencing one domain's units did to the texts, beside its random twin (units of the same
    layers). "Less fluent" only where ``fluency_p`` (one-sided, over prompts) is below :data:`ALPHA`.

    ``selected`` / ``random``: rows of stage 9's measures (``n_neurons``, ``changed``, ``fluency``,
    ``key_kept``, ``n_keyed``; ``fluency_p`` on the selected row)."""
    name = DOMAIN_NAMES.get(domain, domain)
    p = selected.get("fluency_p")
    verdict = ("less fluent than" if beyond_chance(p) else "not distinguishable in fluency from")
    sentence = (f"Silencing the {int(selected['n_neurons']):,} {name} units changes {selected['changed']:.0%} of the "
                f"texts (its random twin: {random['changed']:.0%}); their texts are {verdict} the twin's "
                f"({selected['fluency']:.2f} against {random['fluency']:.2f} nats per token under the intact model, "
                f"{format_p(p, n_permutations)})")
    if _finite(selected.get("key_kept")) and selected.get("n_keyed", 0):
        sentence += (f"; of the {int(selected['n_keyed'])} prompts, of every domain, whose key the intact model "
                     f"states, {selected['key_kept']:.0%} keep it (twin: {random['key_kept']:.0%})")
    return sentence + "."


def dissociation_sentence(row: Mapping, n_permutations: int | None = None) -> str:
    """The double-dissociation test of stage 9 between the Language lesion and domain D's
    (:func:`modularity.science.stats.dissociation_test`), in words chosen by its numbers. A difference
    is claimed only where its own term is positive at p < :data:`ALPHA`: the Language lesion costing
    more fluency than D's (``form``, ``p_form``), D's lesion costing more of D's keys (``content``,
    ``p_content``); "a double dissociation" only when both are. The key comparison is untestable with
    fewer than :data:`MIN_KEYED` keyed prompts (no p could fall below α), and a negative term is said
    to go the other way. Each lesion is compared with its own random twin (one draw)."""
    name = DOMAIN_NAMES.get(row["domain"], row["domain"])
    head = f"{str(row['selection']).capitalize()} sets, {row['mode']} values, Language against {name}: "
    if not _finite(row.get("statistic")):
        return head + "not tested (no prompt measured both lesions)."
    p_form, p_content = format_p(row.get("p_form"), n_permutations), format_p(row.get("p_content"), n_permutations)
    fluency_shown = beyond_chance(row.get("p_form")) and row["form"] > 0
    if fluency_shown:
        fluency = f"silencing the Language units costs more fluency than silencing the {name} units ({p_form})"
    elif row["form"] < 0:
        fluency = f"the fluency difference goes the other way (the {name} lesion costs more; {p_form})"
    else:
        fluency = f"no fluency difference between the two lesions beyond their twins ({p_form})"
    n_keyed = int(row.get("n_content") or 0)
    if n_keyed < MIN_KEYED or not _finite(row.get("content")):
        keys = (f"the {name} answers cannot be compared: the intact model states the key in "
                f"{n_keyed if n_keyed else 'none'} of the {name} prompts" + (
                    f", and no p from {n_keyed} prompt{'s' if n_keyed != 1 else ''} can fall below {ALPHA}"
                    if n_keyed else ""))
        return head + f"{fluency}; {keys}."
    keyed = f"{n_keyed} keyed prompts"
    keys_shown = beyond_chance(row.get("p_content")) and row["content"] > 0
    if keys_shown:
        keys = f"silencing the {name} units loses more of the {name} keys than silencing the Language units ({p_content}, {keyed})"
    elif row["content"] < 0:
        keys = f"the {name} keys go the other way (the Language lesion loses more of them; {p_content}, {keyed})"
    else:
        keys = f"the {name} lesion does not lose more of the {name} keys beyond chance ({p_content}, {keyed})"
    return head + ("a double dissociation: " if fluency_shown and keys_shown else "") + f"{fluency}; {keys}."
