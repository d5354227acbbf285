"""Is AWS's session-manager-plugin on this controller, where the SSM
connection (amazon.aws.aws_ssm, community.aws.aws_ssm) will look for it?

The connection takes the path its `plugin` option gives
(ansible_aws_ssm_plugin, or the environment's AWS_SESSION_MANAGER_PLUGIN),
else /usr/local/bin/session-manager-plugin, else session-manager-plugin on
PATH; without it every task on such a host fails. Filters run on the
controller, with ansible-playbook's own environment: the same place."""

from __future__ import annotations

import os
import shutil

PLUGIN = "session-manager-plugin"
DEFAULT_PATH = "/usr/local/bin/session-manager-plugin"
INSTALL_DOC = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)


def _found(setting: str) -> tuple[bool, str]:
    """(found, where it was looked for), as the connection resolves it."""
    if setting:
        return os.path.exists(setting), setting
    if os.path.exists(DEFAULT_PATH) or shutil.which(PLUGIN):
        return True, ""
    return False, f"{DEFAULT_PATH} or PATH"


def ssm_plugin_problems(settings, env_setting="", who="") -> list[str]:
    """One problem per plugin location that is missing.

    settings: the ansible_aws_ssm_plugin of each host that connects over SSM
    ('' where unset); env_setting: AWS_SESSION_MANAGER_PLUGIN; who: which
    hosts need it, for the message."""
    problems = []
    for setting in sorted({(s or "") or (env_setting or "") for s in settings or [""]}):
        found, where = _found(setting)
        if found:
            continue
        named = (
            "ansible_aws_ssm_plugin / AWS_SESSION_MANAGER_PLUGIN names"
            f" {where}, which does not exist"
            if setting
            else f"it is not on this controller ({where})"
        )
        problems.append(
            f"{PLUGIN}: {who or 'the hosts of this inventory'} connect with the SSM connection"
            f" (community.aws.aws_ssm), which needs AWS's Session Manager plugin on the controller;"
            f" {named}. Install it as AWS documents ({INSTALL_DOC}), or set ansible_aws_ssm_plugin"
            " (or AWS_SESSION_MANAGER_PLUGIN) to where it is"
        )
    return problems


class FilterModule:
    def filters(self):
        return {"threetier_ssm_plugin_problems": ssm_plugin_problems}
