"""CI gates: start one (a repeat of a check's run), judge it when its run ends, tell the team.

A gate is judged lazily when it is read (API and pages) and by the every-minute automation tick
(gates_evaluate_pending), whichever comes first; a row lock makes sure it is judged once and notified once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.automation import runkinds
from apps.gates.criteria import judge_regression, judge_threshold, parse_criteria
from apps.gates.models import Gate, GateCheck
from apps.notifications import events
from apps.notifications.services import notify
from apps.providers.budget import BudgetExceeded
from apps.providers.models import ProviderEndpoint

logger = logging.getLogger(__name__)

KIND_LABELS: dict[str, str] = dict(runkinds.KIND_LABELS)
EVALUATE_BATCH = 200


class GateRefused(ValidationError):
    """A gate (or saved check) that cannot be started or saved; the message names the field."""


def _kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def _template(team, kind: str, run_id, field: str):
    """The team's run `run_id` of `kind`, else GateRefused naming `field`."""
    try:
        return runkinds.template_get(team=team, kind=kind, run_id=int(run_id))
    except ValidationError as exc:  # an unknown kind
        raise GateRefused({"kind": exc.messages}) from None
    except (ObjectDoesNotExist, TypeError, ValueError):
        raise GateRefused({field: [f"No {_kind_label(kind).lower()} #{run_id} in this team."]}) from None


def _available_figures(kind: str, run_id: int) -> set[str] | None:
    """The figure names of a completed run (what a repeat of it will have), None when it has none to show."""
    ref = runkinds.RunRef(kind, run_id)
    try:
        if runkinds.run_state(ref) != "completed":
            return None
        names = set(runkinds.run_figures(ref))
    except Exception:  # a run kind that cannot tell: validate against the kind's names
        logger.exception("Figures of %s #%s", kind, run_id)
        return None
    return names or None


def config_clean(
    *, team, kind: str, run_id, endpoint_id=None, model: str = "", criteria, baseline_id=None, alpha=0.05
) -> dict[str, Any]:
    """A gate's (or check's) configuration checked: the template and baseline are the team's runs of `kind`, the
    override endpoint is the team's, the criteria parse. GateRefused naming each bad field."""
    errors: dict[str, list[str]] = {}
    if kind not in KIND_LABELS:
        raise GateRefused({"kind": [f"Unknown run kind “{kind}”: one of {', '.join(KIND_LABELS)}."]})
    template = None
    try:
        template = _template(team, kind, run_id, "run")
    except GateRefused as exc:
        errors.update(exc.message_dict)
    endpoint = None
    if endpoint_id not in (None, ""):
        try:
            endpoint = ProviderEndpoint.objects.get(team=team, pk=int(endpoint_id))
        except (ProviderEndpoint.DoesNotExist, TypeError, ValueError):
            errors["endpoint"] = ["No such endpoint in this team."]
    model = (model or "").strip()
    if len(model) > 200:
        errors["model"] = ["At most 200 characters."]
    try:
        alpha = float(alpha if alpha not in (None, "") else 0.05)
        if not 0 < alpha < 1:
            raise ValueError
    except (TypeError, ValueError):
        errors["alpha"] = ["The significance level is a number between 0 and 1, e.g. 0.05."]
        alpha = 0.05
    available = _available_figures(kind, template.pk) if template is not None else None
    parsed = []
    try:
        parsed = parse_criteria(criteria, kind=kind, available=available)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    baseline = None
    if baseline_id not in (None, ""):
        try:
            baseline = _template(team, kind, baseline_id, "baseline")
            if runkinds.run_state(runkinds.RunRef(kind, baseline.pk)) != "completed":
                errors["baseline"] = [f"The baseline {_kind_label(kind).lower()} #{baseline.pk} has not completed."]
        except GateRefused as exc:
            errors.update(exc.message_dict)
    if baseline is None and "baseline" not in errors and any(c.kind == "regression" for c in parsed):
        errors["baseline"] = ["A “no significant regression” criterion needs a pinned baseline run."]
    if errors:
        raise GateRefused(errors)
    return {"kind": kind, "template_run_id": template.pk, "endpoint": endpoint, "model": model,
            "criteria": [c.text for c in parsed], "baseline_run_id": baseline.pk if baseline else None,
            "alpha": alpha}  # fmt: skip


def gate_start(
    *, team, user=None, check: GateCheck | None = None, name: str = "", kind: str = "", run_id=None,
    endpoint_id=None, model: str = "", criteria=None, baseline_id=None, alpha=None,
) -> Gate:  # fmt: skip
    """Start a gate: the check's run (or `kind` + `run_id`) repeated with the override, judged by `criteria`.

    With `check`, every argument given replaces the check's. BudgetExceeded (the repeat's budget check) propagates as
    it is; any other refusal is GateRefused naming the field. Nothing is stored when refused."""
    if check is not None:
        kind = kind or check.kind
        run_id = run_id if run_id not in (None, "") else check.template_run_id
        endpoint_id = endpoint_id if endpoint_id not in (None, "") else check.endpoint_id
        model = model or check.model
        criteria = criteria if criteria else check.criteria
        baseline_id = baseline_id if baseline_id not in (None, "") else check.baseline_run_id
        alpha = alpha if alpha not in (None, "") else check.alpha
        name = name or check.name
    if not kind:
        raise GateRefused({"kind": ["Give a saved check, or the run kind and run to repeat."]})
    if run_id in (None, ""):
        raise GateRefused({"run": ["Give a saved check, or the run to repeat."]})
    config = config_clean(team=team, kind=kind, run_id=run_id, endpoint_id=endpoint_id, model=model,
                          criteria=criteria, baseline_id=baseline_id, alpha=alpha)  # fmt: skip
    name = (name or "").strip()[:200]
    with transaction.atomic():
        try:
            ref = runkinds.run_repeat(kind=kind, run_id=config["template_run_id"], user=user,
                                      endpoint_id=config["endpoint"].pk if config["endpoint"] else None,
                                      model=config["model"] or None)  # fmt: skip
        except BudgetExceeded:
            raise
        except ValidationError as exc:  # RepeatRefused: fields of run_repeat named as the gate's
            if hasattr(exc, "error_dict"):
                names = {"endpoint_id": "endpoint", "run_id": "run"}
                raise GateRefused({names.get(k, k): v for k, v in exc.message_dict.items()}) from exc
            raise GateRefused({"run": exc.messages}) from exc
        gate = Gate.objects.create(team=team, saved_check=check, name=name, created_by=user, run_id=ref.run_id,
                                   **config)  # fmt: skip
    return gate


def gate_ref(gate: Gate) -> runkinds.RunRef | None:
    return runkinds.RunRef(gate.kind, gate.run_id) if gate.run_id else None


def _judge(gate: Gate, ref: runkinds.RunRef) -> tuple[str, str, list[dict]]:
    """(status, reason, results) of a gate whose run completed."""
    parsed = parse_criteria(gate.criteria, kind=gate.kind, available=None) if gate.criteria else []
    figures = runkinds.run_figures(ref) if any(c.kind == "threshold" for c in parsed) else {}
    comparisons: dict[float, list] = {}
    results = []
    for criterion in parsed:
        if criterion.kind == "threshold":
            results.append(judge_threshold(criterion, figures))
            continue
        alpha = criterion.alpha if criterion.alpha is not None else gate.alpha
        if alpha not in comparisons:
            baseline = runkinds.RunRef(gate.kind, gate.baseline_run_id)
            comparisons[alpha] = runkinds.run_compare(baseline, ref, alpha=alpha)
        results.append(judge_regression(criterion, comparisons[alpha], alpha=alpha))
    failed = [r for r in results if not r["passed"]]
    if not results:
        return Gate.Status.ERROR, "The gate has no criteria.", results
    if failed:
        reason = f"{len(failed)} of {len(results)} criteria failed: " + "; ".join(r["text"] for r in failed) + "."
        return Gate.Status.FAILED, reason, results
    return (
        Gate.Status.PASSED,
        ("The criterion passed." if len(results) == 1 else f"All {len(results)} criteria passed."),
        results,
    )


def _outcome(gate: Gate) -> tuple[str, str, list[dict]] | None:
    """The gate's new status, reason and results; None when its run has not ended."""
    ref = gate_ref(gate)
    if ref is None:
        return Gate.Status.ERROR, "The gate has no run.", []
    try:
        state = runkinds.run_state(ref)
    except ObjectDoesNotExist:
        return Gate.Status.ERROR, f"The {_kind_label(gate.kind).lower()} #{gate.run_id} was deleted.", []
    if state in ("pending", "running"):
        return None
    if state in ("failed", "cancelled"):
        error = runkinds.run_error(ref)
        what = (
            f"The {_kind_label(gate.kind).lower()} #{gate.run_id} {'failed' if state == 'failed' else 'was cancelled'}"
        )
        return Gate.Status.FAILED, f"{what}: {error}" if error else f"{what}.", []
    try:
        return _judge(gate, ref)
    except ObjectDoesNotExist:
        return (
            Gate.Status.ERROR,
            f"The baseline {_kind_label(gate.kind).lower()} #{gate.baseline_run_id} was deleted.",
            [],
        )
    except Exception as exc:  # a gate must end: the pipeline waits for it
        logger.exception("Judging gate %s", gate.pk)
        return Gate.Status.ERROR, f"The gate could not be judged: {type(exc).__name__}: {exc}", []


def gate_evaluate(*, gate_id: int) -> Gate:
    """Judge the gate when its run has ended (once: the row is locked and re-read); mark it running while the run
    runs. Notifies GATE_FINISHED (after commit) when it ends."""
    with transaction.atomic():
        gate = Gate.objects.select_for_update().get(pk=gate_id)
        if gate.is_finished:
            return gate
        outcome = _outcome(gate)
        if outcome is None:
            ref = gate_ref(gate)
            if gate.status == Gate.Status.PENDING and runkinds.run_state(ref) == "running":
                gate.status = Gate.Status.RUNNING
                gate.save(update_fields=["status"])
            return gate
        gate.status, gate.reason, gate.results = outcome
        gate.finished_at = timezone.now()
        gate.save(update_fields=["status", "reason", "results", "finished_at"])
        transaction.on_commit(lambda: _notify_finished(gate.pk))
    return gate


def gates_evaluate_pending() -> int:
    """Judge every gate whose run has ended since the last look (called by the every-minute automation tick);
    the number of gates that ended."""
    ended = 0
    ids = list(Gate.objects.filter(status__in=[Gate.Status.PENDING, Gate.Status.RUNNING])
               .order_by("created_at").values_list("pk", flat=True)[:EVALUATE_BATCH])  # fmt: skip
    for gate_id in ids:
        try:
            if gate_evaluate(gate_id=gate_id).is_finished:
                ended += 1
        except Exception:  # one broken gate must not stop the others
            logger.exception("Evaluating gate %s", gate_id)
    return ended


def gate_fresh(gate: Gate) -> Gate:
    """The gate, judged first when it has not ended (a read is a look too)."""
    if gate.is_finished:
        return gate
    judged = gate_evaluate(gate_id=gate.pk)
    gate.status, gate.reason, gate.results, gate.finished_at = (
        judged.status,
        judged.reason,
        judged.results,
        judged.finished_at,
    )
    return gate


def gate_title(gate: Gate) -> str:
    what = gate.name or _kind_label(gate.kind)
    return f"Gate #{gate.pk} · {what}"


def gate_url(gate: Gate, *, absolute: bool = False) -> str:
    path = reverse("gates:detail", args=[gate.pk])
    return f"{settings.SITE_URL}{path}" if absolute else path


def run_link(gate: Gate) -> dict | None:
    """The run a gate started: kind, id, title, page (absolute) and state; None before it has one or once deleted."""
    ref = gate_ref(gate)
    if ref is None:
        return None
    try:
        return {"kind": ref.kind, "id": ref.run_id, "title": runkinds.run_title(ref),
                "url": f"{settings.SITE_URL}{runkinds.run_url(ref)}", "state": runkinds.run_state(ref)}  # fmt: skip
    except ObjectDoesNotExist:
        return None


def _notify_finished(gate_id: int) -> None:
    try:
        gate = Gate.objects.get(pk=gate_id)
        verdict = {"passed": "passed", "failed": "failed", "error": "could not be judged"}[gate.status]
        notify(
            team_id=gate.team_id, event=events.GATE_FINISHED, title=f"{gate_title(gate)} {verdict}",
            text=gate.reason, url=gate_url(gate, absolute=True),
            facts={"status": gate.status, "kind": gate.kind, "run_id": gate.run_id, "model": gate.model,
                   "criteria": [f"{r['text']}: {'passed' if r['passed'] else 'failed'}" for r in gate.results]},
            dedupe_key=f"gate-{gate.pk}",
        )  # fmt: skip
    except Exception:  # a gate's verdict stands even when the notification fails
        logger.exception("Notifying gate %s", gate_id)


# --- saved checks ---------------------------------------------------------------------------------------------------


def check_save(
    *, team, user=None, check: GateCheck | None = None, name: str, description: str = "", kind: str, run_id,
    endpoint_id=None, model: str = "", criteria, baseline_id=None, alpha=0.05,
) -> GateCheck:  # fmt: skip
    """Create (or, with `check`, change) a saved check; GateRefused naming each bad field."""
    errors = {}
    name = (name or "").strip()
    from django.core.validators import validate_slug

    try:
        validate_slug(name)
        if len(name) > 100:
            raise ValidationError("too long")
    except ValidationError:
        errors["name"] = ["A name of letters, digits, - and _ (at most 100), e.g. nightly-quality."]
    if not errors and GateCheck.objects.filter(team=team, name=name).exclude(pk=getattr(check, "pk", None)).exists():
        errors["name"] = [f"The team already has a check named “{name}”."]
    try:
        config = config_clean(team=team, kind=kind, run_id=run_id, endpoint_id=endpoint_id, model=model,
                              criteria=criteria, baseline_id=baseline_id, alpha=alpha)  # fmt: skip
    except GateRefused as exc:
        errors.update(exc.message_dict)
    if errors:
        raise GateRefused(errors)
    with transaction.atomic():
        if check is None:
            check = GateCheck(team=team, created_by=user)
        check.name, check.description = name, (description or "").strip()[:300]
        for field, value in config.items():
            setattr(check, field, value)
        check.save()
    return check


def check_delete(*, check: GateCheck) -> None:
    """Delete a saved check; its gates stay (they keep their configuration)."""
    check.delete()
