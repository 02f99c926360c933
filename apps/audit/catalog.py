"""The words of the audit trail: every action and object type it records, as people read them."""

ACTIONS: dict[str, str] = {
    "notification_channel.created": "Notification channel created",
    "notification_channel.changed": "Notification channel changed",
    "notification_channel.secret_rotated": "Webhook signing secret replaced",
    "notification_channel.deleted": "Notification channel deleted",
    "team.created": "Team created",
    "team.settings_changed": "Team settings changed",
    "team.deleted": "Team deleted",
    "membership.created": "Member added",
    "membership.role_changed": "Member's role changed",
    "membership.removed": "Member removed",
    "api_token.created": "API token created",
    "api_token.revoked": "API token revoked",
    "api_token.changed": "API token changed",
    "api_token.deleted": "API token deleted",
    "provider_endpoint.created": "Provider endpoint created",
    "provider_endpoint.changed": "Provider endpoint changed",
    "provider_endpoint.key_added": "Provider key added",
    "provider_endpoint.key_rotated": "Provider key replaced",
    "provider_endpoint.key_removed": "Provider key removed",
    "provider_endpoint.key_reencrypted": "Provider key re-encrypted under a new encryption key",
    "provider_endpoint.deleted": "Provider endpoint deleted",
    "test_case.approved": "Test case approved",
    "test_case.rejected": "Test case rejected",
    "test_case.deleted": "Test case deleted",
    "experiment.deleted": "Experiment deleted",
    "parameter_sweep.deleted": "Parameter sweep deleted",
    "suite.deleted": "Test suite deleted",
    "load_sweep.deleted": "Load sweep deleted",
    "capacity_search.deleted": "Capacity search deleted",
    "benchmark_suite.deleted": "Benchmark suite deleted",
    "benchmark_run.deleted": "Benchmark run deleted",
    "performance_run.deleted": "Performance run deleted",
    "workload.deleted": "Workload deleted",
    "workload_dataset.deleted": "Workload dataset deleted",
    "export.downloaded": "Export or download",
}

OBJECT_TYPES: dict[str, str] = {
    "notification_channel": "Notification channel",
    "team": "Team",
    "membership": "Membership",
    "api_token": "API token",
    "provider_endpoint": "Provider endpoint",
    "test_case": "Test case",
    "experiment": "Experiment",
    "parameter_sweep": "Parameter sweep",
    "suite": "Test suite",
    "load_sweep": "Load sweep",
    "capacity_search": "Capacity search",
    "benchmark_suite": "Benchmark suite",
    "benchmark_run": "Benchmark run",
    "performance_run": "Performance run",
    "workload": "Workload",
    "workload_dataset": "Workload dataset",
    "export": "Export",
}

# Words for the fields a summary may hold, where the model's own verbose name does not read well.
FIELD_WORDS: dict[str, str] = {
    "target": "Sends to",
    "events": "Events",
    "active": "Switched on",
    "format": "Message format",
    "secret": "Signing secret",
    "api_key": "API key",
    "also_deleted": "Deleted with it",
    "route": "Page or endpoint",
    "query": "Query",
    "filename": "File",
    "monthly_budget_usd": "Monthly budget (USD)",
    "monthly_budget_hard_limit": "Monthly budget is a hard limit",
    "batch_confirm_requests": "Sweeps needing confirmation above (requests)",
    "batch_confirm_cost_usd": "Sweeps needing confirmation above (USD)",
    "show_simulated": "Show simulated results",
    "is_demo": "Demo team",
    "key_prefix": "Key starts with",
    "expires_at": "Expires",
    "revoked_at": "Revoked",
    "base_url": "Base URL",
    "price_input_per_1m_usd": "Input price (USD per 1M tokens)",
    "price_output_per_1m_usd": "Output price (USD per 1M tokens)",
    "requests_per_minute": "Requests per minute",
    "tokens_per_minute": "Tokens per minute",
    "max_concurrency": "Requests at once",
    "connect_timeout_s": "Connect timeout (s)",
    "read_timeout_s": "Read timeout (s)",
    "total_timeout_s": "Total timeout (s)",
    "metrics_url": "Server metrics URL",
    "gpu_metrics_url": "GPU metrics URL",
    "model_names": "Model names",
    "review_reason": "Reason",
    "created_at": "Created",
    "is_simulated": "Simulated",
}


def action_words(action: str) -> str:
    return ACTIONS.get(action, action.replace("_", " ").replace(".", ": "))


def object_type_words(object_type: str) -> str:
    return OBJECT_TYPES.get(object_type, object_type.replace("_", " ").capitalize())


def field_words(name: str) -> str:
    return FIELD_WORDS.get(name, name.replace("_", " ").capitalize())
