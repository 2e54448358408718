import pytest

from alignflow.algorithms import (
    Registry,
    build_kl_controller,
    get_advantage_estimator,
    get_dpo_loss,
    get_kl_estimator,
    get_policy_loss,
)


def test_register_and_get_returns_the_same_object():
    reg: Registry = Registry("thing")

    @reg.register("double")
    def double(x):
        return 2 * x

    assert reg.get("double") is double
    assert reg.get("double")(21) == 42
    assert "double" in reg and len(reg) == 1 and list(reg) == ["double"]


def test_duplicate_name_is_an_error():
    reg: Registry = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_lists_the_valid_names():
    reg: Registry = Registry("widget")
    reg.register("b")(lambda: 1)
    reg.register("a")(lambda: 2)
    with pytest.raises(KeyError) as err:
        reg.get("c")
    assert "unknown widget 'c'" in str(err.value) and "a, b" in str(err.value)


@pytest.mark.parametrize(
    ("getter", "valid"),
    [
        (get_advantage_estimator, "gae"),
        (get_policy_loss, "ppo_clip"),
        (get_kl_estimator, "k3"),
        (get_dpo_loss, "ipo"),
        (lambda name: build_kl_controller(name, coef=0.1), "fixed"),
    ],
)
def test_every_public_getter_names_the_valid_choices(getter, valid):
    with pytest.raises(KeyError) as err:
        getter("no-such-algorithm")
    assert valid in str(err.value)
