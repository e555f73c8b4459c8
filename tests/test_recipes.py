"""Recipes as data: every recipe x profile x stage list builds, every value has a source, and the profile and
notebook parameters pass through the one mechanism and are recorded."""
import pytest

from helpers import config, recipes
from helpers.engine import Stage, TrainConfig

VARIANTS = [(notebook, variant) for notebook, variants in recipes.RECIPES.items() for variant in variants]
CLASSIFIERS = [(n, v) for n, v in VARIANTS if n[:2] in {"03", "04", "05", "06"}]


@pytest.mark.parametrize("profile", sorted(config.PROFILES))
@pytest.mark.parametrize(("notebook", "variant"), VARIANTS, ids=lambda x: str(x))
def test_every_recipe_builds_in_every_profile(notebook, variant, profile):
    recipe = recipes.get(notebook, variant).for_profile(config.PROFILES[profile])
    assert isinstance(recipe.train, TrainConfig) and recipe.profile == profile
    assert recipe.image_size >= 32 and recipe.batch_size >= 1 and recipe.train.epochs >= 1
    if profile == "demo":
        assert recipe.train.epochs <= 16 and recipe.image_size <= 80 and recipe.spec.get("pretrained") is not True
    if (notebook, variant) in CLASSIFIERS:
        stages = recipes.stages(recipe)
        assert all(isinstance(s, Stage) and s.epochs >= 1 for s in stages)
        assert sum(s.epochs for s in stages) == recipe.train.epochs
        for stage in stages:
            TrainConfig(**{**recipe.train.__dict__, **stage.overrides})  # every stage's config is valid
    if notebook.startswith("09"):
        stages = recipes.dualhead_stages(recipe)
        assert [s.name for s in stages] == list(recipes.STAGE_NAMES)
        assert sum(s.epochs for s in stages) == recipe.train.epochs and all(s.epochs >= 1 for s in stages)
        for stage in stages:
            TrainConfig(**{**recipe.train.__dict__, **stage.overrides})


def test_cmu_seed_runs_in_the_demo_profile():
    """The seed's plateau schedule has no warm-up: the demo profile must not add one (it crashed notebook 03)."""
    recipe = recipes.resolve("03_convnext_from_scratch", "cmu_seed")
    assert recipe.train.scheduler == "plateau" and recipe.train.warmup_epochs == 0


@pytest.mark.parametrize(("notebook", "variant"), VARIANTS, ids=lambda x: str(x))
def test_every_value_has_a_source(notebook, variant):
    recipe = recipes.get(notebook, variant)
    assert set(recipe.spec) <= set(recipe.sources)
    given = {k for k in recipe.sources if k in recipe.train.__dataclass_fields__}
    assert given >= {"epochs", "lr", "optimizer", "scheduler", "weight_decay"}
    assert all(s.strip() for s in recipe.sources.values())


def test_parameters_override_the_profile_and_are_recorded():
    recipe = recipes.resolve("03_convnext_from_scratch", epochs=1, image_size=40, lr=None, batch_size=None)
    demo = recipes.get("03_convnext_from_scratch").for_profile(config.PROFILES["demo"])
    assert (recipe.train.epochs, recipe.image_size) == (1, 40)
    assert recipe.train.lr == demo.train.lr and recipe.batch_size == demo.batch_size  # None keeps the recipe's
    assert recipe.params == {"epochs": 1, "image_size": 40}
    assert recipe.record()["params"] == {"epochs": 1, "image_size": 40}
    assert recipe.table().loc["epochs", "source"] == "notebook parameter"
    assert recipe.table().loc["batch_size", "source"] == "demo profile"


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown setting.*epoch"):
        recipes.resolve("03_convnext_from_scratch", epoch=3)
    with pytest.raises(KeyError, match="cmu_seed"):
        recipes.get("03_convnext_from_scratch", "nope")


def test_full_profile_keeps_the_recipe():
    recipe = recipes.get("04_resnet50", "improved")
    full = recipe.for_profile(config.PROFILES["full"])
    assert full.train == recipe.train and full.spec == recipe.spec and full.profile == "full"


def test_multitask_recipe_takes_warmup_smoothing_and_clipping():
    """They are TrainConfig fields, so every recipe has them through the same path."""
    recipe = recipes.resolve("08_multitask_fairface", warmup_epochs=1, label_smoothing=0.1, clip_grad_norm=1.0)
    assert (recipe.train.warmup_epochs, recipe.train.label_smoothing, recipe.train.clip_grad_norm) == (1, 0.1, 1.0)
