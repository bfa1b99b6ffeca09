"""Stage 4, solve (disaggregated plans, ``engine.disaggregation: auto | on``): a prefill group
and a decode group of one engine, each with its own shape and replica count, on one pool or
two, the KV cache of every prompt moved from the prefill instance to the decode instance over
the link between them (README "Disaggregated prefill/decode").

The load model, per plan (Rp prefill replicas, Rd decode replicas, L requests decoding per
decode replica):

- decode: every iteration carries the L running sequences' next tokens and no prefill chunk,
  so TPOT is the decode-only step at L (:func:`parc.costmodel.decode_only`);
- requests finish at lambda = Rd x L / (TTFT + outputTokens x TPOT) per second (Little's law),
  and as many arrive;
- prefill: Rp replicas complete ``rate`` prompts per second each when saturated
  (:func:`parc.costmodel.prefill_service`); at utilisation rho = lambda / (Rp x rate) a prompt
  waits rho / (2 (1 - rho)) prefill iterations (M/D/1), then takes the time of a prompt alone;
- TTFT = prefill wait + prefill + the KV transfer (:func:`parc.costmodel.kv_transfer_s`);
  TTFT and lambda depend on each other: a quadratic in rho settles them (the wait grows
  without bound as rho nears 1, so a closed loop of users always settles below saturation).

Search: per engine that parc deploys disaggregated (``kv_transfer`` in its data file), the
prefill shapes with the most prompts per second per GPU and the fastest lone prompt, and the
decode shapes with the most output tokens per second per GPU within the TPOT target and the
lowest TPOT; for each pair every prefill replica count, the decode replicas filling what is
left (objective cost: the fewest that meet the SLO).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from dataclasses import dataclass, field

from parc import costmodel as cm
from parc.engines import capabilities
from parc.solver import Candidate, Group, Solution, _allowed, _Evaluator, rank

#: Prefill and decode shapes kept per criterion (the pairs are costed exhaustively).
KEEP = 4


@dataclass(frozen=True)
class _Prefill:
    cand: Candidate
    tokens: int  # the chunk budget (max-num-batched-tokens) of the prefill instance
    service: cm.PrefillService


@dataclass(frozen=True)
class _Decode:
    cand: Candidate
    prep: cm.Prepared
    capacity: int  # sequences of mean length a replica's KV cache holds
    slo_load: int = 0  # the largest load within the TPOT target (0: none meets it)
    # cm.decode_only by load, memoised: every prefill group paired with this one asks again
    at: dict[float, tuple[float, cm.Comm, float]] = field(default_factory=dict, compare=False, repr=False)

    def decode(self, load: float) -> tuple[float, cm.Comm, float]:
        hit = self.at.get(load)
        if hit is None:
            hit = self.at[load] = cm.decode_only(self.prep, load)
        return hit


@dataclass(frozen=True)
class Outcome:
    """One disaggregated placement's predictions."""

    ttft_s: float
    tpot_s: float
    throughput: float
    rate: float  # requests per second
    transfer_s: float
    rho: float  # prefill utilisation
    comm: cm.Comm
    bubble: float


def engines_supporting() -> tuple[str, ...]:
    return tuple(n for n, c in capabilities().items() if c.kv_transfer)


def _prefill_options(ev: _Evaluator, cs: list[Candidate]) -> list[_Prefill]:
    opts = []
    for c in cs:
        best = None
        for ch in c.chunks:
            sv = cm.prefill_service(ev.prepare(c, ch.tokens))
            if best is None or sv.rate > best.service.rate * 1.01:
                best = _Prefill(c, ch.tokens, sv)
        if best is not None:
            opts.append(best)
    by_rate = sorted(opts, key=lambda o: (-o.service.rate / o.cand.shape.gpus, o.cand.shape.gpus, o.cand.shape))
    by_alone = sorted(opts, key=lambda o: (o.service.alone_s, o.cand.shape.gpus, o.cand.shape))
    return _unique(by_rate[:KEEP] + by_alone[:2] + _per_size(by_rate))


def _decode_options(ev: _Evaluator, cs: list[Candidate]) -> list[_Decode]:
    opts = []
    for c in cs:
        ch = c.chunks[0]  # the smallest activation budget leaves the most KV cache
        d = _Decode(c, ev.prepare(c, ch.tokens), ch.max_load)
        opts.append(dataclasses.replace(d, slo_load=_max_decode_load(ev, d)))  # the TPOT memo carried over

    def per_gpu(d: _Decode) -> float:
        load = d.slo_load
        return load / d.decode(load)[0] / d.cand.shape.gpus if load else 0.0

    by_thr = sorted(opts, key=lambda d: (-per_gpu(d), d.cand.shape.gpus, d.cand.shape))
    by_tpot = sorted(opts, key=lambda d: (d.decode(1)[0], d.cand.shape.gpus, d.cand.shape))
    return _unique(by_thr[:KEEP] + by_tpot[:2] + _per_size(by_thr))


def _per_size(ranked: list) -> list:  # type: ignore[type-arg]
    """The best-ranked option of every replica size (GPUs), so that a group small enough to
    leave room for the other phase is always among the options."""
    seen: set[int] = set()
    out = []
    for x in ranked:
        k = x.cand.shape.gpus
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def _unique(xs: list) -> list:  # type: ignore[type-arg]
    seen, out = set(), []
    for x in xs:
        if id(x.cand) not in seen:
            seen.add(id(x.cand))
            out.append(x)
    return out


def _max_decode_load(ev: _Evaluator, d: _Decode) -> int:
    """The largest whole load a decode replica holds within the TPOT target (0 if none)."""
    lo, hi = 0, d.capacity
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if d.decode(mid)[0] <= ev.tpot_limit(d.cand, mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def link(a: Candidate, b: Candidate) -> tuple[cm.LinkCost, int] | None:
    """The link a prompt's KV cache crosses from a prefill replica of ``a`` to a decode replica
    of ``b`` and the GPU pairs that send at once; None when the pools have no path."""
    pa, pb = a.pool, b.pool
    streams = min(a.shape.gpus, b.shape.gpus)
    if pa.name == pb.name and pa.nodes == 1:
        return cm.link(pa, min(2, pa.gpus_per_node), a.ctx.factors), streams
    if pa.inter_node == "none" or pb.inter_node == "none":
        return None
    la = cm.link(pa, pa.gpus_per_node + 1, a.ctx.factors)
    lb = cm.link(pb, pb.gpus_per_node + 1, b.ctx.factors)
    return (la if la.gbs <= lb.gbs else lb), streams


def _nodes(pool_gpn: int, parts: list[tuple[Candidate, int]]) -> int:
    """Nodes of ``pool_gpn`` GPUs that replicas ``parts`` (candidate, count) need: whole nodes
    for replicas spanning nodes; sub-node replicas packed, exactly when their sizes divide the
    node (powers of two on power-of-two nodes), else each size on nodes of its own."""
    whole = sum(c.nodes_per_replica * r for c, r in parts if c.shape.gpus > pool_gpn)
    small = [(c.shape.gpus, r) for c, r in parts if c.shape.gpus <= pool_gpn and r]
    if all(pool_gpn % g == 0 for g, _ in small):
        return whole + math.ceil(sum(g * r for g, r in small) / pool_gpn)
    return whole + sum(math.ceil(r / (pool_gpn // g)) for g, r in small)


def _fits(a: Candidate, rp: int, b: Candidate, rd: int, max_gpus: int | None) -> bool:
    if max_gpus is not None and rp * a.shape.gpus + rd * b.shape.gpus > max_gpus:
        return False
    if a.pool.name == b.pool.name:
        return _nodes(a.pool.gpus_per_node, [(a, rp), (b, rd)]) <= a.pool.nodes
    return rp <= a.max_replicas and rd <= b.max_replicas


def _misfits(a: Candidate, rp: int, b: Candidate, max_gpus: int | None, rd: int) -> bool:
    return not _fits(a, rp, b, rd, max_gpus)


def evaluate(ev: _Evaluator, p: _Prefill, d: _Decode, rp: int, rd: int, load: float,
             transfer_s: float) -> Outcome:
    """Predictions for ``rp`` prefill and ``rd`` decode replicas with ``load`` requests per
    decode replica (see the module docstring). The requests form a closed loop: the arrival
    rate lambda solves lambda x (TTFT(lambda) + outputTokens x TPOT) = rd x load, where TTFT
    grows without bound as the prefill utilisation nears 1, so a solution always exists
    (the left side grows with lambda from 0 without bound: one root, in closed form below)."""
    out = d.prep.ctx.output_tokens
    tpot, comm, bubble = d.decode(load)
    sv = p.service
    cap = rp * sv.rate
    users = rd * load
    # with rho = lambda / cap, a = the time of a request outside the prefill queue and
    # b = half a prefill iteration: cap rho (a + b rho / (1 - rho)) = users, i.e. (times
    # 1 - rho) cap (b - a) rho^2 + (cap a + users) rho - users = 0, whose root in [0, 1) is
    # 2 users / (a1 + sqrt(a1^2 + 4 a2 users)) (the form without cancellation for either sign of a2)
    a = sv.alone_s + transfer_s + out * tpot
    a2, a1 = cap * (sv.iteration_s / 2 - a), cap * a + users
    # (the discriminant is positive: the left side is -users at rho = 0 and cap b at rho = 1; max()
    # keeps a rounding error from reaching sqrt)
    rho = 2 * users / (a1 + math.sqrt(max(0.0, a1 * a1 + 4 * a2 * users))) if math.isfinite(a) and users > 0 else 0.0
    rate = rho * cap
    t = sv.alone_s + rho / (2 * (1 - rho)) * sv.iteration_s + transfer_s
    return Outcome(t, tpot, rate * out, rate, transfer_s, rho, comm, bubble)


def _solution(ev: _Evaluator, p: _Prefill, d: _Decode, rp: int, rd: int, load: float, o: Outcome) -> Solution:
    slo = ev.ttft is not None or ev.tpot_target is not None
    in_prefill = o.rate * max(o.ttft_s - o.transfer_s, 0.0) / rp if math.isfinite(o.ttft_s) else 1.0
    tp = cm.Timing(o.ttft_s, 0.0, p.service.iteration_s, p.service.alone_s, 0.0, cm.Comm(0.0, 0.0, 0.0), 0.0,
                   p.tokens)
    per_replica = o.throughput / rd
    td = cm.Timing(o.ttft_s, o.tpot_s, o.tpot_s, p.service.alone_s, per_replica, o.comm, o.bubble,
                   d.cand.chunks[0].tokens)
    groups = (Group(p.cand, rp, round(max(1.0, in_prefill), 2), tp, 0, "prefill"),
              Group(d.cand, rd, load, td, d.slo_load if slo else 0, "decode"))
    misses = []
    if ev.ttft is not None and o.ttft_s > ev.ttft:
        misses.append(f"TTFT {o.ttft_s * 1e3:.0f} ms > target {ev.ttft * 1e3:.0f} ms")
    if miss := ev.tpot_miss(d.cand, load, o.tpot_s):
        misses.append(miss)
    min_thr = ev.res.spec.slo.min_throughput_tokens_per_second
    if min_thr is not None and o.throughput < min_thr:
        misses.append(f"throughput {o.throughput:.0f} tokens/s < target {min_thr:.0f}")
    if math.ceil(load) > d.capacity:
        misses.append(f"decode {d.cand.label} holds {d.capacity} sequences, load is {math.ceil(load)}")
    return Solution(groups, o.ttft_s, o.tpot_s, o.throughput, not misses, tuple(misses))


def _counts(top: int, allowed: set[int] | None = None) -> list[int]:
    """Replica counts tried up to ``top`` (each group's): those constraints.replicas allows, else
    every count to 16, then powers of two and ``top``."""
    if allowed is not None:
        return sorted(r for r in allowed if 1 <= r <= top)
    out = set(range(1, min(top, 16) + 1))
    k = 32
    while k < top:
        out.add(k)
        k *= 2
    out.add(top)
    return sorted(x for x in out if x >= 1)


def _best_load(ev: _Evaluator, p: _Prefill, d: _Decode, rp: int, rd: int, xfer: float, floor: float) -> float | None:
    """Throughput objective: the largest decode load per replica within memory and the SLO
    (TTFT and TPOT grow with it), at least ``floor``; None if none. TPOT misses its target
    beyond ``d.slo_load`` whatever the prefill side does."""
    lo, hi = 0, d.slo_load
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ev.slo_ok(d.cand, mid, evaluate(ev, p, d, rp, rd, mid, xfer)):
            lo = mid
        else:
            hi = mid - 1
    if lo == 0 or lo < floor:
        return None
    return float(lo)


def search(ev: _Evaluator, cands: list[Candidate]) -> list[Solution]:
    """Disaggregated solutions, best first under the objective."""
    res = ev.res
    spec = res.spec
    conc = spec.workload.concurrency
    objective = spec.slo.objective
    max_gpus = spec.constraints.max_gpus
    allowed = _allowed(spec.constraints.replicas)
    # one SLURM job runs both phases: on slurm targets they share a pool
    one_pool = "slurm" in res.targets
    arch, kv, inp = res.model, res.kv_precision, spec.workload.input_tokens
    out: list[Solution] = []
    for engine in engines_supporting():
        # pools of the same hardware cost the same: one representative candidate per shape and
        # hardware (solver._Evaluator._phys), so a fleet of many pools of a few GPU types is
        # searched once per type
        reps: dict[int, Candidate] = {}
        for c in cands:
            if c.engine == engine:
                reps.setdefault(ev._phys(c), c)
        cs = list(reps.values())
        if not cs:
            continue
        pre, dec = _prefill_options(ev, cs), _decode_options(ev, cs)
        for p in pre:
            for d in dec:
                if one_pool and p.cand.pool.name != d.cand.pool.name:
                    continue
                path = link(p.cand, d.cand)
                if path is None:
                    continue
                xfer = cm.kv_transfer_s(arch, kv, inp, *path)
                best: list[Solution] = []
                for rp in _counts(p.cand.max_replicas, allowed):
                    # more decode replicas never fit where fewer do not: the counts that fit are a prefix
                    counts = _counts(d.cand.max_replicas, allowed)
                    rds = counts[:bisect.bisect_left(counts, True, key=functools.partial(_misfits, p.cand, rp, d.cand,
                                                                                          max_gpus))]
                    if not rds:
                        break
                    sol = _split(ev, p, d, rp, rds, xfer, conc, objective)
                    if sol is not None:
                        best.append(sol)
                out += rank(best, objective)[:2]
    return rank(out, objective)


def _split(ev: _Evaluator, p: _Prefill, d: _Decode, rp: int, rds: list[int], xfer: float, conc: int | None,
           objective: str) -> Solution | None:
    if objective == "throughput" or conc is None:
        rd = rds[-1]
        floor = conc / rd if conc else 0.0
        load = _best_load(ev, p, d, rp, rd, xfer, floor)
        if load is None:
            return None
        return _solution(ev, p, d, rp, rd, load, evaluate(ev, p, d, rp, rd, load, xfer))
    if objective == "cost":
        for rd in rds:  # the fewest decode replicas that meet the SLO
            load = conc / rd
            if math.ceil(load) > d.capacity:
                continue
            sol = _solution(ev, p, d, rp, rd, load, evaluate(ev, p, d, rp, rd, load, xfer))
            if sol.meets_slo:
                return sol
        return None
    rd = rds[-1]
    load = conc / rd
    return _solution(ev, p, d, rp, rd, load, evaluate(ev, p, d, rp, rd, load, xfer))


def _said(s: Solution) -> str:
    return (f"{s.throughput:.0f} output tokens/s on {s.gpus} GPUs ({s.throughput / s.gpus:.0f} per GPU), "
            f"TTFT {s.ttft_s * 1e3:.0f} ms, TPOT {s.tpot_s * 1e3:.1f} ms")


def _shape(s: Solution) -> str:
    return " + ".join(f"{g.phase} {g.replicas} x tp={g.cand.shape.tp} pp={g.cand.shape.pp} ep={g.cand.shape.ep} "
                      f"dpAttention={g.cand.shape.dpa}" if g.phase != "both" else
                      f"{g.replicas} x tp={g.cand.shape.tp} pp={g.cand.shape.pp} ep={g.cand.shape.ep} "
                      f"dpAttention={g.cand.shape.dpa}" for g in s.groups)


def explain(best: Solution, aggregated: Solution | None, split: Solution | None, objective: str, mode: str) -> str:
    """Why the chosen plan is (or is not) disaggregated, with both plans' numbers."""
    what = {"throughput": "output tokens/s", "cost": "cost", "latency": "TPOT, then TTFT"}[objective]
    if best.disaggregated:
        if aggregated is None:
            return (f"disaggregated prefill/decode ({_shape(best)}): {_said(best)}; no aggregated placement meets "
                    "the SLO here")
        gain = (best.throughput / aggregated.throughput - 1) if aggregated.throughput > 0 else 0.0
        verdict = "won" if mode == "auto" else "was asked for (engine.disaggregation: on)"
        return (f"disaggregated prefill/decode {verdict} on {what}: {_shape(best)} gives {_said(best)}; the best "
                f"aggregated plan ({_shape(aggregated)}) gives {_said(aggregated)} ({gain * 100:+.0f}% output "
                "tokens/s per GPU for the split)" if objective == "throughput" else
                f"disaggregated prefill/decode {verdict} on {what}: {_shape(best)} gives {_said(best)}; the best "
                f"aggregated plan ({_shape(aggregated)}) gives {_said(aggregated)}")
    if split is None:
        return ("disaggregated prefill/decode was considered (engine.disaggregation: auto) but no split of a prefill "
                "and a decode group meets the SLO on these pools")
    return (f"aggregated serving won on {what}: {_said(best)}; the best disaggregated split ({_shape(split)}) gives "
            f"{_said(split)}")


def why_none(res: object, cands: list[Candidate], split: list[Solution]) -> tuple[str, list[str]]:  # noqa: ARG001
    """The infeasible message when ``engine.disaggregation: on`` finds no split."""
    names = ", ".join(engines_supporting())
    able = [c for c in cands if c.engine in engines_supporting()]
    room = any(link(a, b) is not None and _fits(a, 1, b, 1, None) for a in able for b in able)
    if not split and room:
        return ("engine.disaggregation is on but no disaggregated split meets the SLO: a prefill and a decode group "
                "fit side by side, but none holds the load within the TTFT and TPOT targets (under objective "
                "throughput, while sustaining workload.concurrency)",
                ["fix: relax slo targets, lower workload.concurrency, add GPUs, or set engine.disaggregation: auto "
                 "(or off)"])
    if not split:
        return ("engine.disaggregation is on but no prefill group and decode group fit side by side: a disaggregated "
                f"plan needs two engine instances of {names}, one per phase, with a path between them "
                "(the same single node, or pools with an inter-node fabric)",
                ["fix: add GPUs or nodes, or set engine.disaggregation: auto (or off) for an aggregated plan"])
    s = split[0]
    return (f"engine.disaggregation is on but no disaggregated split meets the SLO; closest: {_shape(s)}",
            ["misses: " + "; ".join(s.misses),
             "fix: relax slo targets, add GPUs, or set engine.disaggregation: auto (or off)"])
