// Runs a wasm32-wasip1 program under Node's WASI, that is in V8, the engine behind Envoy's wasm
// runtime: `node bench/wasi-run.mjs FILE.wasm [ARGS...]` (used by `make es256-timing`).
import { readFile } from 'node:fs/promises';
import { argv, exit } from 'node:process';
import { WASI } from 'node:wasi';

if (argv.length < 3) {
  console.error('usage: node bench/wasi-run.mjs FILE.wasm [ARGS...]');
  exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [argv[2], ...argv.slice(3)], env: {} });
const module = await WebAssembly.compile(await readFile(argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));
