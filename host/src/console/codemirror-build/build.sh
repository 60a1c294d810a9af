#!/usr/bin/env bash
# Rebuilds ../assets/codemirror.js from the exact versions in package-lock.json. A one-off
# step when CodeMirror is updated: the host embeds the result and needs no Node at run time.
set -euo pipefail
cd "$(dirname "$0")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp package.json package-lock.json entry.js "$scratch/"
(cd "$scratch" && npm ci --no-audit --no-fund >/dev/null \
  && ./node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --legal-comments=none \
     --target=es2020 --outfile=bundle.js)
{
  echo '/* eslint-disable */'
  echo '// CodeMirror 6, bundled into one ES module for the console'"'"'s JSON editor by'
  echo '// host/src/console/codemirror-build/build.sh; versions in codemirror-build/README.md.'
  echo '/*'
  for package in @codemirror/state @codemirror/view @codemirror/commands @codemirror/language \
    @codemirror/lang-json @lezer/highlight @lezer/json @lezer/common @lezer/lr style-mod \
    w3c-keyname crelt @marijn/find-cluster-break; do
    version="$(node -p "require('$scratch/node_modules/$package/package.json').version")"
    echo "${package}@${version}:"
    sed 's/\*\//* \//g' "$scratch"/node_modules/"$package"/LICENSE*
    echo
  done
  echo '*/'
  cat "$scratch/bundle.js"
} > ../assets/codemirror.js
echo "wrote ../assets/codemirror.js ($(wc -c < ../assets/codemirror.js) bytes)"
