"""Run specs: named variants, presets, --set overrides -> one config and a label that keys results;
config notes (choices and departures) and the checks every config makes."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from benchmark.methods import base
from benchmark.methods.base import (
    Method,
    MethodConfig,
    Preset,
    choice,
    config_notes,
    departure,
    resolve_run,
    why,
)
from fdrd.errors import FdrdError


@dataclasses.dataclass
class FamilyConfig(MethodConfig):
    beta: float = choice(1.0, "test choice")
    depth: int = why(9, "test recipe")
    augment: bool = departure(True, "test departure")


class Family(Method):
    name: ClassVar[str] = "family-under-test"
    config_class: ClassVar[type[MethodConfig]] = FamilyConfig
    named_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "family-under-test": {},
        "family-under-test-flat": {"beta": 0.0},
        "family-under-test-shallow": {"depth": 1},
    }
    presets: ClassVar[dict[str, Preset]] = {"quick": Preset({"epochs": 1, "depth": 2}, "test preset")}


@pytest.fixture
def family():
    base._discover()
    base.register_method(Family)
    yield Family
    base._REGISTRY.pop(Family.name)


def test_variants_resolve_to_their_overrides_and_label(family):
    spec = resolve_run("family-under-test-flat")
    assert (spec.method_cls, spec.named_variant, spec.label, spec.config.beta, spec.config.depth) == (
        family, "family-under-test-flat", "family-under-test-flat", 0.0, 9)
    plain = resolve_run("family-under-test")
    assert (plain.named_variant, plain.label, plain.config.beta) == ("family-under-test", "family-under-test", 1.0)
    assert "family-under-test-shallow" in base.available_run_names()
    assert base.get_method("family-under-test-shallow") is family


def test_precedence_is_defaults_variant_preset_then_set(family):
    spec = resolve_run("family-under-test-shallow", preset="quick")
    assert (spec.config.depth, spec.config.epochs, spec.label) == (2, 1, "family-under-test-shallow+quick")
    spec = resolve_run("family-under-test-shallow", {"depth": "4"}, preset="quick")
    assert spec.config.depth == 4
    assert spec.overrides == {"depth": 4}
    with pytest.raises(FdrdError, match="unknown preset 'slow'; its presets: quick"):
        resolve_run("family-under-test", preset="slow")


def test_overrides_get_a_label_of_their_own_that_ignores_spelling(family):
    a = resolve_run("family-under-test", {"lr": "0.010"})
    b = resolve_run("family-under-test", {"lr": "0.01"})
    c = resolve_run("family-under-test", {"lr": "0.02"})
    assert a.label == b.label != c.label
    assert a.label.startswith("family-under-test+") and len(a.label) == len("family-under-test+") + 8
    assert resolve_run("family-under-test", {"lr": "0.02"}, label="my-run").label == "my-run"
    for bad in ("../up", ".hidden", "a b", "", "x" * 101):
        with pytest.raises(FdrdError, match="run label"):
            resolve_run("family-under-test", label=bad)


def test_config_notes_name_choices_and_departures_with_resolved_values(family):
    notes = config_notes(resolve_run("family-under-test", {"beta": "0.5"}).config)
    assert notes["choices"] == {"beta": {"value": 0.5, "why": "test choice"}}
    assert notes["departures"]["augment"] == {"value": True, "why": "test departure"}
    assert "grad_clip" in notes["departures"]  # the recipes do not clip; we do
    assert "depth" not in notes["choices"] and "depth" not in notes["departures"]


def test_two_methods_cannot_claim_one_variant_name(family):
    class Thief(Method):
        name: ClassVar[str] = "thief"
        named_variants: ClassVar[dict[str, dict[str, Any]]] = {"family-under-test-flat": {}}

    with pytest.raises(ValueError, match="already taken by family-under-test"):
        base.register_method(Thief)


def test_the_variant_named_like_its_method_cannot_change_it():
    class Odd(Family):
        name: ClassVar[str] = "odd-under-test"
        named_variants: ClassVar[dict[str, dict[str, Any]]] = {"odd-under-test": {"beta": 0.5}}

    with pytest.raises(ValueError, match="variant named like the method must have no overrides"):
        base.register_method(Odd)
    assert "odd-under-test" not in base._REGISTRY


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": "-1"}, "epochs must be 0 or more"),
        ({"batch_size": "0"}, "batch_size must be at least 1"),
        ({"lr": "0"}, "lr must be positive"),
        ({"lr": "-1"}, "lr must be positive"),
        ({"momentum": "1.5"}, "momentum must be in"),
        ({"warmup_epochs": "-1"}, "must not be negative"),
        ({"grad_clip": "-0.5"}, "must not be negative"),
        # NaN slips past every `x < 0` and inf past every `x > 0`: each float field, the method's own included.
        ({"weight_decay": "nan"}, "weight_decay must be a finite number, got nan"),
        ({"grad_clip": "inf"}, "grad_clip must be a finite number, got inf"),
        ({"lr": "inf"}, "lr must be a finite number, got inf"),
        ({"warmup_lr": "-inf"}, "warmup_lr must be a finite number, got -inf"),
        ({"beta": "nan"}, "beta must be a finite number, got nan"),
    ],
)
def test_configs_refuse_values_that_cannot_train(family, overrides, message):
    with pytest.raises(FdrdError, match=message):
        resolve_run("family-under-test", overrides)


@pytest.mark.parametrize(("name", "field"), [("dcar", "alpha"), ("dcar", "gamma"), ("coop", "ctx_init_std")])
def test_every_methods_float_fields_refuse_nan(name, field):
    with pytest.raises(FdrdError, match=f"{field} must be a finite number"):
        resolve_run(name, {field: "nan"})
    with pytest.raises(FdrdError, match=f"{field} must be a finite number"):
        base.get_method(name).config_class(**{field: float("inf")})  # built directly, without --set
