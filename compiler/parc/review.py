"""Renderings for reviewers: PLAN.md (``parc plan --format markdown``), the alternatives as CSV
(``--format csv``, for a Pareto plot) and the cost terms of pinned placements side by side
(``--compare``).

PLAN.md is built from the typed :class:`parc.plan.Plan` and its plan.json document, so it says
nothing plan.json does not (numbers are the document's, already rounded: byte-identical
output). Every string that comes from a spec (names, the model id, sentences quoting them) goes
through :func:`md` in Markdown and :func:`mermaid_label` inside the diagram; the diagram's node
ids are parc's own. The diagram is a Mermaid flowchart of the grammar subset listed on
:func:`diagram`, bounded in size however many GPUs the plan uses: identical replicas and nodes
are drawn once with "x N".
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from parc import costmodel as cm

if TYPE_CHECKING:
    from parc.plan import Plan, PlanGroup
    from parc.resolve import ResolvedPool
    from parc.solver import Solution

# ----------------------------------------------------------------------------- escaping

#: CommonMark lets any ASCII punctuation be backslash-escaped; these would otherwise start
#: emphasis, code, links and images, end a table cell (|), or start headings, strikethrough or
#: math. Text is never placed at the start of a line, so list and heading markers (- + . =)
#: need no escape there.
_MD_PUNCT = set("\\`*_[]{}#!|~$")
#: HTML as text; @ too, so a source-level parser (GitLab quick actions, mention scanners) does not
#: take a name for a handle.
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "&#64;"}


def md(text: object) -> str:
    """``text`` safe inside a Markdown paragraph or table cell: one line, HTML and
    @mentions as entities, Markdown punctuation backslash-escaped."""
    out = []
    for ch in " ".join(str(text).split()):
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_PUNCT:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


#: Characters with a meaning inside a quoted Mermaid label (the quote ends it, ``#name;`` is
#: an entity, backticks make a Markdown string, ``<``/``>``/``&`` are HTML in htmlLabels,
#: ``|`` ends an edge label), written as Mermaid's ``#code;`` entities.
_MERMAID_ENTITIES = {'"': "#quot;", "#": "#35;", "`": "#96;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                     "|": "#124;", "\\": "#92;"}


def mermaid_label(text: object) -> str:
    """``text`` as the inside of a double-quoted Mermaid label: one line, no character left
    that ends or changes the label."""
    return "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in " ".join(str(text).split()))


# ----------------------------------------------------------------------------- numbers


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x >= 1 else f"{x:.4f}"


def _per_gpu(pred: dict[str, Any], gpus: int) -> float:
    return float(pred["throughputTokensPerSecond"]) / gpus if gpus else 0.0


def _vs(objective: str, alt: dict[str, Any], doc: dict[str, Any]) -> str:
    """How far an alternative is from the chosen plan on the objective."""
    a, c = alt["predicted"], doc["predicted"]
    if objective == "latency":
        return _pct(a["tpotMs"], c["tpotMs"], "TPOT")
    if objective == "throughput":
        return _pct(a["throughputTokensPerSecond"], c["throughputTokensPerSecond"], "tok/s")
    if "costPerHour" in a and "costPerHour" in c:
        return _pct(a["costPerHour"], c["costPerHour"], "cost/h")
    d = alt["placement"]["gpusTotal"] - doc["placement"]["gpusTotal"]
    return f"{d:+d} GPUs"


def _pct(x: float, ref: float, what: str) -> str:
    if ref == 0:
        return f"{what} {x:g}"
    return f"{what} {(x / ref - 1) * 100:+.1f}%"


def _shape(g: dict[str, Any]) -> str:
    phase = f"{g['phase']} " if g.get("phase", "both") != "both" else ""
    return f"{phase}{g['replicas']} x tp={g['tp']} pp={g['pp']} ep={g['ep']} dpAttention={g['dpAttention']}"


def _gname(g: dict[str, Any]) -> str:
    """A group's row name: its pool, and its phase in a disaggregated plan."""
    phase = g.get("phase", "both")
    return md(g["pool"]) + (f" ({phase})" if phase != "both" else "")


# ----------------------------------------------------------------------------- PLAN.md


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: Sequence[int] = (0,)) -> list[str]:
    """A GitHub/GitLab Markdown table; columns not in ``left`` are right-aligned numbers.
    Cells are parc's own text or already escaped."""
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i in left else "---:" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def markdown(plan: Plan) -> str:
    """PLAN.md: the decision for a reviewer (header, placement, predictions with the error
    band, alternatives, rejection reasons, notes, and a Mermaid diagram of the placement)."""
    doc = plan.document
    m, pl, pred = doc["model"], doc["placement"], doc["predicted"]
    priced = "costPerHour" in pred
    lines = [f"# Plan: {md(doc['metadata']['name'])}", ""]
    head = (f"Model {md(m['id'])} ({md(m['architecture'])}, {md(m['precision'])}), objective "
            f"**{doc['objective']}**, engine {doc['engine']} {md(doc['engineVersion'])}, {pl['gpusTotal']} GPUs")
    if priced:
        head += (f", {_money(pred['costPerHour'])} per hour, "
                 f"{_money(pred.get('costPerMillionOutputTokens'))} per million output tokens")
    lines += [head + ".", ""]
    lines.append("Meets the SLO: " + ("yes." if doc["meetsSlo"] else "**no**."))
    lines += ["", f"Generated by `parc` from spec sha256 `{doc['metadata']['specSha256']}`; do not edit, "
              "change the spec and run `parc compile`.", ""]
    lines += ["## Placement", ""]
    rows = []
    for g, p, s in zip(pl["groups"], pred["groups"], doc["groupEngineSettings"]):
        rows.append([_gname(g), g["replicas"], g["dpAttention"], g["tp"], g["pp"], g["ep"], g["gpusPerReplica"],
                     g["nodesPerReplica"], f"{p['concurrencyPerReplica']:g}", s["maxNumSeqsPerReplica"]])
    lines += _table(["pool", "replicas", "dpAttention", "tp", "pp", "ep", "GPUs/replica", "nodes/replica",
                     "load/replica (requests)", "maxNumSeqs/replica"], rows)
    lines += ["", "GPUs of a replica = tp x pp x dpAttention; load = concurrent requests planned per replica.", ""]
    lines += ["## Predictions", ""]
    lines += _predictions(doc, priced)
    lines += ["", _band(doc), ""]
    lines += ["Memory per GPU (GiB, the most loaded GPU of a replica):", ""]
    lines += _table(["pool", "weights", "KV cache", "activations", "overhead", "total", "capacity"],
                    [[_gname(g), *(f"{g['memoryPerGpuGiB'][k]:.1f}" for k in
                                       ("weights", "kvCache", "activations", "overhead", "total", "capacity"))]
                     for g in pred["groups"]])
    lines += ["", "Communication per output token (ms):", ""]
    lines += _table(["pool", "TP all-reduce", "PP p2p", "EP all-to-all", "pipeline bubble"],
                    [[_gname(g), f"{g['communication']['tpAllReduceMsPerToken']:.3f}",
                      f"{g['communication']['ppP2pMsPerToken']:.3f}",
                      f"{g['communication']['epAllToAllMsPerToken']:.3f}", f"{g['pipelineBubble'] * 100:.0f}%"]
                     for g in pred["groups"]])
    lines += ["", "## Alternatives", ""]
    lines += _alternatives(doc, priced)
    lines += ["", "## Why", ""]
    lines += [f"- {md(n)}" for n in doc["notes"]] or ["- (nothing the plan needs to explain)"]
    lines += ["", f"## Rejected ({len(doc['rejected'])})", ""]
    lines += _rejections(doc)
    lines += ["", "## Diagram", "", "GPU numbers count from each replica's first GPU; identical replicas and nodes are "
              "drawn once (x N).", "", "```mermaid", *diagram(plan), "```", ""]
    return "\n".join(lines)


def _predictions(doc: dict[str, Any], priced: bool) -> list[str]:
    pred, pl = doc["predicted"], doc["placement"]
    headers = ["", "TTFT ms", "TPOT ms", "tok/s", "tok/s/GPU", "GPUs"] + (["cost/h", "cost/M tok"] if priced else [])
    total = ["**deployment**", f"{pred['ttftMs']:.0f}", f"{pred['tpotMs']:.1f}",
             f"{pred['throughputTokensPerSecond']:.0f}", f"{_per_gpu(pred, pl['gpusTotal']):.1f}", pl["gpusTotal"]]
    if priced:
        total += [_money(pred["costPerHour"]), _money(pred.get("costPerMillionOutputTokens"))]
    rows = [total]
    if len(pl["groups"]) > 1:
        for g, p in zip(pl["groups"], pred["groups"]):
            gpus = g["gpusPerReplica"] * g["replicas"]
            prefill = g.get("phase") == "prefill"  # a prefill instance emits no decode tokens
            rows.append([_gname(g), f"{p['ttftMs']:.0f}", "-" if prefill else f"{p['tpotMs']:.1f}",
                         "-" if prefill else f"{p['throughputTokensPerSecond']:.0f}",
                         "-" if prefill else f"{_per_gpu(p, gpus):.1f}", gpus]
                        + (["", ""] if priced else []))
    return _table(headers, rows) + ["", "TTFT and TPOT at the planned load (the slowest group); tok/s = output "
                                    "tokens per second of the whole deployment."]


def _band(doc: dict[str, Any]) -> str:
    from parc.report import band_sentence

    cal = doc.get("calibration") or {}
    sentence = band_sentence(cal)
    if not sentence:
        return f"Error band: none known (calibration: {md(cal.get('source', 'unknown'))}); treat the numbers as estimates."
    return (f"Error band (held-out measurements of this configuration class): {md(sentence)}; differences inside "
            "that band need a benchmark.")


def _alternatives(doc: dict[str, Any], priced: bool) -> list[str]:
    alts = doc["alternatives"]
    if not alts:
        return ["None: no other placement met the constraints."]
    headers = ["rank", "engine", "placement", "GPUs", "TTFT ms", "TPOT ms", "tok/s", "tok/s/GPU", "GiB/GPU",
               "meets SLO"] + (["cost/h", "cost/M tok"] if priced else []) + [f"vs chosen ({doc['objective']})"]
    rows = []
    for i, a in enumerate(alts, 1):
        p, pl = a["predicted"], a["placement"]
        row: list[object] = [i, a["engine"], "; ".join(f"{md(g['pool'])}: {_shape(g)}" for g in pl["groups"]),
                             pl["gpusTotal"], f"{p['ttftMs']:.0f}", f"{p['tpotMs']:.1f}",
                             f"{p['throughputTokensPerSecond']:.0f}", f"{_per_gpu(p, pl['gpusTotal']):.1f}",
                             f"{p['memoryPerGpuGiB']['total']:.1f}", "yes" if a["meetsSlo"] else "no"]
        if priced:
            row += [_money(p.get("costPerHour")), _money(p.get("costPerMillionOutputTokens"))]
        rows.append(row + [_vs(doc["objective"], a, doc)])
    return _table(headers, rows, left=(1, 2, 9, len(headers) - 1))


def _rejections(doc: dict[str, Any]) -> list[str]:
    rej = doc["rejected"]
    if not rej:
        return ["None."]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rej:
        by.setdefault(r["kind"], []).append(r)
    rows = []
    for kind in sorted(by, key=lambda k: (-len(by[k]), k)):
        ex = next((r for r in by[kind] if r["placement"]["engine"] == doc["engine"]), by[kind][0])
        p = ex["placement"]
        rows.append([kind, len(by[kind]), f"{p['engine']} {md(p['pool'])} tp={p['tp']} pp={p['pp']} ep={p['ep']} "
                                          f"dpAttention={p['dpAttention']}: {md(ex['reason'])}"])
    return _table(["kind", "count", "example"], rows, left=(0, 2))


# ----------------------------------------------------------------------------- Mermaid

#: Most TP groups drawn per pipeline stage, and stages per replica, before collapsing.
MAX_GROUPS_PER_STAGE = 2
MAX_STAGES = 6


def link_label(pool: ResolvedPool, link: cm.LinkCost, group: int) -> str:
    """The physical link a collective over ``group`` GPUs of ``pool`` uses, with the catalog's
    bandwidth: NVLink / xGMI / PCIe in GB/s per direction, the fabric in Gbit/s per GPU."""
    gpu = pool.gpu
    if link.kind == "nvlink":
        gbs = gpu.nvlink_gbs / 2
        if gpu.scaleup_link_gbs > 0:
            return f"xGMI {min(gbs, (group - 1) * gpu.scaleup_link_gbs):g} GB/s per direction"
        return f"NVLink {gbs:g} GB/s per direction"
    if link.kind.startswith("pcie"):
        where = " across CPU sockets" if link.kind == "pcie-sys" else ""
        return f"PCIe Gen{gpu.pcie_gen} {cm.pcie_gbs(gpu):g} GB/s per direction{where}"
    if link.kind == "network":
        fabric = {"infiniband": "InfiniBand", "roce": "RoCE", "ethernet": "Ethernet"}.get(pool.inter_node,
                                                                                         pool.inter_node)
        return f"{fabric} {pool.inter_node_gbps:g} Gbit/s per GPU"
    return "none"


@dataclass
class _Chart:
    lines: list[str]
    edges: list[str]

    def node(self, depth: int, nid: str, label: str, shape: tuple[str, str] = ("[", "]")) -> None:
        self.lines.append(f"{'  ' * depth}{nid}{shape[0]}\"{mermaid_label(label)}\"{shape[1]}")

    def open(self, depth: int, sid: str, label: str) -> None:
        self.lines.append(f"{'  ' * depth}subgraph {sid} [\"{mermaid_label(label)}\"]")

    def close(self, depth: int) -> None:
        self.lines.append(f"{'  ' * depth}end")

    def edge(self, a: str, b: str, label: str, arrow: str = "-->") -> None:
        self.edges.append(f"  {a} {arrow}|\"{mermaid_label(label)}\"| {b}")


def _gpus(first: int, n: int) -> str:
    return f"GPU {first}" if n == 1 else f"GPU {first}-{first + n - 1}"


def _stage_items(pg: PlanGroup, st: int, sid: str) -> list[tuple[str, int, str]]:
    """(node id, first GPU, label) of the TP groups drawn for pipeline stage ``st``: one per
    data-parallel attention rank, or, past ``MAX_GROUPS_PER_STAGE`` ranks, one per physical node
    the stage spans (at most three: the first, the ones alike, the last)."""
    s, per_node = pg.shape, pg.pool.gpus_per_node
    where = f"stage {st + 1}/{s.pp}: " if s.pp > 1 else ""
    base = st * s.dpa * s.tp
    if s.dpa <= MAX_GROUPS_PER_STAGE:
        return [(f"{sid}t{d}", base + d * s.tp, f"{where}TP group tp={s.tp}"
                 + (f", attention rank {d + 1}/{s.dpa}" if s.dpa > 1 else "") + f": {_gpus(base + d * s.tp, s.tp)}")
                for d in range(s.dpa)]
    n = s.dpa * s.tp
    step = per_node if pg.nodes_per_replica > 1 else n
    spans = [(a, min(a + step, base + n) - a) for a in range(base, base + n, step)]
    items = [(f"{sid}t{i}", a, f"{where}{k // s.tp} attention ranks x TP group tp={s.tp}: {_gpus(a, k)}")
             for i, (a, k) in enumerate(spans)]
    if len(items) > 3:
        mid = f"{sid}t1", spans[1][0], f"{where}{len(spans) - 2} more nodes alike: {_gpus(spans[1][0], sum(k for _, k in spans[1:-1]))}"
        items = [items[0], mid, items[-1]]
    return items


def _replica_body(ch: _Chart, pg: PlanGroup, gid: str, depth: int) -> None:
    """The TP groups of one replica (per stage, per data-parallel attention rank) and the TP,
    EP and PP edges between them; multi-node replicas get a subgraph per node."""
    s, pool = pg.shape, pg.pool
    tp_link, ep_link, pp_link = pg.links
    multi = pg.nodes_per_replica > 1
    stages = list(range(s.pp)) if s.pp <= MAX_STAGES else [0, 1, -1, s.pp - 1]  # -1: the stages alike
    nodes: dict[int, list[tuple[str, str]]] = {}
    firsts: list[str] = []
    for st in stages:
        if st < 0:
            first = 2 * s.dpa * s.tp
            sid = f"{gid}sm"
            nodes.setdefault(first // pool.gpus_per_node if multi else 0, []).append(
                (sid, f"stages 3-{s.pp - 1}: {s.pp - 3} more stages alike, from {_gpus(first, (s.pp - 3) * s.dpa * s.tp)}"))
            firsts.append(sid)
            continue
        sid = f"{gid}s{st}"
        items = _stage_items(pg, st, sid)
        for tid, first, label in items:
            nodes.setdefault(first // pool.gpus_per_node if multi else 0, []).append((tid, label))
            if s.tp > 1:
                ch.edge(tid, tid, f"TP all-reduce: {link_label(pool, tp_link, s.tp)}", "-.-")
        firsts.append(items[0][0])
        if s.ep > 1:
            label = f"EP all-to-all over {s.ep} GPUs: {_ep_label(pool, ep_link, s.ep)}"
            if len(items) > 1:
                ch.edge(items[0][0], items[1][0], label, "<-.->")
            else:
                ch.edge(items[0][0], items[0][0], label, "-.-")
    for a, b in zip(firsts, firsts[1:]):
        ch.edge(a, b, f"PP p2p: {link_label(pool, pp_link, 2)}")
    for node in sorted(nodes):
        if multi:
            ch.open(depth, f"{gid}n{node}", f"node {node + 1} of {pg.nodes_per_replica}: {pool.gpu.key}")
        for tid, label in nodes[node]:
            ch.node(depth + (1 if multi else 0), tid, label)
        if multi:
            ch.close(depth)


def _ep_label(pool: ResolvedPool, ep_link: cm.LinkCost, ep: int) -> str:
    if ep > pool.gpus_per_node:
        near = link_label(pool, cm.LinkCost("nvlink" if pool.intra_node == "nvlink" else "pcie", 0, 0, 0),
                          pool.gpus_per_node)
        return f"{near} on a node, {link_label(pool, cm.LinkCost('network', 0, 0, 0), ep)} across nodes"
    return link_label(pool, ep_link, ep)


def diagram(plan: Plan) -> list[str]:
    """The Mermaid flowchart of the placement: the clients and the load balancer (Kubernetes
    Service or Gateway, or the user's own for SLURM and bare metal), a subgraph per pool, its
    nodes and replicas (identical ones drawn once, "x N"), each replica's TP groups per pipeline
    stage, and edges labelled with the link each collective uses.

    Grammar subset emitted (all of it parsed by mermaid.parse in tests/test_review.py):
    ``flowchart LR``; nodes ``id["label"]`` and ``id(["label"])``; ``subgraph id ["label"]`` ..
    ``end``; edges ``a -->|"label"| b``, ``a -.-|"label"| b``, ``a <-.->|"label"| b``. Ids are
    ``[a-z0-9]+`` made by parc; labels are quoted and escaped by :func:`mermaid_label`.
    At most ``MAX_STAGES`` stages and ``MAX_GROUPS_PER_STAGE`` TP groups per stage are drawn."""
    ch = _Chart(["flowchart LR"], [])
    conc = sum(pg.replicas * pg.load for pg in plan.groups)
    ch.node(1, "clients", f"clients: {conc:g} concurrent requests", ("([", "])"))
    ch.node(1, "lb", _balancer(plan))
    ch.edge("clients", "lb", "HTTP :" + str(plan.groups[0].job.port) if plan.groups else "HTTP")
    for pg in plan.groups:
        gid = f"g{pg.index}"
        pool, s = pg.pool, pg.shape
        used = pg.replicas * s.gpus
        ch.open(1, gid, f"pool {pool.name}: {pool.nodes} x {pool.gpus_per_node} {pool.gpu.key}, {used} of "
                        f"{pool.gpus} GPUs used")
        rid = f"{gid}r"
        shape = f"{pg.engine} tp={s.tp} pp={s.pp} ep={s.ep} dpAttention={s.dpa}"
        load = f"{pg.load:g} requests, maxNumSeqs {pg.settings.seqs_per_replica}"
        if pg.nodes_per_replica > 1:
            ch.open(2, rid, f"replica x {pg.replicas}: {shape}, {pg.nodes_per_replica} nodes each, {load}")
            _replica_body(ch, pg, rid, 3)
            ch.close(2)
        else:
            per_node = max(1, min(pg.replicas, pool.gpus_per_node // s.gpus))
            nodes = math.ceil(pg.replicas / per_node)
            ch.open(2, f"{gid}n", f"node x {nodes}: {per_node} replica{'s' if per_node != 1 else ''} each")
            ch.open(3, rid, f"replica x {pg.replicas}: {shape}, {load}")
            _replica_body(ch, pg, rid, 4)
            ch.close(3)
            ch.close(2)
        ch.close(1)
        ch.edge("lb", rid, f"{pg.replicas} x {pg.load:g} requests")
    return ch.lines + ch.edges


def _balancer(plan: Plan) -> str:
    r = plan.routing
    k8s = [g for g in plan.groups if g.pool.scheduler == "kubernetes"]
    if r.mode == "weighted":
        return f"Gateway API HTTPRoute: weighted by planned load ({plan.name})"
    if k8s:
        return f"Kubernetes Service {plan.name}: even spreading"
    replicas = sum(g.replicas for g in plan.groups)
    if replicas == 1:
        return "the replica's API server (no load balancer needed)"
    return f"your load balancer over {replicas} replicas (parc writes none outside Kubernetes)"


# ----------------------------------------------------------------------------- CSV

CSV_COLUMNS = ("rank", "chosen", "engine", "pools", "replicas", "dpAttention", "tp", "pp", "ep", "gpus", "ttftMs",
               "tpotMs", "tokensPerSecond", "tokensPerSecondPerGpu", "memoryGiBPerGpu", "meetsSlo", "costPerHour",
               "costPerMillionOutputTokens")


def csv_text(doc: dict[str, Any]) -> str:
    """The chosen placement (rank 0) and the alternatives, one row each (RFC 4180). A
    placement over several pools joins its per-group values with '+'."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    rows = [(0, True, doc["engine"], doc["placement"], doc["predicted"], doc["meetsSlo"])]
    rows += [(i, False, a["engine"], a["placement"], a["predicted"], a["meetsSlo"])
             for i, a in enumerate(doc["alternatives"], 1)]
    for rank, chosen, engine, pl, p, ok in rows:
        gs = pl["groups"]

        def join(key: str, groups: list[dict[str, Any]] = gs) -> str:
            return "+".join(str(g[key]) for g in groups)

        w.writerow([rank, str(chosen).lower(), engine, join("pool"), join("replicas"), join("dpAttention"), join("tp"),
                    join("pp"), join("ep"), pl["gpusTotal"], p["ttftMs"], p["tpotMs"], p["throughputTokensPerSecond"],
                    round(_per_gpu(p, pl["gpusTotal"]), 2), p["memoryPerGpuGiB"]["total"], str(ok).lower(),
                    p.get("costPerHour", ""), p.get("costPerMillionOutputTokens", "")])
    return buf.getvalue()


# ----------------------------------------------------------------------------- --compare


@dataclass(frozen=True)
class Variant:
    """One ``--compare`` argument solved: its best solution and cost terms, or why none."""

    label: str
    objective: str
    solution: Solution | None
    terms: cm.StepTerms | None
    reason: str = ""


_ROWS: tuple[tuple[str, str], ...] = (
    ("placement", ""), ("GPUs", ""), ("compute (FLOPs) ms/token", "compute_ms"),
    ("weight reads ms/token", "weight_read_ms"), ("KV reads ms/token", "kv_read_ms"),
    ("roofline ms/token", "bound_ms"), ("TP all-reduce ms/token", "tp_all_reduce_ms"),
    ("PP p2p ms/token", "pp_p2p_ms"), ("EP all-to-all ms/token", "ep_all_to_all_ms"),
    ("engine overhead ms/token", "overhead_ms"), ("PP bubble %", "bubble"), ("TPOT ms", "tpot"),
    ("TTFT ms", "ttft"), ("load/replica", "load"), ("tok/s", "thr"), ("tok/s/GPU", "per_gpu"),
    ("memory GiB/GPU", "mem"), ("cost/h", "cost"),
)
#: The parts of TPOT a "which term decides" sentence may name.
_TERMS = {"weight_read_ms": "weight reads", "kv_read_ms": "KV reads", "compute_ms": "compute",
          "tp_all_reduce_ms": "TP all-reduce", "pp_p2p_ms": "PP p2p", "ep_all_to_all_ms": "EP all-to-all",
          "overhead_ms": "engine overhead"}


def _value(v: Variant, key: str) -> float | None:
    sol, t = v.solution, v.terms
    if sol is None or t is None:
        return None
    g = sol.groups[0]
    if key == "tpot":
        return sol.tpot_s * 1e3
    if key == "ttft":
        return sol.ttft_s * 1e3
    if key == "load":
        return g.load
    if key == "thr":
        return sol.throughput
    if key == "per_gpu":
        return sol.throughput / sol.gpus
    if key == "mem":
        m = g.chunk.memory
        return (m.weights + max(m.kv_cache, 0.0) + m.activations + m.overhead) / cm.GIB
    if key == "cost":
        return sol.cost_per_hour
    if key == "bubble":
        return t.bubble * 100
    return float(getattr(t, key))


def _fmt(key: str, x: float | None) -> str:
    if x is None:
        return "-"
    if key in ("thr", "ttft"):
        return f"{x:.0f}"
    if key in ("load", "per_gpu", "bubble", "mem"):
        return f"{x:.1f}"
    if key == "cost":
        return _money(x)
    return f"{x:.3f}"


def _signed(key: str, x: float) -> str:
    text = _fmt(key, abs(x))
    return text if text.strip("0.") == "" else ("+" if x > 0 else "-") + text


def compare_text(variants: Sequence[Variant]) -> str:
    """The cost terms of each variant side by side (the first group of each placement), the
    difference of each later variant to the first, and a sentence on which wins and by what."""
    from parc.report import table

    headers = ["term"] + [v.label for v in variants]
    if len(variants) > 1:
        headers += [f"{v.label} - {variants[0].label}" for v in variants[1:]]
    rows = []
    for name, key in _ROWS:
        row = [name]
        for v in variants:
            if v.solution is None:
                row.append("infeasible" if key == "" and name == "placement" else "")
            elif name == "placement":
                row.append(", ".join(f"{g.replicas} x {g.cand.label}" for g in v.solution.groups))
            elif name == "GPUs":
                row.append(str(v.solution.gpus))
            else:
                row.append(_fmt(key, _value(v, key)))
        for v in variants[1:]:
            if not key and name == "GPUs" and v.solution is not None and variants[0].solution is not None:
                row.append(f"{v.solution.gpus - variants[0].solution.gpus:+d}")
                continue
            a, b = (_value(variants[0], key), _value(v, key)) if key else (None, None)
            row.append(_signed(key, b - a) if a is not None and b is not None else "")
        rows.append(row)
    out = [table(headers, rows, right=set(range(1, len(headers))))]
    out.append("(ms/token: per decode iteration, i.e. per output token of every running sequence, summed over the "
               "pipeline stages; roofline = max(weight reads, matmul FLOPs) + max(KV reads, attention FLOPs); roofline + the "
               "communication terms + engine overhead = TPOT)\n")
    for v in variants:
        if v.solution is None:
            out.append(f"{v.label}: {v.reason}\n")
    out.append(verdict(variants) + "\n")
    return "".join(out)


def verdict(variants: Sequence[Variant]) -> str:
    """Which variant wins on the objective, by how much, and which cost term differs most."""
    ok = [v for v in variants if v.solution is not None and v.terms is not None]
    if not ok:
        return "No variant has a feasible placement."
    objective = ok[0].objective
    best = min(ok, key=lambda v: v.solution.key(objective) if v.solution else ())
    if len(ok) == 1:
        return f"{best.label} is the only feasible variant."
    other = min((v for v in ok if v is not best), key=lambda v: v.solution.key(objective) if v.solution else ())
    assert best.solution is not None and other.solution is not None and best.terms and other.terms
    b, o = best.solution, other.solution
    if objective == "latency":
        how = f"TPOT {b.tpot_s * 1e3:.1f} ms against {o.tpot_s * 1e3:.1f} ms"
    elif objective == "throughput":
        how = (f"{b.throughput:.0f} output tokens/s on {b.gpus} GPUs against {o.throughput:.0f} on {o.gpus} "
               f"({(b.throughput / o.throughput - 1) * 100 if o.throughput else 0:+.0f}%)")
    elif b.cost_per_hour is not None and o.cost_per_hour is not None:
        how = f"{_money(b.cost_per_hour)} per hour against {_money(o.cost_per_hour)}"
    else:
        how = f"{b.gpus} GPUs against {o.gpus}"
    key = max(_TERMS, key=lambda k: (abs(getattr(other.terms, k) - getattr(best.terms, k)), k))
    tb, to = getattr(best.terms, key), getattr(other.terms, key)
    return (f"{best.label} wins on {objective}: {how}. The cost term that differs most per token is "
            f"{_TERMS[key]}: {tb:.3f} ms against {to:.3f} ms for {other.label}"
            + (f" (at {best.solution.groups[0].load:g} and {other.solution.groups[0].load:g} requests per replica)."
               if objective != "latency" else "."))


__all__ = ["markdown", "diagram", "csv_text", "compare_text", "verdict", "Variant", "md", "mermaid_label",
           "link_label", "CSV_COLUMNS"]
