#!/usr/bin/env bash
# open-request-pr.sh: commits the request `keyward request new` and `keyward render` wrote on a
# branch secret-request/<service>-<name>, pushes it and opens its pull request, whose
# description holds the section the plan workflow fills with the plan on each push.
#
# The token is KEYWARD_REQUEST_TOKEN's (a GitHub App or fine-grained token with contents and
# pull-requests write): events caused by the built-in GITHUB_TOKEN start no workflows, so a
# pull request it opened would never get its plan. git gets it as an HTTP header through
# GIT_CONFIG_* variables, never in a URL or on a command line.
#
# Environment: GH_TOKEN, SERVICE, NAME, GITHUB_REPOSITORY, GITHUB_ACTOR, GITHUB_REF_NAME (the
# branch the request is for), GITHUB_SERVER_URL (default https://github.com), GITHUB_API_URL.
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_env SERVICE NAME GITHUB_REPOSITORY GITHUB_ACTOR GITHUB_REF_NAME
[ -n "${GH_TOKEN:-}" ] || die "set the KEYWARD_REQUEST_TOKEN secret (see the workflow's header)"
# shellcheck disable=SC2153 # NAME is the environment's (checked by require_env)
for value in "$SERVICE" "$NAME"; do
  [[ "$value" =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] || die "'$value' is not a service or secret name (a-z, 0-9, -)"
done
[[ "$GITHUB_REPOSITORY" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "GITHUB_REPOSITORY '$GITHUB_REPOSITORY' is not owner/name"

branch="secret-request/${SERVICE}-${NAME}"
remote="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY}.git"
# The token as the header actions/checkout sets, for this server only.
auth="$(printf 'x-access-token:%s' "$GH_TOKEN" | base64 | tr -d '\n')"
export GIT_CONFIG_COUNT=1
export GIT_CONFIG_KEY_0="http.${GITHUB_SERVER_URL:-https://github.com}/.extraheader"
export GIT_CONFIG_VALUE_0="AUTHORIZATION: basic ${auth}"

git add infra/config/manifest infra/generated
git diff --cached --quiet && die "the request changed nothing under infra/config/manifest or infra/generated"
if git ls-remote --exit-code --heads "$remote" "$branch" > /dev/null 2>&1; then
  die "branch $branch exists already: merge or close its pull request (and delete the branch) before requesting ${SERVICE}/${NAME} again"
fi
git checkout -q -b "$branch"
git -c user.name="keyward" -c user.email="keyward@users.noreply.github.com" \
  commit -q -m "Request secret ${SERVICE}/${NAME}"
git push -q "$remote" "HEAD:refs/heads/$branch" || die "could not push $branch to $GITHUB_REPOSITORY"

gh_scratch
jq -n --arg title "Request secret ${SERVICE}/${NAME}" --arg head "$branch" --arg base "$GITHUB_REF_NAME" \
  --arg actor "$GITHUB_ACTOR" '{
    title: $title, head: $head, base: $base,
    body: "Requested by @\($actor) through the Request app secret workflow.\n\n<!-- keyward:secret-request-plan:start -->\n_The targeted plan appears here (and as a comment) once the Secret request plan workflow has run._\n<!-- keyward:secret-request-plan:end -->"
  }' > "$GH_SCRATCH/pull.json"
gh_expect 201 POST "repos/$GITHUB_REPOSITORY/pulls" "$GH_SCRATCH/pull.json"
echo "opened $(jq -r .html_url "$GH_SCRATCH/body") for ${SERVICE}/${NAME}"
