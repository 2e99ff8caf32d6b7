"""The pack as users see it: the real ComfyUI (`main.py` on loopback, CPU) with this pack in
custom_nodes as `comfyui-bokeh-diffusion`, its web frontend in Debian's headless Chromium driven
by Selenium (nothing downloads a browser or a driver: /usr/bin/chromium and /usr/bin/chromedriver,
SE_OFFLINE=true).

For each bundled workflow, fetched from the template endpoint and loaded through the page:
no missing node types, no missing-node dialog, no node in error, no console error caused by the
pack, and the labels of our nodes as `locales/en/nodeDefs.json` says. Then the grounded sweep runs
on tiny random models (a second, test-only custom node folder registers the stand-ins of
fixtures/test_nodes; a tiny random adapter sits in models/bokeh_diffusion/) with the page as the
client, and the sweep images, the contact sheet, the Blur Meter's report and plot come back.

Screenshots land in .cache/browser-screenshots/ (git-ignored). Skipped only where there is no
browser and CI is not set; with CI=true a missing browser fails (scripts/browser_deps.sh
installs it).
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import distributed_pack
import harness
import pytest
import requests
import workflow_api
from model_files import ADAPTER, DOWNLOADS, PHOTO_ADAPTER, PHOTO_IMAGE

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
PACK_FOLDER = "comfyui-bokeh-diffusion"  # the folder name users clone the pack into
REPO = harness.REPO
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
LOCALES = REPO / "locales" / "en" / "nodeDefs.json"
SCREENSHOTS = REPO / ".cache" / "browser-screenshots"
# The flags this machine's Chromium needs as root, offline (see the environment notes).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=2400,1400", "--lang=en-US"]
SWEEP = "bokeh_grounded_sweep"
STEPS, SIZE = 3, 64  # keep the CPU run short

pytestmark = pytest.mark.skipif(
    not HAVE_BROWSER and not IN_CI,
    reason=f"no {CHROMIUM} / {CHROMEDRIVER} (bash scripts/browser_deps.sh installs them; with CI=true this fails)")


def ours(node_type: str) -> bool:
    return node_type.startswith("Bokeh") and not node_type.startswith("BokehTest")


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --- the server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not HAVE_BROWSER:  # only reached with CI set (else the module is skipped)
        pytest.fail(f"CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: run `bash scripts/browser_deps.sh` first")
    base = tmp_path_factory.mktemp("browser_base")
    nodes_dir = base / "custom_nodes"
    nodes_dir.mkdir()
    (nodes_dir / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
    harness.install_test_nodes(base)
    try:  # ComfyUI-Distributed: the distributed sweep's workflow needs its nodes
        distributed_pack.install(nodes_dir)
    except distributed_pack.thirdparty.Missing:
        pass  # that workflow's tests skip, or fail under CI=true (see `loaded`)
    models = base / "models" / "bokeh_diffusion"
    models.mkdir(parents=True)
    from safetensors.torch import save_file

    cfg = harness.TINY
    sd = harness.random_adapter_sd(cfg["hidden_size"], range(cfg["depth"] + cfg["depth_single_blocks"]), seed=41)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(models / ADAPTER))
    # The photo adapter as released (a torch zip, *_dof keys), and the photo its workflows load.
    import torch

    torch.save({k.replace("_bokeh.", "_dof."): v for k, v in sd.items()}, str(models / PHOTO_ADAPTER))
    (base / "input").mkdir()
    (base / "input" / PHOTO_IMAGE).write_bytes(harness.write_example_photo(PHOTO_IMAGE).read_bytes())
    # The FLUX files the workflows name, as empty stand-ins in their model folders: newer
    # frontends (0.30.0's 1.48.7) mark a loader whose file is missing as a node in error. The
    # run below swaps the loaders for tiny models, so nothing reads these files.
    for name, (_, folder) in DOWNLOADS.items():
        if folder != "bokeh_diffusion":
            (base / "models" / folder).mkdir(parents=True, exist_ok=True)
            (base / "models" / folder / name).write_bytes(b"")
    # No first-run template browser over the canvas; English labels; the missing-nodes dialog on;
    # text drawn at any zoom (the screenshots show the whole graph zoomed out).
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({
        "Comfy.TutorialCompleted": True, "Comfy.Locale": "en", "Comfy.Workflow.ShowMissingNodesWarning": True,
        "LiteGraph.Canvas.MinFontSizeForLOD": 0}))

    with harness.comfy_server(base) as url:
        yield {"url": url, "base": base, "log": base / "server.log"}


# --- the browser -----------------------------------------------------------------------------

class Page:
    """The ComfyUI page in Chromium, with the browser's console log kept across reads."""

    def __init__(self, driver, url, server_log):
        self.driver, self.url, self.server_log = driver, url, server_log
        self.console: list[dict] = []
        self.load_console: list[dict] = []

    def drain(self) -> list[dict]:
        """New console entries since the last call (all of them are also kept in self.console)."""
        new = self.driver.get_log("browser")
        self.console.extend(new)
        return new

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def js_async(self, body, *args):
        """Run `body` (an async function body; `args` is the argument list) and return its value;
        a thrown error comes back as a test failure with its message."""
        wrapped = ("const done = arguments[arguments.length - 1]; const args = [...arguments].slice(0, -1);"
                   "(async () => {" + body + "})().then(v => done({ok: v}), e => done({error: String(e && e.stack || e)}));")
        out = self.driver.execute_async_script(wrapped, *args)
        if "error" in out:
            pytest.fail(f"in the page: {out['error']}")
        return out.get("ok")

    def wait(self, condition_js, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js(condition_js):
                return
            time.sleep(0.25)
        self.screenshot("timeout")
        pytest.fail(f"timed out after {timeout} s waiting for {what}; server log:\n{tail(self.server_log)}")

    def fit_view(self):
        """The whole graph on screen (the canvas's own "fit view" command), redrawn."""
        self.driver.execute_async_script(  # a screenshot helper: its errors are ignored
            "const done = arguments[0]; Promise.resolve().then(() => app.extensionManager.command"
            ".execute('Comfy.Canvas.FitView')).catch(() => {}).finally(() => { app.canvas.setDirty(true, true); done(); });")
        time.sleep(0.5)

    def screenshot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def kill_tree(pids):
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    import psutil

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed ({e}): it is in scripts/requirements-test.txt")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(server["base"] / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid

    def browser_pids():
        try:
            return [p.pid for p in psutil.Process(driver_pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    pids = browser_pids()
    try:
        driver.set_script_timeout(180)
        page = Page(driver, server["url"], server["log"])
        driver.get(server["url"])
        page.wait("return !!(window.app && window.app.graph && app.canvas && window.LiteGraph"
                  " && LiteGraph.registered_node_types && LiteGraph.registered_node_types['KSampler'])", 180,
                  "the ComfyUI app (window.app, app.graph, the node definitions)")
        ours_registered = page.js("return Object.keys(LiteGraph.registered_node_types).filter(t => t.startsWith('Bokeh'))")
        if "BokehApplyAdapter" not in ours_registered:
            page.screenshot("page_ready")
            pytest.fail(f"the frontend has none of the pack's nodes ({ours_registered}); server log:\n{tail(server['log'])}")
        # Record the missing-node warnings the frontend raises while loading a workflow.
        page.js("""window.__bokehMissing = [];
                   const orig = app.showMissingNodesError.bind(app);
                   app.showMissingNodesError = (missing, ...rest) => {
                       window.__bokehMissing.push(...missing.map(m => typeof m === 'string' ? m : m.type));
                       return orig(missing, ...rest); };""")
        time.sleep(1)
        page.screenshot("page_ready")
        page.load_console = page.drain()  # what the console said while the app and the pack loaded
        yield page
    finally:
        pids = sorted(set(pids) | set(browser_pids()))
        try:
            driver.quit()
        finally:
            kill_tree(pids + [driver_pid])  # whatever of chromium's tree outlived quit()


# --- what the page shows ----------------------------------------------------------------------

DIALOGS_JS = """
return [...document.querySelectorAll('.p-dialog, [role=dialog], [role=alertdialog]')]
    .filter(e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length))
    .map(e => e.innerText.slice(0, 500));
"""

STATE_JS = """
const reg = LiteGraph.registered_node_types;
const slot = s => ({name: s.name, label: s.label ?? null, localized_name: s.localized_name ?? null,
                    widget: !!s.widget, type: String(s.type)});
return {
  nodes: app.graph.nodes.map(n => ({
    id: n.id, type: n.type, title: n.title, has_errors: !!n.has_errors, registered: n.type in reg,
    class_title: reg[n.type] ? (reg[n.type].title ?? null) : null,
    inputs: (n.inputs || []).map(slot), outputs: (n.outputs || []).map(slot),
    widgets: (n.widgets || []).map(w => ({name: w.name, label: w.label ?? null, type: String(w.type)})),
  })),
  missing_warnings: window.__bokehMissing.splice(0),
  dialogs: (() => {""" + DIALOGS_JS + """})(),
  last_node_errors: app.lastNodeErrors ?? null,
};
"""

MISSING_DIALOG_WORDS = ("missing node", "nodes are missing", "unsupported node", "missing custom node")
PACK_MARKERS = (PACK_FOLDER, "bokeh", f"/extensions/{PACK_FOLDER}")


def load_workflow(page: Page, name: str) -> dict:
    """Fetch a bundled workflow from the template endpoint (what the template browser does) and
    load it into the graph; returns what the page then shows."""
    page.drain()
    page.js_async("""
        const r = await fetch(args[0]);
        if (!r.ok) throw new Error('template ' + args[0] + ': HTTP ' + r.status);
        await app.loadGraphData(await r.json(), true, true, args[1]);""",
        f"/api/workflow_templates/{PACK_FOLDER}/{name}.json", name)
    time.sleep(1.0)  # dialogs and the canvas render on later frames
    page.fit_view()
    page.screenshot(name)
    state = page.js(STATE_JS)
    state["console"] = page.drain()
    # Close whatever dialog the load opened (e.g. missing model files) before the next step.
    page.js("document.querySelectorAll('.p-dialog .p-dialog-close-button, .p-dialog-header-close').forEach(b => b.click())")
    time.sleep(0.5)
    state["dialogs_left"] = page.js(DIALOGS_JS)
    return state


def pack_console_errors(entries, url) -> list[str]:
    """Console errors that mention the pack. Network errors to hosts other than our server are left
    out: the frontend asks api.comfy.org about every node type (URLs holding 'Bokeh...') and this
    machine has no network; that is not the pack's doing."""
    found = []
    for e in entries:
        if e.get("level") != "SEVERE":
            continue
        msg = e.get("message", "")
        if e.get("source") == "network" and not msg.startswith(url):
            continue
        if any(m.lower() in msg.lower() for m in PACK_MARKERS):
            found.append(msg[:800])
    return found


_loaded: dict[str, dict] = {}


@pytest.fixture(scope="module")
def loaded(page):
    """name -> what the page showed right after loading that workflow (each loaded once)."""

    def get(name):
        if name.endswith("_distributed"):
            distributed_pack.unpacked_or_skip()
        if name not in _loaded:
            _loaded[name] = load_workflow(page, name)
        return _loaded[name]

    yield get
    _loaded.clear()


# --- tests ------------------------------------------------------------------------------------

def test_the_page_lists_the_workflows_as_templates(page):
    templates = page.js_async("return await (await fetch('/api/workflow_templates')).json();")
    assert sorted(templates.get(PACK_FOLDER, [])) == sorted(p.stem for p in WORKFLOWS), templates
    errors = pack_console_errors(page.load_console, page.url)
    assert not errors, "console errors about the pack while the page loaded:\n" + "\n".join(errors)


def test_the_ui_script_colours_links_and_widens_nodes(page):
    """web/bokeh_ui.js: the pack's two link types have colours, and a fresh Blur Meter node is
    wide enough for its title."""
    state = page.js("""
        const LGC = window.LGraphCanvas || app.canvas.constructor;
        const node = LiteGraph.createNode('BokehBlurMeter');
        return {colors: LGC.link_type_colors, width: node.size[0],
                titleWidth: app.canvas.ctx ? (app.canvas.ctx.font = LiteGraph.NODE_TEXT_SIZE + 'px Arial', app.canvas.ctx.measureText(node.title).width) : 0};
    """)
    assert state["colors"].get("BOKEH_ADAPTER") and state["colors"].get("BOKEH_SWEEP"), state["colors"]
    assert state["colors"]["BOKEH_ADAPTER"] != state["colors"]["BOKEH_SWEEP"]
    assert state["width"] >= 270 and state["width"] > state["titleWidth"] + 40, state


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_or_broken_nodes(page, loaded, path):
    state = loaded(path.stem)
    saved = workflow_api.load(path)
    problems = []
    unregistered = sorted({n["type"] for n in state["nodes"] if not n["registered"]})
    if unregistered:
        problems.append(f"node types this ComfyUI does not know: {unregistered}")
    if state["missing_warnings"]:
        problems.append(f"the frontend reported missing nodes: {state['missing_warnings']}")
    missing_dialogs = [d for d in state["dialogs"] if any(w in d.lower() for w in MISSING_DIALOG_WORDS)]
    if missing_dialogs:
        problems.append(f"a missing-node dialog is shown: {missing_dialogs}")
    if len(state["nodes"]) != len(saved["nodes"]):
        problems.append(f"{len(saved['nodes'])} nodes saved, {len(state['nodes'])} in the graph")
    in_error = [(n["id"], n["type"]) for n in state["nodes"] if n["has_errors"]]
    if in_error:
        problems.append(f"nodes in error: {in_error}")
    if state["last_node_errors"]:
        problems.append(f"node errors: {state['last_node_errors']}")
    errors = pack_console_errors(state["console"], page.url)
    if errors:
        problems.append("console errors about the pack:\n  " + "\n  ".join(errors))
    if state["dialogs_left"]:
        problems.append(f"dialogs that would not close: {state['dialogs_left']}")
    assert not problems, f"{path.name} in the browser (screenshot: .cache/browser-screenshots/{path.stem}.png):\n" + "\n".join(problems)


def shown(slot) -> str:
    """The text the frontend draws for a slot: a user's label, else the localised name, else the id."""
    return slot["label"] or slot["localized_name"] or slot["name"]


def label_mismatches(state, defs) -> list[str]:
    bad = []
    for node in state["nodes"]:
        kind = node["type"]
        if not ours(kind):
            continue
        if kind not in defs:
            bad.append(f"{kind}: no entry in locales/en/nodeDefs.json")
            continue
        d = defs[kind]
        if "display_name" in d and node["class_title"] != d["display_name"]:
            bad.append(f"{kind}: node title {node['class_title']!r}, locales say {d['display_name']!r}")
        names = d.get("inputs", {})
        for slot in node["inputs"]:
            want = names.get(slot["name"], {}).get("name")
            if want is None:
                bad.append(f"{kind}.{slot['name']}: no label in locales (shown as {shown(slot)!r})")
            elif shown(slot) != want:
                bad.append(f"{kind}.{slot['name']}: input shown as {shown(slot)!r}, locales say {want!r}")
        for w in node["widgets"]:
            want = names.get(w["name"], {}).get("name")
            if want is not None and (w["label"] or w["name"]) != want:
                bad.append(f"{kind}.{w['name']}: widget shown as {w['label'] or w['name']!r}, locales say {want!r}")
        outs = d.get("outputs", {})
        for i, slot in enumerate(node["outputs"]):
            if slot["name"] == slot["type"]:
                # An output named as its type (no display_name) is labelled from the frontend's
                # own dataTypes.<TYPE> strings; nodeDefs is not read for it (frontend 1.32.9).
                continue
            want = outs.get(str(i), {}).get("name")
            if want is not None and shown(slot) != want:
                bad.append(f"{kind} output {i} ({slot['name']}): shown as {shown(slot)!r}, locales say {want!r}")
    return bad


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_labels_are_those_of_the_locales(page, loaded, path):
    if not LOCALES.is_file():
        pytest.fail(f"{LOCALES.relative_to(REPO)} does not exist: this frontend (1.32.9) ignores V3 input "
                    "display_name and shows raw ids; the pack must ship its labels there")
    defs = json.loads(LOCALES.read_text())
    state = loaded(path.stem)
    assert any(ours(n["type"]) for n in state["nodes"]), f"{path.name} holds none of our nodes"
    bad = label_mismatches(state, defs)
    assert not bad, f"{path.name}: labels differ from {LOCALES.relative_to(REPO)}:\n" + "\n".join(bad)


def linked_from(workflow, node_id, slot) -> list[dict]:
    """The nodes an output slot of a UI-graph node feeds."""
    by_id = {n["id"]: n for n in workflow["nodes"]}
    return [by_id[link[3]] for link in workflow["links"] if link[1] == node_id and link[2] == slot]


def test_grounded_sweep_runs_with_the_page_as_client(pack, page, server):
    url = server["url"]
    state = load_workflow(page, SWEEP)  # the graph on the canvas now: the page is the run's client
    assert not any(n["has_errors"] for n in state["nodes"]) and not state["missing_warnings"]
    workflow = workflow_api.load(REPO / "workflows" / f"{SWEEP}.json")
    prompt = workflow_api.ui_to_api(workflow)

    # What the page's own Run button would send agrees with runner/workflow_api.py.
    sent = page.js_async("return (await app.graphToPrompt()).output;")
    assert sorted(sent, key=int) == sorted(prompt, key=int)
    for key, node in prompt.items():
        assert sent[key]["class_type"] == node["class_type"], key
        differ = {k: (sent[key]["inputs"].get(k), v) for k, v in node["inputs"].items() if sent[key]["inputs"].get(k) != v}
        assert not differ, f"node {key} ({node['class_type']}): frontend vs ui_to_api: {differ}"

    tiny = harness.swap_for_tiny_models(copy.deepcopy(prompt))
    for node in tiny.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = STEPS
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=SIZE, height=SIZE)
    # The canvas shows what runs (for the screenshot): the same small steps and size.
    page.js("""for (const n of app.graph.nodes) for (const w of n.widgets || []) {
                   if (n.type === 'KSampler' && w.name === 'steps') w.value = arguments[0];
                   if (n.type === 'EmptySD3LatentImage' && (w.name === 'width' || w.name === 'height')) w.value = arguments[1]; }""",
            STEPS, SIZE)
    client_id = page.js("return app.api.clientId")
    assert client_id
    r = requests.post(url + "/prompt", json={"prompt": tiny, "client_id": client_id}, timeout=60)
    assert r.status_code == 200, r.text[:3000]
    prompt_id = r.json()["prompt_id"]
    deadline = time.monotonic() + 300
    while True:
        history = requests.get(f"{url}/history/{prompt_id}", timeout=10).json().get(prompt_id)
        status = (history or {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the sweep did not finish in 300 s; server log:\n{tail(server['log'])}")
        time.sleep(0.5)
    assert status.get("status_str") == "success", json.dumps(status)[:3000] + "\n" + tail(server["log"])
    outputs = history["outputs"]

    # The sweep images and the sheet, in their Save/Preview nodes.
    (pivot,) = workflow_api.find(prompt, "BokehPivotBatch")
    rows = 1 + len([t for t in str(prompt[pivot]["inputs"]["targets"]).split(",") if t.strip()])
    (sheet,) = [n for n in workflow["nodes"] if n["type"] == "BokehContactSheet"]
    (match,) = [n for n in workflow["nodes"] if n["type"] == "BokehColorMatch"]
    image_sinks = ("SaveImage", "PreviewImage")
    sheet_out = [n for n in linked_from(workflow, sheet["id"], 0) if n["type"] in image_sinks]
    sweep_out = [n for n in linked_from(workflow, match["id"], 0) if n["type"] in image_sinks]
    assert sheet_out and sweep_out, "the workflow shows the contact sheet and the sweep images"
    for n in sheet_out:
        assert len(outputs.get(str(n["id"]), {}).get("images", [])) == 1, (n["id"], outputs.get(str(n["id"])))
    for n in sweep_out:
        assert len(outputs.get(str(n["id"]), {}).get("images", [])) == rows, (n["id"], outputs.get(str(n["id"])))

    # The Blur Meter: its report (shown by the meter or a Preview Any), and its plot when it has one.
    (meter,) = [n for n in workflow["nodes"] if n["type"] == "BokehBlurMeter"]
    out_names = [o.get("name") for o in meter.get("outputs", [])]
    report_nodes = [str(meter["id"])] + [str(n["id"]) for n in linked_from(workflow, meter["id"], 0)]
    texts = [t for k in report_nodes for t in outputs.get(k, {}).get("text", []) if isinstance(t, str)]
    assert any("corr(K" in t for t in texts), f"no Blur Meter report in {report_nodes}: {[outputs.get(k) for k in report_nodes]}"
    plot_nodes = []
    if "plot" in out_names:
        plot_nodes = [n for n in linked_from(workflow, meter["id"], out_names.index("plot")) if n["type"] in image_sinks]
        assert plot_nodes, "the Blur Meter's plot output is shown by no Save/Preview Image node"
        for n in plot_nodes:
            assert outputs.get(str(n["id"]), {}).get("images"), (n["id"], outputs.get(str(n["id"])))

    # The page got them too (over its websocket, as the client that queued the run).
    shown_ids = sorted({str(n["id"]) for n in sheet_out + sweep_out + plot_nodes} | {k for k in report_nodes if k in outputs})
    page.wait(f"const o = app.nodeOutputs || {{}}; return {json.dumps(shown_ids)}.every(k => k in o);", 60,
              f"the page to receive the outputs of nodes {shown_ids}")
    time.sleep(1.0)
    page.fit_view()
    page.screenshot(f"{SWEEP}_after_run")
    assert page.js("return app.lastExecutionError ?? null") is None
    errors = pack_console_errors(page.drain(), url)
    assert not errors, "console errors about the pack during the run:\n" + "\n".join(errors)
