"""Campaign: resume without recomputing, failures recorded, Dask path, CLI."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import mmspec_widgets.simulate.feff as feff_mod
import mmspec_widgets.simulate.multiplets as mult_mod
from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.simulate.campaign import (
    CampaignStore,
    make_specs,
    plan_structure,
    run_campaign,
)
from mmspec_widgets.simulate.feff import FeffParams, FeffRunError
from mmspec_widgets.simulate.structures import COMPOSITIONS, StructureSpec

TINY = FeffParams(rfms=3.0, r_cluster=4.5, corehole="FSR")
SPEC = StructureSpec(composition=COMPOSITIONS["NMC622"], li=0.8, n_o_vacancy=1, seed=7)


@pytest.fixture
def count_engines(monkeypatch):
    """Count real engine calls (FEFF runs, uncached multiplet diagonalisations)."""
    calls = Counter()
    real_feff = feff_mod.run_feff
    real_l23 = mult_mod.l23_cached.__wrapped__

    def feff(inp, *a, **k):
        calls["feff"] += 1
        return real_feff(inp, *a, **k)

    def l23(*a):
        calls["edrixs"] += 1
        return real_l23(*a)

    monkeypatch.setattr(feff_mod, "run_feff", feff)
    monkeypatch.setattr(mult_mod, "l23_cached", l23)
    return calls


def test_make_specs_balanced_and_reproducible():
    specs = make_specs(40, seed=3)
    assert [s.key for s in specs] == [s.key for s in make_specs(40, seed=3)]
    assert len({s.key for s in specs}) == 40
    first = Counter(s.defect for s in specs[:20])
    assert first == {"none": 6, "vacancy": 6, "antisite": 5, "both": 3}
    assert Counter(s.name for s in specs[:20]) == {n: 4 for n in
                                                   ("NMC111", "NMC532", "NMC622", "NMC811",
                                                    "random")}
    li = np.array([s.li for s in specs[:20]])
    assert li.min() < 0.45 and li.max() == 1.0
    with pytest.raises(MMSpecError, match="n="):
        make_specs(0)


def test_plan_structure_jobs_and_labels():
    manifest, jobs = plan_structure(SPEC, ["O_K", "Ni_K", "Ni_L23"], TINY, n_o=2)
    assert manifest["structure_id"] == SPEC.key
    assert manifest["labels"]["o_vacancy"] == 1
    # the vacancy's O neighbours (the two nearest the centre) and one O standing
    # for the rest of the region, each class weighted by its share
    o_sites = manifest["sites"]["O_K"]
    assert [r["class"] for r in o_sites] == ["near", "near", "bulk"]
    assert sum(r["weight"] for r in o_sites) == pytest.approx(1.0)
    assert o_sites[0]["weight"] == o_sites[1]["weight"] < o_sites[2]["weight"]
    n_ni_k = len(manifest["sites"]["Ni_K"])
    kinds = Counter((j["engine"], j["edge"]) for j in jobs)
    assert kinds[("feff", "O_K")] == 3 and kinds[("feff", "Ni_K")] == n_ni_k in (1, 2)
    assert kinds[("edrixs", "Ni_L23")] == len(manifest["sites"]["Ni_L23"])
    # the same plan twice gives the same job keys (resumability rests on it)
    _, again = plan_structure(SPEC, ["O_K", "Ni_K", "Ni_L23"], TINY, n_o=2)
    assert [j["key"] for j in jobs] == [j["key"] for j in again]


def test_resume_does_not_recompute(tmp_path, count_engines):
    out = tmp_path / "store"
    s1 = run_campaign([SPEC], edges=["O_K"], out=out, scheduler="sync", feff=TINY,
                      max_jobs=1, progress=False)
    assert s1["done"] == 1 and count_engines["feff"] == 1  # "interrupted" after one job
    s2 = run_campaign([SPEC], edges=["O_K"], out=out, scheduler="sync", feff=TINY,
                      progress=False)
    assert s2["done"] == 2 and count_engines["feff"] == 3  # only the missing O sites
    s3 = run_campaign([SPEC], edges=["O_K"], out=out, scheduler="sync", feff=TINY,
                      progress=False)
    assert s3["done"] == 0 and count_engines["feff"] == 3  # nothing left to do
    store = CampaignStore(out)
    keys = [r["key"] for r in store.structures()[0]["sites"]["O_K"]]
    assert all(store.has(k) for k in keys)
    got = store.get(keys[0])
    assert got["mu"].size == got["omega"].size > 30 and got["meta"]["wall_s"] > 0
    assert len(json.loads((out / "campaign.json").read_text())["runs"]) == 3


def test_failure_recorded_and_campaign_goes_on(tmp_path, monkeypatch, count_engines):
    calls = Counter()

    def flaky(inp, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise FeffRunError("FEFF failed: synthetic failure of one site")
        return count_engines_real(inp, *a, **k)

    count_engines_real = feff_mod.run_feff
    monkeypatch.setattr(feff_mod, "run_feff", flaky)
    out = tmp_path / "store"
    s = run_campaign([SPEC], edges=["O_K"], out=out, scheduler="sync", feff=TINY,
                     progress=False)
    assert s["failed"] == 1 and s["done"] == 2
    fails = CampaignStore(out).failures()
    assert len(fails) == 1 and "synthetic failure" in next(iter(fails.values()))["error"]
    # a rerun retries the failed site only, and clears its failure record
    s = run_campaign([SPEC], edges=["O_K"], out=out, scheduler="sync", feff=TINY,
                     progress=False)
    assert s["done"] == 1 and s["failed"] == 0 and not CampaignStore(out).failures()


def test_dask_local_cluster(tmp_path):
    out = tmp_path / "store"
    s = run_campaign([SPEC], edges=["Ni_L23"], out=out, n_workers=1, progress=False)
    assert s["failed"] == 0 and s["done"] >= 1
    store = CampaignStore(out)
    recs = store.structures()[0]["sites"]["Ni_L23"]
    assert all(store.has(r["key"]) for r in recs)
    # edrixs cases are shared: fewer jobs than Ni sites
    assert s["done"] == len({r["key"] for r in recs}) <= len(recs)


def test_cli_simulate_writes_readable_dataset(tmp_path):
    from mmspec_widgets.simulate.cli import main
    from mmspec_widgets.simulate.dataset import load_training_set

    out = tmp_path / "cli"
    out.mkdir()
    # a store may carry its own energy alignment (normally from the reference structure)
    (out / "alignment.json").write_text(json.dumps(
        {"shift": {"O_K": -4.0}, "l23_scale": {}, "reference": "none"}))
    rc = main(["simulate", "--structures", "1", "--edges", "O_K", "--seed", "7",
               "--out", str(out), "--fms", "3.0", "--workers", "0", "--no-progress"])
    assert rc == 0
    ds = load_training_set(out / "training_set.nc")
    assert ds.sizes["sample"] == 1
    assert np.isfinite(ds["O_K"].values).all()
    assert ds["energy_O_K"].attrs["units"] == "eV"
    assert np.isnan(ds["Ni_K"].values).all()  # not simulated -> NaN
    assert json.loads(ds.attrs["alignment"])["shift"]["O_K"] == -4.0
    assert main(["simulate", "--out", str(out)]) == 2  # --structures missing


def test_existing_scheduler_address(tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        s = run_campaign([SPEC], edges=["Ni_L23"], out=tmp_path / "store",
                         scheduler=cluster.scheduler_address, progress=False)
    assert s["failed"] == 0 and s["done"] >= 1
    store = CampaignStore(tmp_path / "store")
    assert all(store.has(r["key"]) for r in store.structures()[0]["sites"]["Ni_L23"])


# -- keys that depend on the physics only -------------------------------------
def _jiggled(nmc, scale=1e-11, seed=0):
    """The same structure with every Cartesian coordinate moved by ~``scale``."""
    import copy

    out = copy.deepcopy(nmc)
    rng = np.random.default_rng(seed)
    s = out.structure
    for i in range(len(s)):
        s.replace(i, s[i].species, s[i].coords + rng.normal(0, scale, 3),
                  coords_are_cartesian=True, properties=s[i].properties)
    return out


def test_feff_input_text_does_not_depend_on_float_rounding():
    from mmspec_widgets.simulate.feff import feff_input
    from mmspec_widgets.simulate.labels import region_sites

    nmc = SPEC.build()
    site = next(i for i, _d in region_sites(nmc) if nmc.structure[i].specie.symbol == "Ni")
    text = feff_input(nmc, site, FeffParams())
    for seed in range(3):
        other = _jiggled(nmc, seed=seed)
        assert feff_input(other, site, FeffParams()) == text
        assert [i for i, _d in region_sites(other)] == [i for i, _d in region_sites(nmc)]
    assert "-0.00000" not in text
    # equidistant atoms: listed by element, then position
    rows = [ln.split() for ln in text.split("ATOMS\n")[1].splitlines() if ln.strip() != "END"]
    r = np.array([float(v[-1]) for v in rows])
    assert np.all(np.diff(np.round(r, 4)) >= 0)


def test_replan_keeps_stored_sites(tmp_path):
    manifest, _jobs = plan_structure(SPEC, ["O_K", "Ni_K", "Ni_L23"], TINY)
    from mmspec_widgets.simulate.labels import region_sites

    sites = {e: [dict(r) for r in recs] for e, recs in manifest["sites"].items()}
    nmc = SPEC.build()
    # another Ni of the region stands for the class in the record: it is kept
    other = next(i for i, _d in region_sites(nmc) if nmc.structure[i].specie.symbol == "Ni"
                 and i != sites["Ni_K"][0]["site"])
    sites["Ni_K"][0]["site"] = int(other)
    again, jobs = plan_structure(SPEC, ["O_K", "Ni_K", "Ni_L23"], TINY, sites=sites)
    assert again["sites"]["Ni_K"][0]["site"] == other
    assert [r["site"] for r in again["sites"]["O_K"]] == \
        [r["site"] for r in manifest["sites"]["O_K"]]
    ni = next(j for j in jobs if j["edge"] == "Ni_K")
    assert ni["site"] == other and f"site {other}" in ni["inp"]


def test_rekey_structures_moves_spectra_to_new_keys(tmp_path):
    from mmspec_widgets.simulate.campaign import rekey_structures

    store = CampaignStore(tmp_path)
    manifest, jobs = plan_structure(SPEC, ["O_K", "Ni_K", "Ni_L23"], TINY)
    old = json.loads(json.dumps(manifest))
    om = np.linspace(0, 1, 5)
    for e, recs in old["sites"].items():
        for k, r in enumerate(recs):
            if e.endswith("_K"):
                r["key"] = f"f{'0' * 18}{e[:2]}{k:03d}"  # a key computed from older text
            store.put(r["key"], om, om * (k + 1), {"edge": e, "site": r["site"]})
    store.put_structure(old)
    # a structure whose rebuild no longer matches its record is left alone
    bad = json.loads(json.dumps(old))
    bad["structure_id"] = "bad000000000"
    bad["labels"]["li_content"] = 0.123
    store.put_structure(bad)
    res = rekey_structures(tmp_path)
    assert res["mismatched"] == ["bad000000000"]
    n_k = sum(len(old["sites"][e]) for e in ("O_K", "Ni_K"))
    assert res["moved"] == n_k and res["missing"] == 0
    assert res["unchanged"] == len(old["sites"]["Ni_L23"])
    now = json.loads((tmp_path / "structures" / f"{SPEC.key}.json").read_text())
    for e in ("O_K", "Ni_K"):
        for k, (r0, r1) in enumerate(zip(old["sites"][e], now["sites"][e], strict=True)):
            assert r1["key"] == manifest["sites"][e][k]["key"] != r0["key"]
            sp = store.get(r1["key"])
            assert sp["meta"]["rekeyed_from"] == r0["key"]
            np.testing.assert_array_equal(sp["mu"], om * (k + 1))
            assert not store.has(r0["key"])
    # the record left alone keeps its keys (its spectra were moved with the good one's:
    # they shared the keys here, which a real store never does)
    kept = json.loads((tmp_path / "structures" / "bad000000000.json").read_text())
    assert kept["sites"]["Ni_K"][0]["key"] == old["sites"]["Ni_K"][0]["key"]
    assert rekey_structures(tmp_path)["moved"] == 0  # idempotent


def test_stored_campaign_keys_reproduce():
    """Every FEFF and multiplet key of 25 stored structures is re-planned to a
    spectrum in the committed store (so a resumed campaign recomputes nothing)."""
    from mmspec_widgets.paths import data_dir
    from mmspec_widgets.simulate.campaign import _same_labels, _same_sites, _stored_sites

    store = CampaignStore(data_dir() / "sim")
    ms = [m for m in store.structures()  # finished structures of the layered campaign
          if (m.get("phase") or "layered") == "layered"
          and all(store.has(r["key"]) for recs in m["sites"].values() for r in recs)]
    assert len(ms) >= 240
    checked = 0
    for m in ms[:: max(1, len(ms) // 25)]:
        edges = list(m["sites"])
        sites = _stored_sites(store.manifest(m["structure_id"]), edges)
        assert sites is not None
        new, jobs = plan_structure(StructureSpec.from_dict(m["spec"]), edges,
                                   FeffParams(**m["feff"]), m["radius"], sites=sites)
        if not (_same_labels(new["labels"], m["labels"]) and _same_sites(new["sites"],
                                                                          m["sites"])):
            continue  # a rebuild that differs from its record is never re-keyed
        checked += 1
        assert all(store.has(j["key"]) for j in jobs), m["structure_id"]
        for e in edges:
            assert [r["key"] for r in new["sites"][e]] == [r["key"] for r in m["sites"][e]]
    assert checked >= 20


def test_feff_input_text_does_not_depend_on_half_way_rounding():
    """Campaign structure 0 (a = 2.85367 A): a / 2 lies exactly half-way between
    two 5-decimal coordinates, so a plain round goes either way with the last
    bit; the snapped text is the same for every jiggle of the last bits."""
    from mmspec_widgets.simulate import feff as F
    from mmspec_widgets.simulate.labels import region_sites

    nmc = make_specs(1, seed=1)[0].build()
    site = next(i for i, _d in region_sites(nmc) if nmc.structure[i].specie.symbol == "Ni")
    text = F.feff_input(nmc, site, FeffParams())
    assert " 1.42684 " in text and " -1.42684 " in text and "1.42683" not in text
    for seed in range(4):
        assert F.feff_input(_jiggled(nmc, seed=seed, scale=1e-12), site, FeffParams()) == text
    # and the plain round that keyed spectra before does depend on those bits
    assert F._snap(1.4268349999999998, 5) == F._snap(1.4268350000000002, 5) == 1.42684
    assert round(1.4268349999999998, 5) != round(1.4268350000000002, 5)
