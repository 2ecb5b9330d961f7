# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The run at a glance
#
# One model, one task profile, up to eight stages. This page gathers what the run found (the same words,
# chosen by the same rules, as the chapter *What the runs found*), the numbers those words are made
# of, and which code made each stage, with a link to each stage's page.

# %% tags=["parameters"]
run = "smollm2-135m-instruct/small"  # a folder under book/results/: <run_name>/<profile>

# %% tags=["remove-input"]
import json

import pandas as pd
from IPython.display import HTML, Markdown, display

from modularity.base import files
from modularity.running.runner import stage_states
from modularity.science.tasks import DOMAIN_NAMES
from modularity.showing import findings
from modularity.stages import registry

run_dir = files.results_root() / run
assert (run_dir / "manifest.json").exists(), f"run: no manifest.json in {run_dir}; run `modularity run` first"
manifest = json.loads((run_dir / "manifest.json").read_text())
params = manifest["params"]
numbers = findings.run_numbers(run_dir)
items = (f"the study's own task files ({params['data_dir']}), {params['n_items']} items per task at most"
         if params.get("data_dir") else f"the generated {params['profile']} suite, {params['n_items']} items per task")
display(Markdown(f"**Model** `{params['model']}` ({params['dtype']}, {params['device']}); **items** {items}, "
                 f"seed {params['seed']}; **permutations** {params['n_permutations']:,} per test."))

# %% [markdown]
# ## What it found

# %% tags=["remove-input"]
display(Markdown(" ".join(findings.run_sentences(numbers))))

# %% [markdown]
# ## The numbers behind those words
#
# Tasks passing the 60% both-correct filter, per domain, and the three measures the study places its
# models by, each with its permutation p-value (shuffles of the task → domain labels).

# %% tags=["remove-input"]
pd.DataFrame([{"domain": DOMAIN_NAMES.get(d, d), "tasks passing": passed, "tasks": total}
              for d, (passed, total) in numbers["passing"].items()]).style.hide(axis="index")


# %% tags=["remove-input"]
def shown(measure: str) -> dict:
    m = numbers["measures"][measure]
    if pd.isna(m["value"]):
        return {"measure": measure, "value": "not computed", "p-value": "", "tasks": ""}
    return {"measure": measure, "value": f"{m['value']:.3g}",
            "p-value": findings.format_p(m["p"], numbers["n_permutations"]).removeprefix("p "),
            "tasks": m["n_tasks"]}


pd.DataFrame([shown(m) for m in findings.MEASURES]).style.hide(axis="index").format(escape="html")

# %% [markdown]
# ## Its stages
#
# Each stage's page, when it finished, the commit of this project that ran it, and whether the
# code and page template that made it are still those of this build.

# %% tags=["remove-input"]
states = stage_states(manifest)
titles = {s.notebook: s.title for s in registry.STAGES}
display(Markdown(findings.currency_sentence(states, titles)))


def wall(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


rows = [{"stage": f'<a href="{stage}.html">{int(stage.split("_")[0])}. {titles[stage].capitalize()}</a>',
         "finished (UTC)": entry["finished"][:16].replace("T", " "),
         "commit": entry["git_sha"][:7] + (" (uncommitted changes)" if entry["git_sha"].endswith("+dirty") else ""),
         "wall time": wall(entry["wall_time_s"]), "made by this build's code": findings.STATE_ANSWERS[states[stage]]}
        for stage in registry.NOTEBOOKS if (entry := manifest["stages"].get(stage))]
display(HTML(pd.DataFrame(rows).to_html(index=False, escape=False, classes="dataframe")))
