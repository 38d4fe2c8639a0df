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
