import json

import plotly.graph_objects as go
import pytest
import torch

import workbench as wb
from workbench.results import load_records
from workbench.viz.explorer import _initial


def test_explorer_is_static_without_a_widget_frontend(monkeypatch):
    monkeypatch.setenv("WORKBENCH_WIDGETS", "0")
    calls = []

    def render(depth, policy):
        calls.append((depth, policy))
        return go.Figure(go.Bar(x=[policy], y=[depth]))

    fig = wb.viz.explorer(render, depth=[14, 32], policy=["bn_only", "full"])
    assert isinstance(fig, go.Figure) and calls == [(14, "bn_only")]
    with pytest.raises(ValueError, match="no values"):
        wb.viz.explorer(render, depth=[])


def test_explorer_starts_at_the_render_default_when_it_is_offered(monkeypatch):
    """A slider keeps its values in order and still opens at the render's default; a default not offered,
    or none, gives the first value; in the live widget too."""
    def render(margin=0.2, arm="sum", k=99, seed=None):
        return go.Figure(go.Bar(x=[f"{arm} {k} {seed}"], y=[margin]))

    values = dict(margin=[0.05, 0.1, 0.2, 0.4], arm=["hardest", "sum"], k=[1, 2], seed=[0, 1])
    monkeypatch.setenv("WORKBENCH_WIDGETS", "0")
    fig = wb.viz.explorer(render, **values)
    assert list(fig.data[0].y) == [0.2] and list(fig.data[0].x) == ["sum 1 0"]
    monkeypatch.setenv("WORKBENCH_WIDGETS", "1")
    box = wb.viz.explorer(render, **values)
    assert [box.controls[k].value for k in values] == [0.2, "sum", 1, 0]
    assert list(box.figure.data[0].y) == [0.2]
    assert wb.viz.explorer(lambda **kw: render(**kw), margin=[0.4, 0.2]).controls["margin"].value == 0.4
    tensors = [torch.tensor([0.1, 0.2]), torch.tensor([0.2, 0.2])]  # == is no truth value: no match, no error
    assert _initial(render, "margin", tensors) is tensors[0]


def test_explorer_updates_the_same_figure_widget(monkeypatch):
    monkeypatch.setenv("WORKBENCH_WIDGETS", "1")

    def render(depth, policy):
        return go.Figure(go.Bar(x=[policy], y=[depth]))

    box = wb.viz.explorer(render, depth=[14, 32, 56], policy=["bn_only", "full"])
    fig = box.figure
    assert list(fig.data[0].y) == [14]
    box.controls["depth"].value = 56
    box.controls["policy"].value = "full"
    assert box.figure is fig and list(fig.data[0].y) == [56] and list(fig.data[0].x) == ["full"]
    assert box.status.value == ""


def test_explorer_shows_a_render_error_beside_its_controls(monkeypatch):
    monkeypatch.setenv("WORKBENCH_WIDGETS", "1")

    def render(k):
        if k == 2:
            raise ValueError("no data for k=2")
        return go.Figure(go.Bar(x=["a"], y=[k]))

    box = wb.viz.explorer(render, k=[1, 2, 3])
    box.controls["k"].value = 2
    assert "ValueError: no data for k=2" in box.status.value and list(box.figure.data[0].y) == [1]
    box.controls["k"].value = 3
    assert box.status.value == "" and list(box.figure.data[0].y) == [3]


def test_frontend_detection(monkeypatch):
    monkeypatch.delenv("WORKBENCH_WIDGETS", raising=False)
    assert wb.viz.frontend() == "console"
    assert wb.viz.widgets_available() is False


def test_colab_gets_its_widget_manager_switched_on(monkeypatch, capsys):
    """In Colab the setup cell switches on the custom widget manager (without it the workbench's widgets show
    as nothing); where that fails it prints the line to run instead."""
    import sys
    import types

    calls = []
    colab, output = types.ModuleType("google.colab"), types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("on")
    colab.output = output
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    monkeypatch.delenv("WORKBENCH_WIDGETS", raising=False)
    info = wb.viz.env.check_environment(verbose=True)
    assert info["frontend"] == "colab" and info["widgets"] and calls == ["on"]
    assert "to enable widgets" not in capsys.readouterr().out

    def broken():
        raise AttributeError("no custom widget manager in this Colab")

    output.enable_custom_widget_manager = broken
    wb.viz.env.check_environment(verbose=True)
    assert "output.enable_custom_widget_manager()" in capsys.readouterr().out


def test_records_loader(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"model": "resnet14", "test_acc": 0.4}))
    (tmp_path / "b.json").write_text(json.dumps({"model": "resnet32", "test_acc": 0.5}))
    df = load_records("bn_only", folder=tmp_path)
    assert list(df["model"]) == ["resnet14", "resnet32"] and list(df["file"]) == ["a.json", "b.json"]
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="c.json holds a list"):
        load_records("bn_only", folder=tmp_path)
    (tmp_path / "c.json").write_text("{broken")
    with pytest.raises(ValueError, match="c.json is not a readable JSON record"):
        load_records("bn_only", folder=tmp_path)


def test_committed_gpu_records_are_well_formed():
    df = load_records("bn_only")
    assert len(df) >= 4
    need = {"model", "policy", "epochs", "epochs_planned", "complete", "test_acc", "device", "commit", "date", "recipe"}
    assert need <= set(df.columns)
    assert df["test_acc"].between(0, 1).all()
    assert (df["complete"] == (df["epochs"] == df["epochs_planned"])).all()


def test_attribution_maps_follow_the_signal():
    # a linear model that only looks at the top-left pixel of channel 0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1, 0] = 1.0
    x = torch.rand(2, 3, 8, 8) + 0.5
    for method in ("integrated_gradients", "saliency"):
        maps = wb.attribution.attribute(model, x, target=1, method=method)
        assert maps.shape == (2, 8, 8)
        assert torch.allclose(maps[:, 0, 0], torch.ones(2)) and float(maps[:, 1:, :].sum()) == 0.0
    with pytest.raises(ValueError, match="integrated_gradients, saliency"):
        wb.attribution.attribute(model, x, method="gradcam")
