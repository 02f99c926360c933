"""One FilterSet per list, for the pages and the API alike: suites (kind, name), a suite's items (subject, split),
runs (status, suite) and a run's answers (target, subject, outcome).

The answers are read through `selectors.answers_for`, which the page and the API share: `AnswerFilter` only
checks the query string (a bad value is a 400 naming the parameter) and hands the cleaned values on.
"""

import django_filters
from django import forms

from apps.benchmarks.models import BenchmarkItem, BenchmarkRun, BenchmarkSuite, Kind, Status

MAX_ID = 2**63 - 1  # the largest primary key either database holds; a larger number is a 400, not an overflow
OUTCOMES = ("correct", "wrong", "no_answer", "failed")
OUTCOME_CHOICES = [
    ("correct", "Correct"), ("wrong", "Wrong"), ("no_answer", "No answer"), ("failed", "Request failed"),
]  # fmt: skip


class IdFilter(django_filters.NumberFilter):
    """A primary key: a whole number from 1 (1.5, "x" and 10**30 are 400s)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class SuiteFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Kind.choices)
    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains", max_length=200)

    class Meta:
        model = BenchmarkSuite
        fields = ["kind", "name"]


class ItemFilter(django_filters.FilterSet):
    """A suite's items: the test split unless `split=fewshot` asks for the few-shot examples."""

    subject = django_filters.CharFilter(max_length=100, label="Subject or category")
    split = django_filters.ChoiceFilter(choices=BenchmarkItem.Split.choices, method="filter_split", label="Split")

    class Meta:
        model = BenchmarkItem
        fields = ["subject", "split"]

    def filter_queryset(self, queryset):
        if not self.form.cleaned_data.get("split"):
            queryset = queryset.filter(split=BenchmarkItem.Split.TEST)
        return super().filter_queryset(queryset)

    def filter_split(self, queryset, name, value):
        return queryset.filter(split=value)


class RunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    suite = IdFilter(field_name="suite_id", label="Suite")

    class Meta:
        model = BenchmarkRun
        fields = ["status", "suite"]


class AnswerFilterForm(forms.Form):
    """The answers' query string: which target, subject and outcome (all optional)."""

    target = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    subject = forms.CharField(required=False, max_length=100)
    outcome = forms.ChoiceField(required=False, choices=OUTCOME_CHOICES)

    def __init__(self, *args, target_ids: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.target_ids = target_ids

    def clean_target(self) -> int | None:
        target = self.cleaned_data.get("target")
        if target is not None and self.target_ids is not None and target not in self.target_ids:
            raise forms.ValidationError("Not a target of this run.")
        return target

    def selector_kwargs(self) -> dict:
        """Keyword arguments of selectors.answers_for (empty values mean "all")."""
        data = self.cleaned_data
        return {"target_id": data.get("target"), "subject": data.get("subject") or None,
                "outcome": data.get("outcome") or None}  # fmt: skip
