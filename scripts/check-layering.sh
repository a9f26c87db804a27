#!/usr/bin/env bash
# The workspace's layering, from `cargo metadata`: no crate under functions/ depends on another
# function's crate, and the CLI depends on none of them. Shared code goes in shared/ (the domain
# crate) or drift/ (the drift library). A function's `bootstrap/` package (its binary alone,
# built in a package of its own for its optimisation level) depends on its own function only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
root = meta["workspace_root"]
def rel(package):
    return os.path.relpath(os.path.dirname(package["manifest_path"]), root)
# functions/<name> -> the name of its crate.
functions = {rel(p): p["name"] for p in meta["packages"] if rel(p).count("/") == 1 and rel(p).startswith("functions/")}
problems = []
for p in meta["packages"]:
    where = rel(p)
    if not (where.startswith("functions/") or where == "cli"):
        continue
    own = functions.get(os.path.dirname(where)) if where.endswith("/bootstrap") else None
    for dep in p["dependencies"]:
        if dep["name"] in functions.values() and dep["name"] != own:
            problems.append("%s (%s) depends on the function crate %s" % (p["name"], where, dep["name"]))
if problems:
    print("layering: " + "\n  ".join(["function crates are not libraries:"] + problems), file=sys.stderr)
    sys.exit(1)
print(f"layering: {len(functions)} function crates, none depends on another; the CLI on none")
'
