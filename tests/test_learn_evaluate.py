"""Held-out evaluation, the CLI (train / evaluate --json / predict), explanation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets import cli
from mmspec_widgets.edges import edge_set_key
from mmspec_widgets.learn._synthetic import make_synthetic_training_set
from mmspec_widgets.learn.bundle import save_model
from mmspec_widgets.learn.evaluate import default_edge_sets, evaluate_model, write_report
from mmspec_widgets.learn.explain import edge_importance, energy_importance
from mmspec_widgets.learn.fusion import CLASSIFICATION_TARGETS, TARGETS, MultimodalModel
from mmspec_widgets.learn.plots import plot_importance

EDGES = ("O_K", "Li_K", "Mn_L23", "Co_L23", "Ni_L23", "Mn_K", "Co_K", "Ni_K")
SMALL = dict(params={"max_iter": 30, "min_samples_leaf": 5, "max_leaf_nodes": 7},
             settings={"n_points": 10, "n_windows": 2, "n_peaks": 1}, n_folds=3,
             dropout_copies=2, augment_copies=0)


@pytest.fixture(scope="module")
def toy():
    return make_synthetic_training_set(n_structures=20, sites=4, seed=11, missing=0.02)


@pytest.fixture(scope="module")
def model(toy):
    train = toy.isel(sample=np.flatnonzero(toy.split.values == "train"))
    return MultimodalModel(**SMALL).fit(train)


@pytest.fixture(scope="module")
def files(tmp_path_factory, toy, model):
    d = tmp_path_factory.mktemp("learn-cli")
    ts = d / "training_set.nc"
    toy.to_netcdf(ts, engine="h5netcdf")
    bundle = save_model(model, d / "model.skops")
    return d, ts, bundle


def test_default_edge_sets_cover_singles_named_sets_and_all():
    keys = [edge_set_key(s) for s in default_edge_sets(EDGES)]
    assert keys[:8] == list(EDGES)
    for must in ("O_K+Mn_L23+Co_L23+Ni_L23", "O_K+Li_K+Mn_L23+Co_L23+Ni_L23",
                 "Mn_K+Co_K+Ni_K", "+".join(EDGES)):
        assert must in keys
    assert len(keys) == len(set(keys))
    small = [edge_set_key(s) for s in default_edge_sets(["Ni_K", "O_K"])]
    assert small == ["O_K", "Ni_K", "O_K+Ni_K"]


def test_evaluate_model_schema_and_values(model, toy):
    res = evaluate_model(model, toy, details=True)
    assert set(res["targets"]) == set(TARGETS)
    for t, r in res["targets"].items():
        assert r["metric"] == ("roc_auc" if t in CLASSIFICATION_TARGETS else "r2")
        assert list(r["by_edges"]) == [edge_set_key(s) for s in default_edge_sets(EDGES)]
        for v in r["by_edges"].values():
            assert v is None or (np.isfinite(v) and v <= 1.0)
    li = res["targets"]["li_content"]["by_edges"]
    assert li["+".join(EDGES)] > 0.6
    n = res["details"]["n_test"]
    # default: a set is scored on samples with at least one of its edges
    assert n["+".join(EDGES)] >= max(n[e] for e in EDGES) > 10
    holes = toy.copy(deep=True)
    test_rows = np.flatnonzero(toy.split.values == "test")[:4]
    holes["Mn_L23"][test_rows] = np.nan  # regions without Mn
    sets = [("O_K",), tuple(EDGES)]  # the two sets compared below
    n_any = evaluate_model(model, holes, sets, details=True)["details"]["n_test"]
    strict = evaluate_model(model, holes, sets, details=True, require="all")["details"]["n_test"]
    assert n_any["O_K"] == strict["O_K"] >= strict["+".join(EDGES)] > 10
    assert strict["+".join(EDGES)] <= n_any["+".join(EDGES)] - 4
    cov = res["details"]["coverage"]["+".join(EDGES)]["li_content"]
    assert 0 < cov["within_1std"] <= cov["within_90"] <= 1
    # a set with no test samples scores None rather than failing
    empty = toy.copy(deep=True)
    empty["Co_K"][:] = np.nan
    res2 = evaluate_model(model, empty, [("Co_K",), ("O_K",)])
    assert res2["targets"]["li_content"]["by_edges"]["Co_K"] is None
    assert res2["targets"]["li_content"]["by_edges"]["O_K"] is not None


def test_cli_evaluate_json_schema(files, capsys):
    d, ts, bundle = files
    assert cli.main(["evaluate", "--json", "--model", str(bundle),
                     "--training-set", str(ts)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["targets"]
    assert set(out["targets"]) == set(TARGETS)
    for r in out["targets"].values():
        assert set(r) == {"metric", "by_edges"} and r["metric"] in ("r2", "roc_auc")
        assert "O_K+Mn_L23+Co_L23+Ni_L23" in r["by_edges"] and "Ni_K" in r["by_edges"]
        assert all(isinstance(v, float) or v is None for v in r["by_edges"].values())
    assert cli.main(["evaluate", "--json", "--model", str(bundle), "--training-set", str(ts),
                     "--edge-sets", "Ni_L23+O_K", "Ni_K"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["targets"]["li_content"]["by_edges"]) == ["O_K+Ni_L23", "Ni_K"]


def test_cli_evaluate_report_writes_markdown_and_figure(files, tmp_path, capsys):
    d, ts, bundle = files
    assert cli.main(["evaluate", "--model", str(bundle), "--training-set", str(ts),
                     "--report", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "li_content" in text and "O_K+Ni_L23" in text
    md = (tmp_path / "evaluation.md").read_text()
    assert "| li_content | r2 |" in md and "evaluation.png" in md
    assert "within 1 std" in md and "best single edge" in md
    png = (tmp_path / "evaluation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_predict_writes_maps(files, toy, tmp_path, capsys):
    d, ts, bundle = files
    te = toy.isel(sample=slice(0, 6))[["O_K", "Ni_L23", "Ni_K"]]
    te = te.drop_vars(["structure_id", "split"]).rename(sample="scan")
    src = tmp_path / "edges.nc"
    te.to_netcdf(src, engine="h5netcdf")
    before = src.read_bytes()
    out = tmp_path / "maps.nc"
    assert cli.main(["predict", str(src), "--edges", "O_K", "Ni_L23", "--model", str(bundle),
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "O_K+Ni_L23" in text
    # a model trained without phases: the phase map is unknown everywhere, and says why
    assert "most probable phase (pixels): unknown 6 (unknown: a phase target not learnt" in text
    maps = xr.load_dataset(out, engine="h5netcdf")
    assert maps["li_content"].dims == ("scan",) and maps.sizes["scan"] == 6
    assert maps.attrs["edge_set"] == "O_K+Ni_L23"
    step = json.loads(maps.attrs["history"])[-1]
    assert step["edges"] == ["O_K", "Ni_L23"] and step["drop_ood_edges"] == 10.0
    assert maps["n_edges"].values.max() == 2
    assert src.read_bytes() == before  # the input file is untouched
    assert cli.main(["predict", str(tmp_path / "nope.nc"), "--model", str(bundle),
                     "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
    assert cli.main(["predict", str(src), "--edges", "Fe_L23", "--model", str(bundle),
                     "--out", str(out)]) == 1
    assert "unknown edge" in capsys.readouterr().err


def test_cli_train_reproduces_a_bundle(files, tmp_path, capsys):
    d, ts, _ = files
    out = tmp_path / "trained.skops"
    assert cli.main(["train", "--training-set", str(ts), "--out", str(out), "--trials", "0",
                     "--fusion", "early", "--edges", "O_K", "Ni_K", "--folds", "3",
                     "--dropout-copies", "1", "--augment-copies", "0", "--quiet"]) == 0
    assert out.exists() and out.with_suffix(".json").exists()
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["edges"] == ["O_K", "Ni_K"] and info["params"]["fusion"] == "early"
    assert "saved" in capsys.readouterr().out


def test_edge_and_energy_importance(toy):
    train = toy.isel(sample=np.flatnonzero(toy.split.values == "train"))
    # (the toy's Co oxidation hardly varies, 3.0 - 3.2: not learnt, so Ni is the second)
    m = MultimodalModel(edges=("Mn_L23", "Ni_L23"), targets=("mn_oxidation", "ni_oxidation"),
                        **SMALL).fit(train)
    assert not m.not_learnt_
    imp = edge_importance(m, toy, n_repeats=2)
    assert imp.dims == ("target", "edge") and list(imp.edge.values) == ["Mn_L23", "Ni_L23"]
    assert float(imp.sel(target="mn_oxidation", edge="Mn_L23")) > \
        float(imp.sel(target="mn_oxidation", edge="Ni_L23")) + 0.2
    assert float(imp.sel(target="ni_oxidation", edge="Ni_L23")) > \
        float(imp.sel(target="ni_oxidation", edge="Mn_L23"))
    en = energy_importance(m, toy, window=5.0, targets=["mn_oxidation"])
    assert set(en.data_vars) == {"Mn_L23", "Ni_L23"}
    mn = en["Mn_L23"].sel(target="mn_oxidation")
    assert mn.dims == ("energy_Mn_L23",) and mn.sizes["energy_Mn_L23"] == 201
    # the importance lies around the L3 white line (about 640 - 647 eV in the toy spectra)
    e = mn["energy_Mn_L23"].values
    assert float(mn[(e > 637) & (e < 648)].mean()) > float(mn[e > 660].mean())
    fig = plot_importance(en, "mn_oxidation", spectra=toy)
    assert len(fig.axes) >= 2
    import matplotlib.pyplot as plt

    plt.close(fig)
    with pytest.raises(Exception, match="no target"):
        plot_importance(en, "li_content")


@pytest.fixture(scope="module")
def small_result(model, toy):
    return evaluate_model(model, toy, [("O_K",), ("Ni_K",), ("O_K", "Ni_K")], details=True)


def test_bootstrap_scores_equal_the_score_of_each_resample():
    from mmspec_widgets.learn.evaluate import bootstrap_scores, target_score

    rng = np.random.default_rng(3)
    n = 40
    for t in ("li_content", "o_vacancy"):
        y = rng.normal(size=n) if t == "li_content" else (rng.random(n) > 0.6).astype(float)
        p = np.round(y + rng.normal(0, 0.7, n), 1)  # ties for the AUC
        p[[3, 7]] = np.nan
        idx = rng.integers(0, n, (200, n))
        idx[0] = 0  # a resample of one sample: no score
        counts = np.zeros((200, n))
        np.add.at(counts, (np.repeat(np.arange(200), n), idx.ravel()), 1.0)
        fast = bootstrap_scores(t, y, p, counts, 5)
        slow = np.array([np.nan if (v := target_score(t, y[i], p[i], 5)) is None else v
                         for i in idx])
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
        assert np.isnan(fast[0])
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_write_report_from_result(model, small_result, tmp_path):
    res = small_result
    md, png = write_report(res, tmp_path, model=model)
    text = md.read_text()
    assert text.count("\n| ") >= 9
    assert model.model_id in text


def test_cross_validate_pools_out_of_fold_predictions(toy, tmp_path):
    from mmspec_widgets.learn.evaluate import cross_validate

    res = cross_validate(toy, [("Ni_K",), ("O_K", "Ni_K")], cv_folds=3,
                         edges=("O_K", "Ni_K"), targets=("li_content", "antisite"), **SMALL)
    assert set(res["targets"]) == {"li_content", "antisite"}
    assert res["targets"]["antisite"]["metric"] == "roc_auc"
    n_train = int((toy.split.values == "train").sum())
    n = res["details"]["n_test"]
    assert n_train - 5 <= n["Ni_K"] <= n["O_K+Ni_K"] <= n_train  # every train sample once
    assert res["targets"]["li_content"]["by_edges"]["O_K+Ni_K"] > 0.3
    # fused vs best single edge, scored on the out-of-fold samples both have
    v = res["details"]["fused_vs_single"]["li_content"]
    assert (v["single"], v["fused"]) == ("Ni_K", "O_K+Ni_K")
    assert v["n"] == n["Ni_K"] and v["verdict"] in ("yes", "no", "tie")
    by = res["targets"]["li_content"]["by_edges"]
    if v["n"] == n["O_K+Ni_K"]:  # same samples: the difference is that of the table
        assert v["diff"] == pytest.approx(by["O_K+Ni_K"] - by["Ni_K"])
    lo, hi = v["ci95"]
    assert lo <= v["diff"] <= hi
    md, _ = write_report(res, tmp_path, cv_result=res)
    text = md.read_text()
    assert "Grouped cross-validation per edge set" in text
    assert "Fused against the best single edge on these out-of-fold" in text
    assert (tmp_path / "evaluation_cv.png").exists()


def test_summarize_and_compare_configs(toy, model):
    from mmspec_widgets.learn.evaluate import compare_configs, summarize

    res = evaluate_model(model, toy)
    s = summarize(res)
    li = s["li_content"]
    singles = [v for k, v in res["targets"]["li_content"]["by_edges"].items()
               if "+" not in k and v is not None]
    assert li["single_best"] == max(singles)
    assert li["single_mean"] == pytest.approx(np.mean(singles))
    assert li["all"] == res["targets"]["li_content"]["by_edges"]["+".join(EDGES)]
    cmp = compare_configs(toy, {"cdf only": {"kinds": ("cdf",)}}, cv_folds=3,
                          edges=("O_K", "Ni_K"), targets=("li_content",),
                          **{k: v for k, v in SMALL.items() if k != "n_folds"})
    assert list(cmp) == ["cdf only"] and cmp["cdf only"]["li_content"]["all"] is not None


def test_fused_vs_single_paired_bootstrap():
    """The fused-vs-single verdict comes from a paired bootstrap of the score
    difference on the shared test samples: clearly better, indistinguishable
    and clearly worse are told apart."""
    from mmspec_widgets.learn.evaluate import _fused_vs_single

    rng = np.random.default_rng(0)
    n = 40
    y = rng.uniform(0, 1, n)
    rows = {"A": np.ones(n, bool), "A+B": np.ones(n, bool)}

    def verdict(noise_single, noise_fused, offset=0.0):
        ps = y + rng.normal(0, noise_single, n)
        pf = y + rng.normal(0, noise_fused, n) + offset
        preds = {"A": {"li_content": ps}, "A+B": {"li_content": pf}}
        by = {"A": 1 - np.mean((ps - y) ** 2) / np.var(y),
              "A+B": 1 - np.mean((pf - y) ** 2) / np.var(y)}
        return _fused_vs_single("li_content", by, preds, rows, y, 5)

    better = verdict(0.25, 0.02)
    assert better["verdict"] == "yes" and better["ci95"][0] > 0 and better["n"] == n
    worse = verdict(0.02, 0.25)
    assert worse["verdict"] == "no" and worse["ci95"][1] < 0
    same = verdict(0.1, 0.1)
    assert same["verdict"] == "tie" and same["ci95"][0] < same["diff"] < same["ci95"][1]
    # only the samples both sets were scored on enter the comparison
    rows["A"][:10] = False
    preds = {"A": {"li_content": y[10:]}, "A+B": {"li_content": y + 0.1}}
    r = _fused_vs_single("li_content", {"A": 1.0, "A+B": 0.9}, preds, rows, y, 5)
    assert r["n"] == n - 10 and r["verdict"] == "no"


def test_report_states_the_bootstrap_verdict(model, small_result, tmp_path):
    res = small_result
    v = res["details"]["fused_vs_single"]["li_content"]
    assert v["single"] in ("O_K", "Ni_K") and v["fused"] == "O_K+Ni_K"
    assert v["verdict"] in ("yes", "no", "tie")
    md, _ = write_report(res, tmp_path, model=model)
    row = next(ln for ln in md.read_text().splitlines() if ln.startswith("| li_content | O_K")
               or ln.startswith("| li_content | Ni_K"))
    assert f"| {v['verdict']} |" in row and "to" in row
