// Runs a wasm32-wasip1 command (the examples in examples/) in Node's V8, the engine Envoy embeds, for
// per-call timings of the pure-Rust paths: `node scripts/run_wasi.js <module.wasm> [args...]`.
// The trustgate library carries the proxy-wasm host imports (env.proxy_*): they are stubbed, never called.
const { WASI } = require('node:wasi');
const fs = require('fs');
const wasi = new WASI({ version: 'preview1', args: process.argv.slice(2), env: {}, preopens: {} });
(async () => {
  const mod = await WebAssembly.compile(fs.readFileSync(process.argv[2]));
  const imports = wasi.getImportObject();
  const env = {};
  for (const imp of WebAssembly.Module.imports(mod)) if (imp.module === 'env') env[imp.name] = () => 0;
  imports.env = env;
  const inst = await WebAssembly.instantiate(mod, imports);
  // The library also exports _initialize (proxy-wasm's entry point); WASI.start wants only _start.
  wasi.start({ exports: { memory: inst.exports.memory, _start: inst.exports._start } });
})();
