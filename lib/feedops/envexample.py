""".env.example, generated from the settings model: every variable with its description and an example
value (secrets only as comments). ``python -m feedops.envexample > .env.example`` writes it;
tests/unit/test_env_example.py fails when the file and the model drift apart.
"""

from __future__ import annotations

from typing import Any

from .settings import MODELS, BackupProfile, CtpProfile, FeedSettings, PrimaryProfile, _is_secret


def render_env_example() -> str:
    """The body of .env.example generated from the model (``python -m feedops.envexample > .env.example``)."""
    out = [
        "# feedops settings: every variable the settings model (lib/feedops/settings.py) knows.",
        "# Precedence, highest first: command-line flags > process environment >",
        "# secret files (FEEDOPS_SECRETS_DIR, one file per variable named like it) >",
        "# envs/<env>.env (non-secret values only) > the defaults shown here.",
        "# Secrets (passwords, auth codes) never go in env files: use the environment or a secrets dir.",
        "",
    ]
    for model in MODELS:
        title = {FeedSettings: "service", PrimaryProfile: "primary CTP profile", BackupProfile: "backup CTP profile"}[model]
        out.append(f"# ---- {title}")
        for var, name in model.env_vars().items():
            info = model.model_fields[name]
            out.append(f"# {info.description}")
            if _is_secret(info):
                out.append(f"# {var}=<secret>")
                continue
            default = info.get_default(call_default_factory=True)
            example = _example(model, name, default)
            out.append(f"{var}={example}")
        out.append("")
    return "\n".join(out)


_EXAMPLES = {
    "md_fronts": "tcp://md1.broker.example:41213,tcp://md2.broker.example:41213",
    "td_fronts": "tcp://td1.broker.example:41205",
    "broker_id": "9999",
    "user_id": "000000",
    "app_id": "simnow_client_test",
    "user_product_info": "feedops",
}


def _example(model: type, name: str, default: Any) -> str:
    if issubclass(model, CtpProfile):
        value = _EXAMPLES.get(name, "")
        if model is BackupProfile and "fronts" in name:
            value = value.replace(".broker.", ".backup-broker.")
        return value
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_env_example())
