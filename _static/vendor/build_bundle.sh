#!/usr/bin/env bash
# Rebuilds _static/vendor/modularity-vega.min.js from the npm registry.
# Versions match what Altair 6.3 emits (Vega-Lite schema v6.4.1) and what vl-convert 1.9 bundles
# (Vega 6.2.0, vega-embed 7.0.2), so the static SVG and the interactive chart come from the same code.
# The three UMD builds are wrapped in ONE function that fakes a CommonJS environment: their UMD headers
# then write into local objects instead of `window`/AMD `define`, and the only global created is
# `window.modularityVega = {vega, vegaLite, vegaEmbed, versions}`.
set -euo pipefail
VEGA=6.2.0; VL=6.4.1; EMBED=7.0.2
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; cd "$tmp"
npm pack --silent "vega@$VEGA" "vega-lite@$VL" "vega-embed@$EMBED" >/dev/null 2>&1
mkdir -p vega vega-lite vega-embed
tar xzf "vega-$VEGA.tgz" -C vega; tar xzf "vega-lite-$VL.tgz" -C vega-lite; tar xzf "vega-embed-$EMBED.tgz" -C vega-embed
out="$here/modularity-vega.min.js"
{
  echo "/*! modularity-vega: vega@$VEGA + vega-lite@$VL + vega-embed@$EMBED (npm builds, unmodified except"
  echo " *  for removed sourceMappingURL lines), wrapped to expose only window.modularityVega."
  for p in vega vega-lite vega-embed; do
    echo " *"; echo " * ---- LICENSE of $p ----"; sed 's/^/ * /; s/\*\//* \//g' "$p/package/LICENSE"
  done
  echo " */"
  echo "(function(){var __m={};function require(n){if(!(n in __m))throw new Error('modularity-vega: missing '+n);return __m[n];}var define=undefined;"
  echo "(function(exports,module){"
  grep -v '^//# sourceMappingURL' vega/package/build/vega.min.js
  echo ";__m['vega']=exports;})({},{});"
  echo "(function(exports,module){"
  grep -v '^//# sourceMappingURL' vega-lite/package/build/vega-lite.min.js
  echo ";__m['vega-lite']=exports;})({},{});"
  echo "(function(module){var exports=module.exports;"
  grep -v '^//# sourceMappingURL' vega-embed/package/build/vega-embed.min.js
  echo ";__m['vega-embed']=module.exports;})({exports:{}});"
  echo "var e=__m['vega-embed'];window.modularityVega={vega:__m['vega'],vegaLite:__m['vega-lite'],vegaEmbed:e,"
  echo "versions:{vega:'$VEGA',vegaLite:'$VL',vegaEmbed:'$EMBED'}};})();"
} > "$out"
rm -rf "$tmp"
ls -l "$out"
