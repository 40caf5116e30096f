"""The head registry: built-in spec modules, entry points, duplicates, broken heads, planned heads."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

import samkit
from samkit.errors import InputError
from samkit.registry import REGISTRY, HeadRegistry, HeadSpec, WeightsSpec, register

BUILTIN_MODULES = ("samkit.image.spec", "samkit.longvideo.spec", "samkit.fewshot.spec", "samkit.referring.spec")


PLANNED_HEAD = HeadSpec(name="planned-head", builder="planned_module:build", input_kind="image",
                        prompt_types=("Points",), description="a head declared before it is built", status="planned")


def spec(name: str = "dummy", source: str = "samkit", builder: str = "dummy_module:build", **fields) -> HeadSpec:
    values = {"input_kind": "image", "prompt_types": ("Points",), "description": f"{name} head"} | fields
    return HeadSpec(name=name, builder=builder, source=source, **values)


@pytest.fixture
def no_entry_points(monkeypatch):
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [])


@pytest.fixture
def module(monkeypatch):
    """Put a fake module with the given attributes in sys.modules (removed after the test)."""

    def make(name: str, **attributes) -> types.ModuleType:
        created = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(created, key, value)
        monkeypatch.setitem(sys.modules, name, created)
        return created

    return make


def test_builtin_heads_are_declared_next_to_each_head():
    from samkit.backbones.registry import BACKBONES
    from samkit.fewshot.spec import HEADS as FEWSHOT
    from samkit.image.spec import HEADS as IMAGE
    from samkit.longvideo.spec import HEADS as LONGVIDEO
    from samkit.referring.spec import HEADS as REFERRING

    assert [head.name for head in IMAGE] == list(BACKBONES)
    assert all(head.input_kind == "image" and head.is_backbone for head in IMAGE)
    assert IMAGE[0].weights[0].filename == BACKBONES[IMAGE[0].name].checkpoint_filename
    assert [head.name for head in LONGVIDEO] == ["sam2long", "sam2"]
    assert {head.default_backbone for head in LONGVIDEO} == {"sam2.1-hiera-tiny"}
    assert [(head.name, head.status, head.builder) for head in FEWSHOT + REFERRING] == [
        ("fssam", "available", "samkit.fewshot.segmenter:build_fewshot_segmenter"),
        ("refersam", "available", "samkit.referring.segmenter:build_referring_segmenter"),
    ]


def test_list_models_kinds_and_planned_heads():
    heads, backbones = samkit.list_models(kind="head"), samkit.list_models(kind="backbone")
    assert heads == ["fssam", "refersam", "sam2", "sam2long"]
    assert samkit.list_models() == heads + backbones
    assert samkit.list_models(kind="video") == ["sam2", "sam2long"]
    assert set(samkit.list_models(kind="image")) == set(backbones) | {"fssam", "refersam"}
    register(PLANNED_HEAD)
    try:
        assert set(samkit.list_models(planned=True)) - set(samkit.list_models()) == {"planned-head"}
    finally:
        REGISTRY.unregister("planned-head")
    with pytest.raises(InputError, match="kind must be one of"):
        samkit.list_models(kind="heads")


def test_loading_a_planned_head_says_it_is_planned():
    register(PLANNED_HEAD)
    try:
        with pytest.raises(InputError, match=r"'planned-head' is planned but not implemented.*available heads: fssam, "
                                             r"refersam, sam2, sam2long"):
            samkit.load("planned-head")
    finally:
        REGISTRY.unregister("planned-head")


def test_register_refuses_to_overwrite_and_names_both_sources(no_entry_points):
    registry = HeadRegistry(spec_modules=())
    first, second = spec(source="pkg-a", builder="a:build"), spec(source="pkg-b", builder="b:build")
    registry.register(first)
    registry.register(first)  # the same spec again changes nothing
    with pytest.raises(InputError, match=r"'dummy' is declared twice, by pkg-a \(a:build\) and pkg-b \(b:build\)"):
        registry.register(second)
    assert registry.get("dummy") is first
    registry.register(second, replace_existing=True)
    assert registry.get("dummy") is second


def test_module_level_register_adds_to_the_process_registry():
    extra = spec(name="registered-by-hand", builder="samkit.image.segmenter:build_image_segmenter")
    samkit.register(extra)
    try:
        assert samkit.registry.get_spec("registered-by-hand") is extra
        assert "registered-by-hand" in samkit.list_models()
        with pytest.raises(InputError, match="declared twice"):
            samkit.register(spec(name="registered-by-hand", builder="other:build"))
    finally:
        samkit.registry.REGISTRY.unregister("registered-by-hand")
    assert "registered-by-hand" not in samkit.list_models()


def test_a_broken_spec_module_is_reported_and_the_others_keep_working(no_entry_points, module):
    module("broken_heads_spec")  # imports, but has no HEADS
    registry = HeadRegistry(spec_modules=("samkit.longvideo.spec", "no_such_heads_module", "broken_heads_spec"))
    assert [head.name for head in registry.specs()] == ["sam2", "sam2long"]
    reported = {problem.name: problem.error for problem in registry.problems()}
    assert reported["no_such_heads_module"].startswith("ModuleNotFoundError: No module named 'no_such_heads_module'")
    assert reported["broken_heads_spec"].startswith("AttributeError")
    with pytest.raises(InputError, match=r"unknown model 'fssam'; known models: sam2, sam2long; heads that failed "
                                         r"to load: no_such_heads_module .*ModuleNotFoundError"):
        registry.get("fssam")


def test_an_import_error_does_not_leave_the_registry_empty_for_good(no_entry_points, module):
    """Defect 7: discovery used to mark the built-ins registered before registering them."""
    registry = HeadRegistry(spec_modules=("flaky_heads_spec", "samkit.longvideo.spec"))
    assert registry.specs()[0].name == "sam2"  # the failing module did not stop the others
    assert [problem.name for problem in registry.problems()] == ["flaky_heads_spec"]
    module("flaky_heads_spec", HEADS=(spec(name="flaky"),))
    registry.refresh()
    assert [head.name for head in registry.specs()] == ["flaky", "sam2", "sam2long"]
    assert registry.problems() == []


class FakeEntryPoint:
    def __init__(self, name: str, value: object, dist: str | None = None, error: Exception | None = None) -> None:
        self.name, self.value, self._loaded, self._error = name, "fake.module:HEADS", value, error
        self.dist = types.SimpleNamespace(name=dist) if dist else None

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._loaded


def test_entry_points_add_heads_and_name_their_distribution(monkeypatch):
    points = [
        FakeEntryPoint("one", spec(name="plugin-one"), dist="samkit-plugin"),
        FakeEntryPoint("many", [spec(name="plugin-two"), spec(name="plugin-three", input_kind="video")],
                       dist="samkit-plugins"),
        FakeEntryPoint("broken", None, dist="samkit-broken", error=ImportError("needs libfoo")),
        FakeEntryPoint("wrong", 42, dist="samkit-wrong"),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: points if group == "samkit.heads" else [])
    registry = HeadRegistry(spec_modules=())
    assert [head.name for head in registry.specs()] == ["plugin-one", "plugin-three", "plugin-two"]
    assert registry.get("plugin-one").source == "distribution 'samkit-plugin'"
    problems = {problem.name: str(problem) for problem in registry.problems()}
    assert problems["broken"] == "broken (from distribution 'samkit-broken'): ImportError: needs libfoo"
    assert "expected a HeadSpec or an iterable of HeadSpecs, got int" in problems["wrong"]


def test_a_duplicate_plugin_name_is_an_error_naming_both_sources(monkeypatch):
    points = [FakeEntryPoint("clash", spec(name="sam2long", builder="clash:build"), dist="samkit-clash")]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: points)
    registry = HeadRegistry(spec_modules=("samkit.longvideo.spec",))
    message = (r"'sam2long' is declared twice, by samkit \(samkit.longvideo.segmenter:build_longvideo_segmenter\) "
               r"and distribution 'samkit-clash' \(clash:build\)")
    with pytest.raises(InputError, match=message):
        registry.get("sam2long")
    assert [head.name for head in registry.specs()] == ["sam2"]  # the other head keeps working
    assert any("declared twice" in problem.error for problem in registry.problems())


@pytest.mark.parametrize("fields, message", [
    ({"input_kind": "audio"}, "input_kind must be one of"),
    ({"status": "beta"}, "status must be one of"),
    ({"prompt_types": ("Scribble",)}, "prompt_types must be a non-empty subset"),
    ({"builder": "no_colon"}, "builder must be 'package.module:function'"),
    ({"weights": ("file.pt",)}, "weights must be WeightsSpec objects"),
])
def test_bad_head_specs_are_refused(fields, message):
    with pytest.raises(InputError, match=message):
        spec(**fields)


def test_weights_known_ids():
    weights = WeightsSpec("best.pth", hf_repo="org/best", url="https://example.org/best.pth")
    assert weights.known_ids == ("best.pth", "org/best", "https://example.org/best.pth")
