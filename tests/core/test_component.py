import pytest

from ebmcore.component import Component, normalize_name


def test_normalize_name_ignores_case_and_dash_vs_underscore():
    assert normalize_name("Double-Well") == normalize_name("double_well") == "double_well"


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a:b"])
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError, match="Component name"):
        Component(name, dict)


def test_lazy_target_needs_module_and_attribute():
    with pytest.raises(ValueError, match="module:attr"):
        Component("thing", "just_a_module")


def test_non_callable_target_is_rejected():
    with pytest.raises(ValueError, match="target must be"):
        Component("thing", 42)


def test_lazy_target_resolves_dotted_attribute():
    component = Component("path_join", "os:path.join")
    import os

    assert component.resolve() is os.path.join


def test_keys_hold_name_then_aliases():
    assert Component("A-b", dict, aliases=("C_d",)).keys == ("a_b", "c_d")


def test_declared_protocol_fields_default_to_nothing_declared():
    component = Component("thing", dict)
    assert component.data_shape is None and component.takes_sampler is False
    assert component.recipe is None


@pytest.mark.parametrize("shape", ["flat", "Dim", 3])
def test_data_shape_must_name_dim_or_event_shape(shape):
    with pytest.raises(ValueError, match="data_shape"):
        Component("thing", dict, data_shape=shape)


def test_takes_sampler_must_be_a_bool():
    with pytest.raises(ValueError, match="takes_sampler"):
        Component("thing", dict, takes_sampler="yes")


def test_a_recipe_is_read_only_and_checked_section_by_section():
    recipe = {"model": {"name": "m", "params": {}}, "train": {"steps": 5}, "seed": 1}
    component = Component("thing", dict, recipe=recipe)
    assert component.recipe == recipe
    with pytest.raises(TypeError):
        component.recipe["model"] = {}  # type: ignore[index]
    with pytest.raises(ValueError, match="recipe key 'trian'"):
        Component("thing", dict, recipe={"trian": {}})
    with pytest.raises(ValueError, match="section 'model' must be a mapping"):
        Component("thing", dict, recipe={"model": "mlp"})
    with pytest.raises(ValueError, match=r"recipe\['default'\]"):
        Component("thing", dict, recipe={"default": "yes"})
    with pytest.raises(ValueError, match="recipe must be a mapping"):
        Component("thing", dict, recipe=["model"])


def test_a_component_with_a_recipe_stays_hashable():
    assert hash(Component("thing", dict, recipe={"train": {}})) == hash(Component("thing", dict))
