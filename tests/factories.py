"""factory_boy factories for every model the tests create."""

import factory
from django.contrib.auth import get_user_model

from apps.accounts.models import Membership, Team
from apps.hardware.models import Deployment, HardwareProfile
from apps.scores.models import Benchmark, ModelVariant, Score


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)
    role = Membership.Role.MEMBER


class ModelVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVariant

    team = factory.SubFactory(TeamFactory)
    model_name = factory.Sequence(lambda n: f"org/model-{n}")
    quantization = "BF16"
    family = "Test"


class BenchmarkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Benchmark

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Bench{n}")


class ScoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Score

    team = factory.SelfAttribute("variant.team")
    variant = factory.SubFactory(ModelVariantFactory)
    benchmark = factory.SubFactory(BenchmarkFactory, team=factory.SelfAttribute("..variant.team"))
    value_pct = 50.0


class HardwareProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HardwareProfile

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"gpu-box-{n}")
    accelerator = "NVIDIA H100 80GB"
    hourly_cost_usd = 2.0


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"vllm-{n}")
    engine = "vllm"
