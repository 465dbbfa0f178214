// Builds the plugin's frontend into dist/ (or the directory given as the first argument):
// module.js, an AMD module as Grafana's plugin loader (SystemJS) expects, with react and Grafana's
// packages supplied by Grafana at load time; plugin.json and the logo copied beside it. The output
// depends only on src/ and the pinned esbuild, so CI rebuilds it and compares (frontend_test.go).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2] ?? 'dist';
const externals = ['react', '@grafana/data', '@grafana/runtime', '@grafana/ui'];

// esbuild has no AMD output: bundle as CommonJS and wrap it in define(), mapping require() of an
// external to the module Grafana hands in.
const banner =
  `define(${JSON.stringify(externals)}, function (${externals.map((_, i) => `d${i}`).join(', ')}) {\n` +
  `var deps = {${externals.map((e, i) => `${JSON.stringify(e)}: d${i}`).join(', ')}};\n` +
  'function require(name) {\n' +
  '  if (!Object.prototype.hasOwnProperty.call(deps, name)) throw new Error("mcpwatch plugin: no module " + name);\n' +
  '  return deps[name];\n' +
  '}\n' +
  'var module = { exports: {} }, exports = module.exports;';

await build({
  entryPoints: ['src/module.ts'],
  outfile: join(out, 'module.js'),
  bundle: true,
  format: 'cjs',
  platform: 'browser',
  target: 'es2020',
  external: externals,
  jsx: 'transform',
  jsxFactory: 'React.createElement',
  jsxFragment: 'React.Fragment',
  legalComments: 'none',
  banner: { js: banner },
  footer: { js: 'return module.exports;\n});' },
  logLevel: 'warning',
});
mkdirSync(join(out, 'img'), { recursive: true });
copyFileSync('src/plugin.json', join(out, 'plugin.json'));
copyFileSync('src/img/logo.svg', join(out, 'img', 'logo.svg'));
