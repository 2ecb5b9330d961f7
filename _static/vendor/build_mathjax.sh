#!/usr/bin/env bash
# Rebuilds _extra/mathjax/ (offline math) from the npm registry: MathJax 3's combined
# tex-mml-chtml component (the one Sphinx loads from a CDN by default) plus its CHTML woff-v2 fonts.
# It lives in _extra/ (Sphinx html_extra_path, copied to the build root), not in _static/, because
# Jupyter Book v1 adds every _static/**/*.js to every page, which would load MathJax twice.
# _config.yml: sphinx.config.html_extra_path: ["_extra"], mathjax_path: "../mathjax/tex-mml-chtml.js".
set -euo pipefail
MATHJAX=3.2.2
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"; cd "$tmp"
npm pack --silent "mathjax@$MATHJAX" >/dev/null 2>&1
tar xzf "mathjax-$MATHJAX.tgz"
out="$root/_extra/mathjax"
rm -rf "$out"; mkdir -p "$out/output/chtml/fonts"
cp package/es5/tex-mml-chtml.js "$out/"
cp -r package/es5/output/chtml/fonts/woff-v2 "$out/output/chtml/fonts/"
cp package/LICENSE "$out/LICENSE"
echo "mathjax@$MATHJAX es5/tex-mml-chtml.js + output/chtml/fonts/woff-v2 (npm registry)" > "$out/VERSION"
rm -rf "$tmp"
du -sh "$out"
