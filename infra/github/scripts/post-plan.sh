#!/usr/bin/env bash
# post-plan.sh: puts the plan plan.sh wrote on its pull request, in both places the request
# flow shows it: one comment (found by its first line, the marker, and edited in place on each
# push rather than added again) and a marked section of the pull request's description
# (replaced on each push; the rest of the description is left as it is).
#
# Environment: GH_TOKEN (pull-requests: write), REPO (owner/name), PR (the number),
# PLAN_FILE (default <scratch>/comment.md), GITHUB_API_URL (default https://api.github.com).
# No plan file (the plan job stopped before planning) is not an error: there is nothing to post.
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MARKER='<!-- keyward:secret-request-plan -->'
START='<!-- keyward:secret-request-plan:start -->'
END='<!-- keyward:secret-request-plan:end -->'
# GitHub refuses a comment or description over 65,536 characters; bytes are counted here, which
# is never fewer.
LIMIT=65000

require_env GH_TOKEN REPO PR
[[ "$REPO" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "REPO '$REPO' is not owner/name"
[[ "$PR" =~ ^[1-9][0-9]*$ ]] || die "PR '$PR' is not a pull request number"
plan="${PLAN_FILE:-$(keyward_work)/comment.md}"
if [ ! -f "$plan" ]; then
  echo "no plan at $plan: nothing to post"
  exit 0
fi
[ "$(head -n 1 "$plan")" = "$MARKER" ] || die "$plan does not start with $MARKER (not plan.sh's output)"
gh_scratch

# The comment: cut to fit, with a pointer to the whole.
comment="$GH_SCRATCH/comment.md"
if [ "$(wc -c < "$plan")" -gt "$LIMIT" ]; then
  head -c "$((LIMIT - 1000))" "$plan" > "$comment"
  printf '\n\n... (truncated; see the job summary)\n' >> "$comment"
else
  cp "$plan" "$comment"
fi

# Read everything first, then write: a refused read changes nothing on the pull request.
gh_list "repos/$REPO/issues/$PR/comments" "$GH_SCRATCH/comments.jsonl"
gh_expect 200 GET "repos/$REPO/pulls/$PR"
cp "$GH_SCRATCH/body" "$GH_SCRATCH/pull.json"

# The last of keyward's comments (an earlier run may have raced another into existing).
existing="$(jq -r --arg m "$MARKER" 'select((.body // "") | startswith($m)) | .id' \
  "$GH_SCRATCH/comments.jsonl" | tail -n 1)"

# The description: everything outside keyward's section kept, the section (the plan, without
# the comment's marker) replaced; a description without one gets it appended. Every section
# found is dropped, so one left twice by hand collapses into one.
tail -n +2 "$comment" > "$GH_SCRATCH/section.md"
jq -n --rawfile section "$GH_SCRATCH/section.md" --slurpfile pull "$GH_SCRATCH/pull.json" \
  --arg open "$START" --arg close "$END" --argjson limit "$LIMIT" '
  ($pull[0].body // "") as $old
  | (if ($old | contains($open)) and ($old | contains($close))
     then [($old | split($open) | .[0]), ($old | split($close) | .[-1])]
     else [$old, ""] end) as [$before, $after]
  | ($before | sub("\\s+$"; "")) as $before
  | ($after | sub("^\\s+"; "")) as $after
  | ($limit - ($before | length) - ($after | length) - ($open | length) - ($close | length) - 200) as $room
  | (if ($section | length) > $room
     then ($section[0:([$room, 0] | max)] + "\n\n... (truncated; the whole plan is in the comment below)\n")
     else $section end) as $section
  | {body: ([$before, "\($open)\n\($section | sub("\\s+$"; ""))\n\($close)", $after]
            | map(select(length > 0)) | join("\n\n"))}' > "$GH_SCRATCH/description.json"

# The description first: the comment cannot be refused (it is cut to fit above), while the
# description can (a long text of the author's own), and then nothing has changed.
gh_expect 200 PATCH "repos/$REPO/pulls/$PR" "$GH_SCRATCH/description.json"
echo "updated the plan in the description of $REPO#$PR"
jq -n --rawfile body "$comment" '{body: $body}' > "$GH_SCRATCH/comment.json"
if [ -n "$existing" ]; then
  gh_expect 200 PATCH "repos/$REPO/issues/comments/$existing" "$GH_SCRATCH/comment.json"
  echo "updated the plan comment ($existing) on $REPO#$PR"
else
  gh_expect 201 POST "repos/$REPO/issues/$PR/comments" "$GH_SCRATCH/comment.json"
  echo "posted the plan comment ($(jq -r .id "$GH_SCRATCH/body")) on $REPO#$PR"
fi
