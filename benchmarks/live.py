"""Is editing live on this machine? One run prints every figure the README's performance section shows.

    python benchmarks/live.py [--facts 10] [--agreement-facts 0] [--skip fresh,browser]

1. fresh: the README's main command (``editlab edit ...``) in a new, empty cache folder, offline:
   wall time from command to report, and what it prints.
2. warm edits: ROME (one fact per edit) and MEMIT / AlphaEdit (batches of ``--batch`` facts) on
   ``--facts`` CounterFact facts, each with the fast v* computation and the reference's (same
   loss, same stop rule), one after the other: seconds per fact (median, min–max), their ratio,
   and agreement (relative v* difference; facts whose ES/PS/NS/PN differ, by editlab.measure.metrics).
3. probes: seconds to measure the default probe set on one model state (uncached); 3b. new facts'
   Edit, verdict first and plain alternating (fresh probe cache, warm edits): seconds to the first
   verdict and to the full report, and the ratio of the two full reports.
4. browser: Playwright + Debian chromium. First page load until the model is shown ready, for
   ``streamlit run app.py`` and ``streamlit run serve.py`` (which loads the model while the server
   starts), ``--browser-runs`` fresh servers each, alternating; then Edit → full report for three
   facts (the later two are later clicks).
5. peak resident memory of this process and of the app's.

``--agreement-facts N`` adds ROME's fast-vs-reference agreement on N further facts (ES/PS/NS/PN
within one fact is the acceptance bar), without timing claims. Statistics are the ones bundled
for the default model (no corpus is given), as a newcomer gets them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._cf import load_facts  # noqa: E402
from editlab import EditSession, load_model  # noqa: E402
from editlab.measure import metrics  # noqa: E402
from editlab.measure.probes import measure  # noqa: E402
from editlab.runs.experiments import quality_probes  # noqa: E402
from tests.browser.crowd import Server  # noqa: E402

MAIN_COMMAND = [
    "edit",
    "--subject",
    "Danielle Darrieux",
    "--prompt",
    "The mother tongue of Danielle Darrieux is",
    "--target-new",
    "English",
    "--target-true",
    "French",
    "--paraphrase",
    "Where Danielle Darrieux is from, people speak the language of",
    "--neighbor",
    "Michel Rocard is a native speaker of=>French",
]
SCORED = ("ES", "PS", "NS", "PN")
# The fast v* counts as the reference's when no fact's v* is further than this from it (relative L2),
# and at most one fact of 50 scores differently on ES/PS/NS/PN (the acceptance bar).
V_TOLERANCE = 5e-2


def spread(xs) -> str:
    return f"{statistics.median(xs):6.2f} s ({min(xs):.2f}–{max(xs):.2f}, n={len(xs)})"


def peak_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- 1. a fresh machine ---------------------------------------------------------------------------
def fresh() -> None:
    cache = tempfile.mkdtemp(prefix="editlab-fresh-")
    env = dict(os.environ, EDITLAB_CACHE_DIR=cache, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "editlab", *MAIN_COMMAND, "--offline"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    print(f"## 1. fresh cache, offline: `editlab {' '.join(MAIN_COMMAND[:1])} ...` (README main command)")
    print(f"command to report: {wall:.1f} s (exit {done.returncode}; includes converting the embedded GGUF once)")
    print("stderr (progress):")
    for line in done.stderr.replace("\r", "\n").splitlines():
        if line.strip() and "Warning" not in line and "warn(" not in line:
            print("   ", line.strip()[:400])
    print("stdout:")
    print(done.stdout)
    conv = sorted(convert_once() for _ in range(3))
    print(
        f"of which converting the embedded GGUF alone (editlab.model.handle.embedded_model_dir, after the imports; "
        f"fresh cache each): {conv[1]:.1f} s (median of 3: {', '.join(f'{c:.1f}' for c in conv)})\n"
    )


CONVERT = """
import sys, time
import transformers, editlab.model.handle as m
t0 = time.perf_counter(); m.embedded_model_dir(m.DEFAULT_MODEL); print(time.perf_counter() - t0)
"""


def convert_once() -> float:
    """Seconds the embedded GGUF takes to convert into an empty cache (the imports not counted)."""
    cache = tempfile.mkdtemp(prefix="editlab-convert-")
    try:
        done = subprocess.run(
            [sys.executable, "-c", CONVERT],
            env=dict(os.environ, EDITLAB_CACHE_DIR=cache),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ---- 2. warm edits, fast vs reference ---------------------------------------------------------------
def scores(session, fact, short=False):
    """editlab.measure.metrics on the default probe set, or (``short``) on the probes the scores read
    (``editlab.runs.experiments.quality_probes``: no free generation): the same ES/PS/NS/PN, cheaper."""
    probes = quality_probes(fact, session.handle.tokenizer) if short else None
    return metrics.fact_scores(session.compare(fact, probes))


def rome_pair(session, facts, short: bool = False):
    """Each fact edited with the fast and with the reference computation of v*."""
    out = {"fast": [], "reference": [], "rel": [], "differ": [], "steps": [], "scores": {"fast": [], "reference": []}}
    for fact in facts:
        got = {}
        for path in ("fast", "reference"):
            t0 = time.perf_counter()
            rec = session.edit(fact, "rome", {"fast_v": path == "fast"})
            out[path].append(time.perf_counter() - t0)
            got[path] = (rec.info["facts"][0]["v_star"], scores(session, fact, short), rec.info["facts"][0]["v_steps"])
            session.reset()
        (va, sa, na), (vb, sb, nb) = got["fast"], got["reference"]
        out["scores"]["fast"].append(sa)
        out["scores"]["reference"].append(sb)
        out["rel"].append(float((va - vb).norm() / vb.norm()))
        out["differ"].append([k for k in SCORED if sa.get(k) != sb.get(k)])
        out["steps"].append((na, nb))
    return out


def batch_pair(session, method, facts, batch):
    out = {"fast": [], "reference": [], "rel": [], "differ": []}
    for i in range(0, len(facts), batch):
        part = facts[i : i + batch]
        got = {}
        for path in ("fast", "reference"):
            t0 = time.perf_counter()
            rec = session.edit(part, method, {"fast_v": path == "fast"})
            out[path].append((time.perf_counter() - t0) / len(part))
            got[path] = (rec.info["targets"], [scores(session, f) for f in part])
            session.reset()
        (za, sa), (zb, sb) = got["fast"], got["reference"]
        out["rel"] += [float(x) for x in (za - zb).norm(dim=1) / zb.norm(dim=1)]
        out["differ"] += [[k for k in SCORED if a.get(k) != b.get(k)] for a, b in zip(sa, sb)]
    return out


def report_pair(name, res, unit):
    fast, ref = statistics.median(res["fast"]), statistics.median(res["reference"])
    n_diff = sum(bool(d) for d in res["differ"])
    print(
        f"{name:<10} fast {spread(res['fast'])} {unit} | reference {spread(res['reference'])} {unit} | "
        f"ratio {ref / fast:.2f}x | v* rel. diff max {max(res['rel']):.1e} | facts whose ES/PS/NS/PN differ: "
        f"{n_diff} of {len(res['differ'])}"
    )


def warm(handle, facts, batch, agreement_facts, methods=("rome", "memit", "alphaedit")):
    session = EditSession(handle, online=False)
    warm_up = session.edit(facts[0], "rome")  # statistics (bundled) and templates, as a first edit does
    session.compare(facts[0])
    session.reset()
    print(
        f"## 2. warm edits ({handle.name}, {handle.device}, torch threads {torch.get_num_threads()}; "
        f"statistics: {warm_up.info.get('stats_source')})"
    )
    if "rome" in methods:
        r = rome_pair(session, facts[1:])
        report_pair("rome", r, "/edit")
        print(f"           optimisation steps fast/reference per fact: {r['steps']}")
    for method in [m for m in methods if m != "rome"]:
        session.edit(facts[:2], method)  # this method's statistics and templates
        session.reset()
        report_pair(method, batch_pair(session, method, facts[1:], batch), f"/fact (batches of {batch})")
    if agreement_facts and "rome" in methods:
        more = load_facts(agreement_facts, start=len(facts))
        a = rome_pair(session, more, short=True)
        for k in ("rel", "differ", "steps"):
            a[k] = r[k] + a[k]
        for path in ("fast", "reference"):
            a["scores"][path] = r["scores"][path] + a["scores"][path]
        bad = [d for d in a["differ"] if d]
        same_steps = sum(x == y for x, y in a["steps"])
        print(
            f"rome agreement on {len(a['rel'])} facts (#1–#{len(a['rel'])}): "
            f"v* rel. diff median {statistics.median(a['rel']):.1e}, "
            f"max {max(a['rel']):.1e}; same number of steps for {same_steps}; "
            f"facts whose ES/PS/NS/PN differ: {len(bad)}"
        )
        ok = max(a["rel"]) <= V_TOLERANCE and len(bad) <= 1
        print(f"   same edit (v* within {V_TOLERANCE:g} relative, ES/PS/NS/PN within 1 fact): {'yes' if ok else 'NO'}")
        for path in ("fast", "reference"):
            agg = metrics.aggregate(a["scores"][path])
            print(f"   {path:<9} " + "  ".join(f"{k} {agg[k]:.2f}" for k in SCORED))
    return session


# ---- 3. probes ----------------------------------------------------------------------------------
def probes_per_state(session, facts, runs=5):
    """Cold (nothing known about the state), then guided: the same facts' probes on the model after
    an edit of another fact, with the unedited texts as the guess (what a click's "before" column
    gets once earlier edits exist), checked equal to unguided greedy decoding."""
    handle = session.handle
    times, guided, cold = [], [], {}
    for fact in facts[:runs]:
        probes = session.probes_for(fact)
        t0 = time.perf_counter()
        cold[fact] = measure(handle.model, handle.tokenizer, fact, probes)
        times.append(time.perf_counter() - t0)
    longest = max(p.max_new_tokens for p in probes)
    print(
        f"## 3. default probe set ({len(probes)} probes, the longest generating {longest} tokens) on one model state, "
        f"uncached: {spread(times)}"
    )
    session.edit(facts[runs], "rome")
    same = 0
    with session.edited() as m:
        for fact in facts[:runs]:
            probes = session.probes_for(fact)
            t0 = time.perf_counter()
            got = measure(m.model, m.tokenizer, fact, probes, drafts=cold[fact])
            guided.append(time.perf_counter() - t0)
            same += [x.greedy for x in got] == [x.greedy for x in measure(m.model, m.tokenizer, fact, probes)]
    session.reset()
    print(
        f"   after an edit of another fact, guided by the unedited texts: {spread(guided)}; "
        f"texts equal to unguided decoding for {same} of {runs} facts"
    )


def verdict_first(handle, facts) -> None:
    """ROME on new facts as the Edit page runs it, verdict first and plain, alternating: seconds from
    the call to the first verdict (positive, negation, True/False: unedited, edit, after) and to the
    full report. In a fresh cache folder, after one warm-up edit (context templates made, statistics
    read), so no fact's unedited probes were measured before and every edit is warm."""
    warm_up, timed = facts[0], facts[1:]
    first, full, plain = [], [], []
    with tempfile.TemporaryDirectory(prefix="editlab-live-") as cache:
        os.environ["EDITLAB_CACHE_DIR"] = cache
        session = EditSession(handle, online=False)
        session.edit_and_compare(warm_up, "rome")
        session.reset()
        for i, fact in enumerate(timed):
            t0, seen = time.perf_counter(), []

            def heard(_report, t0=t0, seen=seen):
                seen.append(time.perf_counter() - t0)

            session.edit_and_compare(fact, "rome", verdict=heard if i % 2 == 0 else None)
            (full if i % 2 == 0 else plain).append(time.perf_counter() - t0)
            first.extend(seen)
            session.reset()
        del os.environ["EDITLAB_CACHE_DIR"]
    print(
        f"## 3b. a new fact's Edit (ROME), verdict first: first verdict {spread(first)}, "
        f"full report {spread(full)}; without the verdict first: full report {spread(plain)} "
        f"(ratio {statistics.median(full) / statistics.median(plain):.2f}; {len(full)} + {len(plain)} facts "
        "alternating, library calls without the browser, fresh probe cache)"
    )


# ---- 4. the app in a browser -----------------------------------------------------------------------
class App(Server):
    """The app served on a free local port by ``streamlit run SCRIPT`` (app.py or serve.py), headless
    (tests/browser/crowd.py's server), timed from its start."""

    def __init__(self, script: str):
        self.t0 = time.perf_counter()
        super().__init__(script)

    def wait_healthy(self) -> float:
        """Seconds from starting the process until the server answers its health check."""
        super().wait_healthy(120)
        return time.perf_counter() - self.t0

    def wait_url(self) -> float:
        """Seconds from starting the process until it prints the URL a user would open."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "URL:" in self.log_path.read_text(errors="replace"):
                return time.perf_counter() - self.t0
            time.sleep(0.05)
        raise RuntimeError(f"the app printed no URL in 120 s (log: {self.log_path})")


def first_load(p, chromium: str, script: str, when: str) -> tuple[float, float]:
    """Seconds from opening the page until it shows the model ready, on a fresh server process;
    the page is opened as soon as the server prints its URL (``when="url"``: a visitor who clicks
    at once) or once it answers its health check (``when="health"``: a visitor who comes later, or
    a Space, which routes visitors only to a healthy app). Returns (seconds from starting the server
    to opening the page, seconds from opening the page to the model shown ready)."""
    app = App(script)
    try:
        opened = app.wait_url() if when == "url" else app.wait_healthy()
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = b.new_page()
        page.set_default_timeout(5 * 60 * 1000)
        t0 = time.perf_counter()
        page.goto(app.url)
        page.get_by_text("Loaded:").first.wait_for(state="visible")
        load = time.perf_counter() - t0
        b.close()
        return opened, load
    finally:
        app.close()


def browser(facts, runs: int = 3) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("EDITLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    print("## 4. browser (chromium, app on this machine; the model was converted before, as after a first run)")
    with sync_playwright() as p:
        cases = [(script, when) for script in ("app.py", "serve.py") for when in ("url", "health")]
        loads: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in cases}
        for _ in range(runs):  # alternating, so every case sees the same machine
            for script, when in cases:
                loads[script, when].append(first_load(p, chromium, script, when))
        print("first page load until the model is shown ready (median over fresh servers; each run):")
        for (script, when), got in loads.items():
            opened = "as soon as the URL is printed" if when == "url" else "once the server answers"
            print(
                f"  `streamlit run {script}`, page opened {opened} ({statistics.median(g[0] for g in got):.1f} s "
                f"after start): {statistics.median(g[1] for g in got):.1f} s ({', '.join(f'{g[1]:.1f}' for g in got)})"
            )
        for when in ("url", "health"):
            app_s = statistics.median(g[1] for g in loads["app.py", when])
            serve_s = statistics.median(g[1] for g in loads["serve.py", when])
            print(f"  ratio app.py / serve.py, page opened at {when}: {app_s / serve_s:.2f}x")
        app = App("serve.py")
        try:
            app.wait_healthy()
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = b.new_context(viewport={"width": 1400, "height": 2400}).new_page()
            page.set_default_timeout(15 * 60 * 1000)
            page.goto(app.url)
            page.get_by_text("Loaded:").first.wait_for(state="visible")
            page.goto(app.url + "/edit")
            clicks = []
            for fact in facts[:3]:
                page.get_by_label("Subject", exact=True).wait_for(state="visible")
                page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
                for label, value in (
                    ("Subject", fact.subject),
                    ("Prompt", fact.prompt),
                    ("New target", fact.target_new),
                    ("True target", fact.target_true or ""),
                    ("Paraphrases", "\n".join(fact.paraphrases)),
                    ("Neighbour prompts", "\n".join(f"{n.prompt} => {n.answer}" for n in fact.neighbors)),
                ):
                    page.get_by_label(label, exact=True).fill(value)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Edit with rome").click()
                page.get_by_text(f"rome: {fact.prompt}").first.wait_for(state="visible")
                page.locator('[data-testid="stTable"]').first.wait_for(state="visible")
                page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
                clicks.append(time.perf_counter() - t0)
            b.close()
            print(
                f"Edit → full report (`streamlit run serve.py`): first click {clicks[0]:.1f} s, "
                f"later clicks {', '.join(f'{c:.1f}' for c in clicks[1:])} s"
            )
            print(f"app process peak RSS: {peak_mb(app.proc.pid):,.0f} MB")
        finally:
            app.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", type=int, default=10, help="facts timed per method (ROME: one edit each)")
    ap.add_argument("--batch", type=int, default=10, help="batch size for MEMIT / AlphaEdit")
    ap.add_argument("--agreement-facts", type=int, default=0, help="extra ROME fast-vs-reference agreement facts")
    ap.add_argument("--skip", default="", help="comma-separated: fresh, warm, probes, verdict, browser")
    ap.add_argument("--methods", default="rome,memit,alphaedit", help="methods timed in the warm part")
    ap.add_argument("--verdict-facts", type=int, default=6, help="new facts timed in 3b (half verdict first)")
    ap.add_argument("--browser-runs", type=int, default=3, help="fresh servers per launcher for the first page load")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    print(
        f"editlab live benchmark on {os.cpu_count()} CPU(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    if "fresh" not in skip:
        fresh()
    facts = load_facts(args.facts + 1)
    handle = load_model("smollm2-135m-instruct")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    session = (
        warm(handle, facts, args.batch, args.agreement_facts, methods)
        if "warm" not in skip
        else EditSession(handle, online=False)
    )
    if "probes" not in skip:
        probes_per_state(session, facts[1:])
    if "verdict" not in skip:
        verdict_first(handle, load_facts(args.verdict_facts + 1, start=4700))
    if "browser" not in skip:
        browser(load_facts(3, start=200), args.browser_runs)
    print(f"## 5. peak RSS of this benchmark process: {peak_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
