#!/usr/bin/env bash
# The workflows in infra/github as GitHub would take them and with no spare power: actionlint
# (syntax, expression contexts, action inputs, shellcheck on every `run:` script) and zizmor
# (offline audits: unpinned uses, permissions, persisted credentials, injection). Both must
# report nothing; a finding is fixed in the workflow, or ignored inline with its reason. The
# workflows' own scripts (infra/github/scripts) get shellcheck too, following what they source.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools
ensure_shellcheck

workflows=(infra/github/*.yml)
log "actionlint $(actionlint --version | head -n 1) with $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
actionlint -shellcheck "$(command -v shellcheck)" "${workflows[@]}"
log "zizmor $(zizmor --version | awk '{print $2}') (offline audits)"
zizmor --offline --no-progress "${workflows[@]}"
scripts=(infra/github/scripts/*.sh)
log "shellcheck on ${#scripts[@]} workflow scripts"
shellcheck --external-sources "${scripts[@]}"
log "PASS: ${#workflows[@]} workflows and ${#scripts[@]} scripts clean"
